"""One connection's refresh, under its lease, in the order of its steps:

1. take the lease (`refresh_one`), and let it go for a backoff wait;
2. read the refresh material (`_material`), and with it the client the grant belongs to;
3. ask Webex (`_refresh_leased`);
4. store (`_store`): the refresh secret if the refresh token changed, the token secret if the
   access token changed, the sharing if the stack changed it, then the row, which frees the lease.

A failure is classified (`_attempt`): Webex's failure kinds are the outcomes of the same names, and a
dead grant goes to `dead_grants`; AWS refusing a call is `denied`; an outage is `transient`, backed
off (`refresh_failures`). A crash at any step leaves the row due and the lease to expire, and the
next run finishes the job: the refresh token is on disk before anything that depends on it.
"""

import threading
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from functools import cached_property, partial

from webex_broker.adapters import webex
from webex_broker.adapters.secret_store import PendingVersion, get_refresh_material, write_tokens
from webex_broker.core import schedule
from webex_broker.core.clock import epoch
from webex_broker.core.connection import Connection, ConnectionStatus
from webex_broker.core.errors import (
    AwsAccessDenied,
    AwsUnavailable,
    ClientChanged,
    ConfigurationError,
    FailureKind,
    GrantEnd,
    MissingRefreshSecret,
    WebexError,
)
from webex_broker.core.grants import TokenGrant
from webex_broker.core.observability import logger
from webex_broker.core.rate_limit import RateLimiter
from webex_broker.core.settings import RefreshPolicy
from webex_broker.core.token_documents import RefreshMaterial, TokenRecord, fingerprint
from webex_broker.flows import service_apps, token_sharing
from webex_broker.flows.broker import Broker
from webex_broker.flows.dead_grants import DeadGrants
from webex_broker.flows.notices import after_success
from webex_broker.flows.refresh_failures import Failures, retry_delay
from webex_broker.flows.refresh_report import Outcome

LEASE_WRITE_MARGIN_SECONDS = 60  # a refresh's writes take seconds; with less of its lease left it takes it again


class ConnectionRefresher:
    def __init__(self, broker: Broker, *, clock: Callable[[], datetime], sleep: Callable[[float], None]) -> None:
        settings = broker.settings
        self._broker = broker
        self.policy: RefreshPolicy = settings.refresh
        self._names = broker.names
        self._table = broker.connections
        self._events = broker.events
        self._clock = clock
        self._sleep = sleep
        self.owner = f"refresher-{uuid.uuid4()}"
        self._writes = RateLimiter(self.policy.write_rate, sleep=sleep)
        self.halted = threading.Event()  # a run's breaker: no more retries, no more starts
        self.remaining_ms: Callable[[], int] | None = None
        self._webex_timeout = settings.webex_timeout_seconds
        self.failures = Failures(broker, owner=self.owner, halted=self.halted)
        self.dead_grants = DeadGrants(
            broker,
            owner=self.owner,
            fail=self.failures.record,
            store=partial(self._store, healed=True),
            material=self._material,
        )

    @cached_property
    def _client(self) -> webex.WebexClient:
        """Built at the first refresh, so a run with nothing due never needs the client secret (a new
        stack's is empty until `webex-broker set-credentials`)."""
        return self._broker.webex_client()

    def refresh_one(
        self,
        connection: str,
        *,
        force: bool = False,
        remaining_ms: Callable[[], int] | None = None,
        end_grants_later: bool = False,
        rotation: PendingVersion | None = None,
    ) -> tuple[Outcome, Connection | None]:
        """Refresh one connection under its lease. `force` (on-demand) skips the due check, not the lease,
        and is refused with CoolingDown within a minute of the previous forced refresh, or within the write
        floor of the last write of its secrets (AWS's one version per 10 minutes). A connection whose
        first login has not finished (`pending`) has nothing to refresh. `end_grants_later` (a run) only
        records Webex's `invalid_grant`: the run ends the grant once it knows the run was not mostly refused.
        `rotation` (Secrets Manager's createSecret): forced without the on-demand cooldown; no second Webex
        call for a connection refreshed moments ago; a new access token goes to the rotation's pending
        version of the token secret, not to AWSCURRENT."""
        if remaining_ms is not None:
            self.remaining_ms = remaining_ms
        cooldown = self.policy.forced_cooldown_seconds if force and rotation is None else 0
        for attempt in range(1, self.policy.max_attempts + 1):
            now = self._clock()
            row = self._table.acquire(
                connection,
                owner=self.owner,
                now=epoch(now),
                lease_seconds=self.policy.lease_seconds,
                cooldown_seconds=cooldown if attempt == 1 else 0,
                write_floor_seconds=self.policy.write_floor_seconds if cooldown and attempt == 1 else 0,
            )
            if row is None:
                return Outcome.SKIPPED, None
            with logger.append_context_keys(connection=connection):
                try:
                    result = self._attempt(
                        connection, row, now, attempt=attempt, force=force, later=end_grants_later, rotation=rotation
                    )
                except AwsAccessDenied as exc:  # met while handling another failure
                    result = self.failures.denied(row, exc, now)
                except BaseException:
                    self._table.release_if_held(connection, owner=self.owner)
                    raise
            if result is not None:
                return result
        raise AssertionError("unreachable: the last attempt never retries")

    def _attempt(
        self,
        connection: str,
        row: Connection,
        now: datetime,
        *,
        attempt: int,
        force: bool,
        later: bool,
        rotation: PendingVersion | None,
    ) -> tuple[Outcome, Connection | None] | None:
        """One try under the lease; None means: the lease was let go for a backoff, try again."""
        if row.status == ConnectionStatus.PENDING or (not row.due(epoch(now)) and not force):
            self._table.release(connection, owner=self.owner)
            return Outcome.SKIPPED, row
        if rotation is not None and self._just_refreshed(row, now):
            self._table.release(connection, owner=self.owner)
            logger.info("Refreshed moments ago: the rotation keeps that token, without a second Webex call")
            return Outcome.UNCHANGED, row
        try:
            return self._refresh_leased(connection, row, now, rotation)
        except AwsAccessDenied as exc:
            return self.failures.denied(row, exc, now)
        except ClientChanged as exc:
            return self.failures.client_changed(row, exc, now)
        except ConfigurationError as exc:  # the client secret: unset, unreadable or refused
            return self.failures.stop_for_configuration(row, type(exc).__name__, "")
        except MissingRefreshSecret:
            logger.error("Active connection without its refresh secret (SecretPrefix changed, or deleted)")
            return Outcome.MISSING_SECRET, self.failures.record(
                row, Outcome.MISSING_SECRET, "missing_refresh_secret", "", now
            )
        except WebexError as exc:
            delay = retry_delay(
                exc,
                attempt,
                self.policy,
                halted=self.halted.is_set(),
                remaining_ms=self.remaining_ms,
                call_seconds=self._webex_timeout,
            )
            if delay is None and exc.kind == FailureKind.PERMANENT and not later:
                logger.warning("Grant refused: Webex says the refresh token is dead", extra={"error": exc.code})
                return self.dead_grants.handle(connection, row, exc, now, reason=GrantEnd.INVALID_GRANT)
            if delay is None:
                return self.failures.webex(row, exc, now)
            # Let go while waiting: a login finishing meanwhile must not be undone by an old token.
            self._table.release(connection, owner=self.owner)
            logger.info("Retrying Webex", extra={"attempt": attempt, "delay_s": round(delay, 2), "error": exc.code})
            self._sleep(delay)
            return None
        except AwsUnavailable as exc:
            logger.warning("AWS call failed during refresh", extra={"error": exc.code})
            return Outcome.TRANSIENT, self.failures.record(row, Outcome.TRANSIENT, exc.code, "", now)

    def _just_refreshed(self, row: Connection, now: datetime) -> bool:
        """A refresh (scheduled, on-demand, or a rotation that waited for its lease) within the write floor
        or the forced cooldown: Webex would answer the same, and a new version could not be written."""
        recent = max(self.policy.write_floor_seconds, self.policy.forced_cooldown_seconds)
        return row.refreshed_at is not None and epoch(now) - row.refreshed_at < recent

    def _refresh_leased(
        self, connection: str, row: Connection, now: datetime, rotation: PendingVersion | None = None
    ) -> tuple[Outcome, Connection | None]:
        material = self._material(connection)
        if material.service_app:
            client = service_apps.client_for(self._broker, material.service_app)
        else:
            client = self._client
            issued_to = material.client_id or row.client_id
            if issued_to and issued_to != client.client_id:
                raise ClientChanged(issued_to, client.client_id)
        grant = material.complete(client.refresh(refresh_token=material.refresh_token, now=self._clock()))
        return self._store(connection, row, material, grant, now, rotation=rotation)

    def _material(self, connection: str) -> RefreshMaterial:
        return get_refresh_material(self._names.refresh_secret(connection))

    def _store(
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
            pace=self._writes.acquire,
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
            owner=self.owner,
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
        fresh = self._table.acquire(connection, owner=self.owner, now=at, lease_seconds=self.policy.lease_seconds)
        if fresh and (fresh.status, fresh.access_token_id) == (row.status, row.access_token_id):
            return True
        if fresh:
            self._table.release(connection, owner=self.owner)
        logger.warning("The lease ran out while Webex answered and the connection changed meanwhile; nothing written")
        return False
