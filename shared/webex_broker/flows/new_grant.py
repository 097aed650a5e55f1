"""Storing a grant that was just authorized: a person's login, or an operator adding a Service App.

The writes happen in a fixed order, under the connection's lease so that no refresh interleaves:
claim (bind the name to its owner) → lease → refresh material → token secret (created shared as
the stack says, or brought to it) → row (which frees the lease). A first authorization that fails at
any step removes what it wrote, so no live refresh token is left without a row; a connection that
was already working keeps its row.
"""

import math
import time
import uuid
from collections.abc import Callable

from webex_broker.adapters.connections import ConnectionsTable
from webex_broker.adapters.secret_store import SecretNames, delete_secret, secret_exists, write_tokens
from webex_broker.core import clock
from webex_broker.core.clock import epoch
from webex_broker.core.connection import Connection, ConnectionStatus
from webex_broker.core.errors import AccessDenied, AwsAccessDenied, AwsUnavailable, Denial, LoginBusy
from webex_broker.core.events import About, Created, Reconnected
from webex_broker.core.observability import logger
from webex_broker.core.schedule import next_refresh_at
from webex_broker.core.token_documents import TokenRecord
from webex_broker.flows import access, token_sharing
from webex_broker.flows.broker import Broker

LEASE_POLL_SECONDS = 0.25
WRITE_TIME_SECONDS = 6  # left, after waiting for the lease, for two secret writes and the row
ORPHAN_RECOVERY_DAYS = 7


def store_new_grant(
    broker: Broker, record: TokenRecord, *, login_base_url: str, remaining_ms: Callable[[], int]
) -> Connection:
    """Claim, lease, secrets, row. AccessDenied when the name belongs to someone else; LoginBusy when a
    refresh held the lease longer than `remaining_ms` allows. Nothing is left behind on failure.
    Returns the row as it was before: what `announce` tells apart."""
    connection, owner_id = record.connection, record.owner_id
    owner = f"login-{uuid.uuid4()}"
    table, names = broker.connections, broker.names
    written: list[str] = []
    if table.get(connection) is None and _kept_from_before(names, connection):
        raise AccessDenied(
            "This connection's tokens are kept from before, but the broker has lost its record of whose they "
            "are. Ask the broker's operator to run `webex-broker adopt`, then log in again. Nothing was stored.",
            denial=Denial.TAKEN,
        )
    try:
        if not table.claim(connection, person_id=owner_id, email=record.person.email, now=epoch(record.updated_at)):
            access.check_owner(table.get(connection), owner_id)  # someone else won a race for it
        row = _take_lease(table, connection, owner, remaining_ms)
        access.check_owner(row, owner_id)
        token_arn = write_tokens(record, names, starting=written.append, sharing=broker.settings.sharing)
        table.record_login(
            record,
            owner=owner,
            consumer_secret_arn=token_arn,
            login_base_url=login_base_url,
            sharing=token_sharing.converge(broker, connection, row.sharing),
            next_refresh_at=next_refresh_at(
                connection,
                access_expires_at=epoch(record.grant.access_expires_at),
                refreshed_at=epoch(record.updated_at),
                written_at=epoch(record.updated_at),
                now=epoch(record.updated_at),
                policy=broker.settings.refresh,
            ),
        )
    except BaseException:
        _undo(table, record, owner, names, written)
        raise
    return row


def announce(broker: Broker, before: Connection, record: TokenRecord, *, invite_id: str = "") -> None:
    """After the grant is stored: withdraw the re-authorization link this login made unnecessary (unless
    it is the link that was used), and tell whoever sent a link that it worked (the publisher is best
    effort). Neither undoes the login; the event names a link as closed only once it was withdrawn."""
    closed = ""
    if before.reauth_invite_id not in ("", invite_id) and broker.settings.invitations_table:
        try:
            closed = before.reauth_invite_id if broker.invitations.revoke(before.reauth_invite_id) else ""
        except (AwsUnavailable, AwsAccessDenied) as exc:
            logger.error("Could not withdraw the re-authorization link", extra={"error": type(exc).__name__})
    about = About(
        record.connection,
        str(record.kind),
        record.person.email,
        record.person.display_name,
        str(ConnectionStatus.ACTIVE),
        record.service_app.app_id if record.service_app else "",
        record.person.org_id,
    )
    if before.authorized_at is None and before.adopted_at is None:
        broker.events.publish(Created(about, invite_id))
    else:
        broker.events.publish(Reconnected(about, str(before.status), invite_id, closed))


def _kept_from_before(names: SecretNames, connection: str) -> bool:
    """Live secrets without a row (a stack re-created before `adopt`): whose they are is only in them,
    which a login may not read, so no login may claim the name, nor write, nor clean up over them."""
    return any(secret_exists(name) for name in (names.token_secret(connection), names.refresh_secret(connection)))


def _take_lease(table: ConnectionsTable, connection: str, owner: str, remaining_ms: Callable[[], int]) -> Connection:
    """Wait for a refresh in flight to finish its one Webex call and its writes; it never holds the
    lease across a backoff. Give up, with nothing stored, when the function's time runs short. The
    login's own lease lasts no longer than the function can, so a crashed login blocks no one for long."""
    while True:
        lease_seconds = max(1, math.ceil(remaining_ms() / 1000))
        row = table.acquire(connection, owner=owner, now=epoch(clock.utc_now()), lease_seconds=lease_seconds)
        if row is not None:
            return row
        if remaining_ms() < (WRITE_TIME_SECONDS + LEASE_POLL_SECONDS) * 1000:
            logger.warning("A refresh of this connection held its lease too long for the login to wait")
            raise LoginBusy(connection)
        time.sleep(LEASE_POLL_SECONDS)


def _undo(table: ConnectionsTable, record: TokenRecord, owner: str, names: SecretNames, written: list[str]) -> None:
    """After a failed step. A first login (the row still `pending`, ours) leaves nothing behind: its
    secrets are scheduled for deletion (the next login restores and overwrites them) before its claim
    is dropped, so no live refresh token is ever left without a row and the person can simply try
    again. A connection that was already working keeps its row; the secrets written hold this newer,
    valid grant of the same owner, which the next refresh uses."""
    try:
        row = table.get(record.connection)
        ours = row is not None and row.lease_owner in (owner, "") and row.person_id == record.owner_id
        if ours and row is not None and row.status == ConnectionStatus.PENDING:
            for name in written:
                delete_secret(name, recovery_days=ORPHAN_RECOVERY_DAYS)
            table.drop_pending_claim(record.connection, person_id=record.owner_id, owner=owner)
        else:
            table.release_if_held(record.connection, owner=owner)
    except AwsUnavailable as exc:
        logger.error("Could not clean up after a failed login", extra={"error": exc.code})
