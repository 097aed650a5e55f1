"""A refresh's writes, under the connection's lease and in the order every path shares: the refresh
secret if the refresh token changed, the token secret if the access token changed (into a rotation's
pending version when Secrets Manager asked), the sharing if the stack changed it, then the row, which
frees the lease. Nothing is written if the lease ran out and the connection changed meanwhile."""

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from webex_broker.adapters.secret_store import PendingVersion, write_tokens
from webex_broker.core import schedule
from webex_broker.core.clock import epoch
from webex_broker.core.connection import Connection, ConnectionStatus
from webex_broker.core.grants import TokenGrant
from webex_broker.core.observability import logger
from webex_broker.core.token_documents import RefreshMaterial, TokenRecord, fingerprint
from webex_broker.flows import token_sharing
from webex_broker.flows.broker import Broker
from webex_broker.flows.notices import after_success
from webex_broker.flows.refresh_report import Outcome

LEASE_WRITE_MARGIN_SECONDS = 60  # a refresh's writes take seconds; with less of its lease left it takes it again


class RefreshWrites:
    def __init__(self, broker: Broker, *, owner: str, clock: Callable[[], datetime], pace: Callable[[], None]) -> None:
        self._broker = broker
        self.policy = broker.settings.refresh
        self._names = broker.names
        self._table = broker.connections
        self._events = broker.events
        self._owner = owner
        self._clock = clock
        self._pace = pace  # the Secrets Manager write cap, shared by a run's threads

    def store(
        self,
        connection: str,
        row: Connection,
        material: RefreshMaterial,
        grant: TokenGrant,
        now: datetime,
        *,
        healed: bool = False,
        rotation: PendingVersion | None = None,
    ) -> tuple[Outcome, Connection | None]:
        """The refresh's writes, in the shared order; a healed Service App stores its whole new pair. A
        rotation's new access token is pending, so the row keeps the current one's fingerprint until
        finishSecret: should the rotation never finish, the next refresh writes it current."""
        if not self._still_leased(connection, row, since=now):
            return Outcome.SKIPPED, None
        record = TokenRecord(
            connection=connection, person=material.person, grant=grant, updated_at=now, service_app=material.service_app
        )
        changed = fingerprint(grant.access_token) != row.access_token_id
        refresh_changed = grant.refresh_token != material.refresh_token
        written = changed or refresh_changed
        write_tokens(
            record,
            self._names,
            refresh_token_changed=refresh_changed,
            access_token_changed=changed,
            pace=self._pace,
            sharing=self._broker.settings.sharing,
            pending=rotation,
        )
        pending = changed and rotation is not None and rotation.secret == self._names.token_secret(connection)
        # The rotation function converges nothing (it cannot turn rotation on): the next refresh does.
        sharing = row.sharing if rotation else token_sharing.converge(self._broker, connection, row.sharing)
        next_at = schedule.next_refresh_at(
            connection,
            access_expires_at=epoch(grant.access_expires_at),
            refreshed_at=epoch(now),
            written_at=epoch(now) if written else (row.last_write or 0),
            now=epoch(now),
            policy=self.policy,
        )
        self._table.record_refresh(
            record,
            owner=self._owner,
            next_refresh_at=next_at,
            sharing=sharing,
            written=written,
            token_id=row.access_token_id if pending else None,
        )
        if not healed:
            after_success(self._events, self.policy, row, record, written=written)
        updated = replace(
            row,
            status=ConnectionStatus.ACTIVE,
            access_expires_at=epoch(grant.access_expires_at),
            refresh_expires_at=epoch(grant.refresh_expires_at),
            next_refresh_at=next_at,
            refreshed_at=epoch(now),
            written_at=epoch(now) if written else row.written_at,
        )
        logger.info("Connection refreshed", extra={"token_changed": changed, "next_refresh_at": next_at})
        if healed:
            return Outcome.HEALED, updated
        return (Outcome.REFRESHED if changed else Outcome.UNCHANGED), updated

    def _still_leased(self, connection: str, row: Connection, *, since: datetime) -> bool:
        """Writes happen under the lease taken at `since`. Webex answers within its deadline, far inside
        the lease; should the lease still be close to running out (a stalled invocation), it is taken
        again, and nothing is written if someone held it meanwhile or the connection changed (a login
        stored a newer grant, which an older answer must not overwrite)."""
        at = epoch(self._clock())
        if at < epoch(since) + self.policy.lease_seconds - LEASE_WRITE_MARGIN_SECONDS:
            return True
        fresh = self._table.acquire(connection, owner=self._owner, now=at, lease_seconds=self.policy.lease_seconds)
        if fresh and (fresh.status, fresh.access_token_id) == (row.status, row.access_token_id):
            return True
        if fresh:
            self._table.release(connection, owner=self._owner)
        logger.warning("The lease ran out while Webex answered and the connection changed meanwhile; nothing written")
        return False
