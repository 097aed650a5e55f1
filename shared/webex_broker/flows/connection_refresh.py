"""One connection's refresh, under its lease, in the order of its steps:

1. take the lease (`refresh_one`), and let it go for a backoff wait;
2. read the refresh material (`_material`), and with it the client the grant belongs to;
3. ask Webex (`_refresh_leased`);
4. store (`refresh_writes`): the refresh secret if the refresh token changed, the token secret if the
   access token changed, the sharing if the stack changed it, then the row, which frees the lease.

A failure is classified (`_attempt`): Webex's failure kinds are the outcomes of the same names, and a
dead grant goes to `dead_grants`; AWS refusing a call is `denied`; an outage is `transient`, backed
off (`refresh_failures`). A crash at any step leaves the row due and the lease to expire, and the
next run finishes the job: the refresh token is on disk before anything that depends on it.
"""

import threading
import uuid
from collections.abc import Callable
from datetime import datetime
from functools import cached_property, partial

from webex_broker.adapters import webex
from webex_broker.adapters.secret_store import PendingVersion, get_refresh_material
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
from webex_broker.core.observability import logger
from webex_broker.core.rate_limit import RateLimiter
from webex_broker.core.settings import RefreshPolicy
from webex_broker.core.token_documents import RefreshMaterial
from webex_broker.flows import service_apps
from webex_broker.flows.broker import Broker
from webex_broker.flows.dead_grants import DeadGrants
from webex_broker.flows.refresh_failures import Failures, retry_delay
from webex_broker.flows.refresh_report import Outcome
from webex_broker.flows.refresh_writes import RefreshWrites


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
        self.writes = RefreshWrites(
            broker, owner=self.owner, clock=clock, pace=RateLimiter(self.policy.write_rate, sleep=sleep).acquire
        )
        self.halted = threading.Event()  # a run's breaker: no more retries, no more starts
        self.remaining_ms: Callable[[], int] | None = None
        self._webex_timeout = settings.webex_timeout_seconds
        self.failures = Failures(broker, owner=self.owner, halted=self.halted)
        self.dead_grants = DeadGrants(
            broker,
            owner=self.owner,
            fail=self.failures.record,
            store=partial(self.writes.store, healed=True),
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
        return self.writes.store(connection, row, material, grant, now, rotation=rotation)

    def _material(self, connection: str) -> RefreshMaterial:
        return get_refresh_material(self._names.refresh_secret(connection))
