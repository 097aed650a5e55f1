"""Refreshing tokens so a connection's token never lapses.

One connection at a time is refreshed under a lease on its row, in a fixed order of idempotent
steps: read the refresh material → ask Webex → write the refresh secret (only if the refresh token
changed) → write the consumer secret (only if the access token changed) → bring the consumer secret
to the stack's sharing (only if the stack changed it) → update the row and release the lease. A
crash at any step leaves the row due and the lease to expire, and the next run finishes the job; the
refresh token is on disk before anything that depends on it. A login takes the same lease, so a
login and a refresh of one connection never interleave: the refresher lets go of the lease while it
waits out a backoff, and after it reads the row and the refresh token again.

A Service App refreshes with its own client credentials, and its rejected client is that app's
fault, not the integration's: it fails that connection, not the run.

Failures are classified, and only proof changes a status: `invalid_grant` (or Webex's words for a
dead refresh token) marks a connection `reauth_required`, once a Service App has failed to mint a
new pair through its `via` connection (healed, it stays active); any other refusal is retried like
an outage, alarmed, and ends a connection only when it repeats in separate runs over an hour while
other connections refresh fine. A rejected client stops the run with one error, and so does a run in
which most attempts are refused, `invalid_grant` included (Webex or the integration is at fault, not
the people): so a run ends grants only after it has finished and knows it was not such a run. A
person's refresh token issued to another client than the stored one is never sent (Webex's
`invalid_grant` would prove nothing): that connection fails as a configuration fault, status kept.

AWS refusing one of the broker's own calls (AccessDenied from IAM or a key policy) proves a
configuration fault, not an outage: that connection fails with the outcome `denied`, an alarm and an
event naming the action and the resource, and is never retried within the run; when the same action
is refused for most of a run (a role missing a permission), the run stops with one error.
"""

import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from functools import cached_property, partial

from webex_broker.adapters import events, webex
from webex_broker.adapters.invitations import invitation_link
from webex_broker.adapters.secret_store import (
    get_refresh_material,
    write_tokens,
)
from webex_broker.core import schedule
from webex_broker.core.clock import epoch, utc_now
from webex_broker.core.connection import Connection, ConnectionStatus
from webex_broker.core.errors import (
    AwsAccessDenied,
    AwsUnavailable,
    ClientChanged,
    ConfigurationError,
    FailureKind,
    GrantEnd,
    MissingRefreshSecret,
    ViaUnavailable,
    WebexError,
)
from webex_broker.core.grants import TokenGrant
from webex_broker.core.observability import logger, metrics
from webex_broker.core.rate_limit import RateLimiter
from webex_broker.core.settings import RefreshPolicy
from webex_broker.core.token_documents import RefreshMaterial, TokenRecord, fingerprint
from webex_broker.flows import service_apps, token_sharing
from webex_broker.flows.broker import Broker, current

REAUTH_LINK_SECONDS = 7 * 86400
RETRY_TIME_MARGIN_SECONDS = 5
LEASE_WRITE_MARGIN_SECONDS = 60  # a refresh's writes take seconds; with less of its lease left it takes it again


class Outcome(StrEnum):
    """What became of one connection in a run. The failures carry the Webex client's FailureKind values
    (a failure of that kind is the outcome of the same name) and are what `last_error_class` records."""

    REFRESHED = "refreshed"  # Webex gave a new access token; the consumer secret has it
    UNCHANGED = "unchanged"  # Webex gave the same token back (its 24 h rule); nothing rewritten
    HEALED = "healed"  # a Service App's dead refresh token replaced by a new pair minted through its `via`
    SKIPPED = "skipped"  # not due after all, or another refresher or a login holds the lease
    TRANSIENT = "transient"  # Webex or AWS unavailable: retried later, status unchanged
    REFUSED = "refused"  # Webex refused without saying the grant is dead: retried later, status unchanged
    PERMANENT = "permanent"  # the grant is dead: reauth_required
    MISSING_SECRET = "missing_secret"  # an active row without its refresh secret: a deployment fault, alarmed
    CONFIGURATION = "configuration"  # the integration's credentials were refused or unset: the run stops
    DENIED = "denied"  # AWS refused one of the broker's calls: a role or key policy to fix; alarmed, status kept
    ERROR = "error"  # a bug or a crash: the lease expires and the next run tries again


FAILED = (
    Outcome.TRANSIENT,
    Outcome.REFUSED,
    Outcome.PERMANENT,
    Outcome.MISSING_SECRET,
    Outcome.CONFIGURATION,
    Outcome.DENIED,
    Outcome.ERROR,
)
SUCCEEDED = (Outcome.REFRESHED, Outcome.UNCHANGED, Outcome.HEALED)
ATTEMPTED = (*SUCCEEDED, Outcome.TRANSIENT, Outcome.REFUSED, Outcome.PERMANENT)


@dataclass
class RunReport:
    outcomes: Counter = field(default_factory=Counter)
    failures: dict[str, str] = field(default_factory=dict)
    stopped_early: bool = False
    refusals_stopped_run: bool = False
    denials: Counter = field(default_factory=Counter)  # AWS action → connections it was refused for
    denials_stopped_run: bool = False
    risk_horizon: int = 0  # an access token expiring before this may lapse before the next run can help
    at_risk: int = 0
    max_consecutive_failures: int = 0
    earliest_access_expiry: int | None = None
    earliest_refresh_expiry: int | None = None
    refused_long: dict[str, int] = field(default_factory=dict)  # connection → since when refused, an hour or more
    dead_grants: dict[str, Connection] = field(default_factory=dict)  # invalid_grant, to end once the run is done
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, connection: str, outcome: "Outcome", row: Connection | None = None) -> None:
        with self._lock:
            self.outcomes[outcome] += 1
            if outcome in FAILED:
                self.failures[connection] = outcome.value
            if row and row.active:
                self.note_expiries(row)
                if (row.access_expires_at or 0) < self.risk_horizon:
                    self.at_risk += 1
                self.max_consecutive_failures = max(self.max_consecutive_failures, row.consecutive_failures)

    @property
    def attempted(self) -> int:
        """Connections Webex was asked about in this run."""
        return sum(self.outcomes[o] for o in ATTEMPTED)

    def mostly_refused(self, policy: RefreshPolicy) -> bool:
        """Refusals for much of a run, unexplained or `invalid_grant`, say the fault is Webex's or the
        integration's (a changed client gets `invalid_grant` for every grant), not the people's."""
        refused = self.outcomes[Outcome.REFUSED] + self.outcomes[Outcome.PERMANENT]
        return refused >= policy.breaker_min_refused and refused >= policy.breaker_refused_share * self.attempted

    def mostly_denied(self, action: str, policy: RefreshPolicy) -> bool:
        """The same AWS action refused for much of a run: the role lacks it, whoever the connection is."""
        denied = self.denials[action]
        return denied >= policy.breaker_min_refused and denied >= policy.breaker_refused_share * (
            self.succeeded + sum(self.denials.values())
        )

    @property
    def succeeded(self) -> int:
        return sum(self.outcomes[o] for o in SUCCEEDED)

    def note_expiries(self, row: Connection) -> None:
        self.earliest_access_expiry = _earliest(self.earliest_access_expiry, row.access_expires_at)
        self.earliest_refresh_expiry = _earliest(self.earliest_refresh_expiry, row.refresh_expires_at)

    def as_dict(self) -> dict:
        return {
            "refreshed": self.succeeded,
            "failed": len(self.failures),
            "failures": dict(self.failures),
            "outcomes": {k.value: v for k, v in sorted(self.outcomes.items()) if v},
            "stopped_early": self.stopped_early,
            "refusals_stopped_run": self.refusals_stopped_run,
            "denials_stopped_run": self.denials_stopped_run,
            "denied": dict(self.denials),
        }


def _earliest(known: int | None, candidate: int | None) -> int | None:
    values = [v for v in (known, candidate) if v is not None]
    return min(values) if values else None


class Refresher:
    def __init__(
        self,
        broker: Broker | None = None,
        *,
        clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], None] | None = None,
    ):
        """clock and sleep are what tests replace, to step past leases and skip backoff waits."""
        broker = broker or current()
        settings = broker.settings
        self._broker = broker
        self.policy: RefreshPolicy = settings.refresh
        self._names = broker.names
        self._table = broker.connections
        self._events = broker.events
        self._invitations = broker.invitations if settings.invitations_table else None
        self._clock = clock
        self._sleep = sleep or time.sleep
        self._owner = f"refresher-{uuid.uuid4()}"
        self._writes = RateLimiter(self.policy.write_rate, sleep=self._sleep)
        self._halted = threading.Event()
        self._remaining_ms: Callable[[], int] | None = None
        self._webex_timeout = settings.webex_timeout_seconds
        self._client_change_reported = threading.Event()

    @cached_property
    def _client(self) -> webex.WebexClient:
        """Built at the first refresh, so a run with nothing due never needs the client secret (a new
        stack's is empty until `webex-broker set-credentials`)."""
        return self._broker.webex_client()

    # --- a whole run --------------------------------------------------------------------------

    def run(self, *, remaining_ms: Callable[[], int], run_id: str = "") -> RunReport:
        """Refresh what is due with bounded concurrency; stop starting work when time runs short. A run
        someone asked for by `run_id` leaves its report for them (`webex-broker refresh --due`)."""
        self._remaining_ms = remaining_ms
        now = epoch(self._clock())
        report = RunReport(risk_horizon=now + self.policy.run_interval_seconds + self.policy.safety_margin_seconds)
        margin_ms = self.policy.time_margin_seconds * 1000
        with ThreadPoolExecutor(max_workers=self.policy.concurrency, thread_name_prefix="refresh") as pool:
            in_flight: dict = {}
            started: set[str] = set()
            for name in self._table.due(now):
                # A paged query over an index whose keys this run is changing can hand the same row
                # out twice; the lease would let this run's owner in again, so a second start is skipped.
                if name in started:
                    continue
                started.add(name)
                if len(in_flight) >= self.policy.concurrency:
                    done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                    for future in done:
                        self._collect(report, in_flight.pop(future), future)
                if self._halted.is_set() or remaining_ms() < margin_ms:
                    report.stopped_early = True
                    break
                in_flight[pool.submit(self.refresh_one, name, end_grants_later=True)] = name
            for future in wait(in_flight).done:
                self._collect(report, in_flight[future], future)
        self._end_dead_grants(report)
        self._confirm_long_refusals(report)
        upcoming = self._table.next_up(now)
        if upcoming:
            report.note_expiries(upcoming)
        self._emit_run_metrics(report, now)
        summary = report.as_dict()
        self._table.record_run(
            finished_at=epoch(self._clock()), outcomes=summary["outcomes"], run_id=run_id, report=json.dumps(summary)
        )
        logger.info("Refresh run finished", extra=summary)
        return report

    def _collect(self, report: RunReport, connection: str, future: Future) -> None:
        try:
            outcome, row = future.result()
        except Exception:
            logger.exception(
                "Refresh crashed; its lease expires and a later run retries", extra={"connection": connection}
            )
            outcome, row = Outcome.ERROR, None
        report.add(connection, outcome, row)
        if outcome == Outcome.PERMANENT and row:
            report.dead_grants[connection] = row
        if outcome == Outcome.REFUSED and row and row.refused_since is not None:
            since = row.refused_since
            if epoch(self._clock()) - since >= self.policy.refusal_proof_seconds:
                report.refused_long[connection] = since
        if not report.refusals_stopped_run and report.mostly_refused(self.policy):
            self._stop_for_refusals(report)
        if outcome == Outcome.DENIED and row and row.last_error:
            report.denials[row.last_error] += 1
            if not report.denials_stopped_run and report.mostly_denied(row.last_error, self.policy):
                self._stop_for_denials(report, row.last_error)

    def _stop_for_refusals(self, report: RunReport) -> None:
        """One alarm for the run, no status changed: the people's grants are not what failed."""
        report.refusals_stopped_run = True
        report.stopped_early = True
        self._halted.set()
        detail = {
            "refused": report.outcomes[Outcome.REFUSED],
            "invalid_grant": report.outcomes[Outcome.PERMANENT],
            "attempted": report.attempted,
        }
        logger.error("Most refreshes in this run were refused; stopping the run, no status changed", extra=detail)
        self._events.publish(events.RUN_STOPPED, detail)

    def _stop_for_denials(self, report: RunReport, action: str) -> None:
        """One error for the run: the role (or a key policy) lacks `action` for every connection alike."""
        report.denials_stopped_run = True
        report.stopped_early = True
        self._halted.set()
        detail = {"action": action, "denied": report.denials[action], "reason": "aws_access_denied"}
        logger.error("AWS refuses the same action for most connections; stopping the run", extra=detail)
        self._events.publish(events.RUN_STOPPED, detail)

    def _end_dead_grants(self, report: RunReport) -> None:
        """Webex said `invalid_grant`, and the run was not mostly refusals: the grants are dead."""
        if report.refusals_stopped_run:
            return
        for connection, seen in report.dead_grants.items():
            self._end_after_run(connection, report, Outcome.PERMANENT, partial(self._still_dead, seen=seen))

    def _still_dead(
        self, connection: str, row: Connection, now: datetime, *, seen: Connection
    ) -> tuple[Outcome, Connection | None] | None:
        if row.consecutive_failures != seen.consecutive_failures or row.last_error != seen.last_error:
            return None  # a login or another refresher came in between: Webex's answer is about an old grant
        refusal = WebexError(
            "Webex says the refresh token is dead",
            code=row.last_error,
            tracking_id=row.last_tracking_id,
            kind=FailureKind.PERMANENT,
        )
        return self._grant_dead(connection, row, refusal, now, reason=GrantEnd.INVALID_GRANT)

    def _confirm_long_refusals(self, report: RunReport) -> None:
        """The same refusal for an hour, in separate runs, while others refresh fine: the grant is dead."""
        if report.refusals_stopped_run or not report.succeeded:
            return
        for connection, since in report.refused_long.items():
            self._end_after_run(connection, report, Outcome.REFUSED, partial(self._long_refused, since=since))

    def _long_refused(
        self, connection: str, row: Connection, now: datetime, *, since: int
    ) -> tuple[Outcome, Connection | None] | None:
        if row.refused_since != since:
            return None  # it changed meanwhile: no proof any more
        refusal = WebexError("Webex kept refusing this grant", code=row.refused_error, kind=FailureKind.REFUSED)
        logger.warning("The same refusal for over an hour while others refresh: the grant is dead")
        return self._grant_dead(connection, row, refusal, now, reason=GrantEnd.REFUSED_FOR_AN_HOUR)

    def _end_after_run(
        self,
        connection: str,
        report: RunReport,
        counted_as: Outcome,
        end: Callable[[str, Connection, datetime], tuple[Outcome, Connection | None] | None],
    ) -> None:
        """Under the lease again, if time allows and the row is as the run left it; what is left for
        lack of time stays active and due, and the next run asks Webex again."""
        if self._remaining_ms is not None and self._remaining_ms() < self.policy.time_margin_seconds * 1000:
            return
        now = self._clock()
        row = self._table.acquire(
            connection, owner=self._owner, now=epoch(now), lease_seconds=self.policy.lease_seconds
        )
        if row is None:
            return
        with logger.append_context_keys(connection=connection):
            try:
                ended = end(connection, row, now) if row.active else None
            except Exception:
                logger.exception("Could not end the grant; its lease expires and the next run asks Webex again")
                self._table.release_if_held(connection, owner=self._owner)
                ended = Outcome.ERROR, None
            if ended is None:
                self._table.release(connection, owner=self._owner)
                return
        report.outcomes[counted_as] -= 1
        report.failures.pop(connection, None)
        report.add(connection, *ended)

    # --- one connection -------------------------------------------------------------------------

    def refresh_one(
        self,
        connection: str,
        *,
        force: bool = False,
        remaining_ms: Callable[[], int] | None = None,
        end_grants_later: bool = False,
    ) -> tuple[Outcome, Connection | None]:
        """Refresh one connection under its lease. `force` (on-demand) skips the due check, not the lease,
        and is refused with CoolingDown within a minute of the previous forced refresh. A connection whose
        first login has not finished (`pending`) has nothing to refresh. `end_grants_later` (a run) only
        records Webex's `invalid_grant`: the run ends the grant once it knows the run was not mostly refused."""
        if remaining_ms is not None:
            self._remaining_ms = remaining_ms
        cooldown = self.policy.forced_cooldown_seconds if force else 0
        for attempt in range(1, self.policy.max_attempts + 1):
            now = self._clock()
            row = self._table.acquire(
                connection,
                owner=self._owner,
                now=epoch(now),
                lease_seconds=self.policy.lease_seconds,
                cooldown_seconds=cooldown if attempt == 1 else 0,
            )
            if row is None:
                return Outcome.SKIPPED, None
            with logger.append_context_keys(connection=connection):
                try:
                    result = self._attempt(connection, row, now, attempt=attempt, force=force, later=end_grants_later)
                except AwsAccessDenied as exc:  # met while handling another failure
                    result = self._denied(connection, row, exc, now)
                except BaseException:
                    self._table.release_if_held(connection, owner=self._owner)
                    raise
            if result is not None:
                return result
        raise AssertionError("unreachable: the last attempt never retries")

    def _attempt(
        self, connection: str, row: Connection, now: datetime, *, attempt: int, force: bool, later: bool
    ) -> tuple[Outcome, Connection | None] | None:
        """One try under the lease; None means: the lease was let go for a backoff, try again."""
        if row.status == ConnectionStatus.PENDING or (not row.due(epoch(now)) and not force):
            self._table.release(connection, owner=self._owner)
            return Outcome.SKIPPED, row
        try:
            return self._refresh_leased(connection, row, now)
        except AwsAccessDenied as exc:
            return self._denied(connection, row, exc, now)
        except ClientChanged as exc:
            return self._client_changed(connection, row, exc, now)
        except ConfigurationError as exc:  # the client secret: unset, unreadable or refused
            return self._stop_for_configuration(connection, row, type(exc).__name__, "")
        except MissingRefreshSecret:
            logger.error("Active connection without its refresh secret (SecretPrefix changed, or deleted)")
            return Outcome.MISSING_SECRET, self._record_failure(
                connection, row, Outcome.MISSING_SECRET, "missing_refresh_secret", "", now
            )
        except WebexError as exc:
            delay = self._retry_delay(exc, attempt)
            if delay is None:
                return self._handle_webex_failure(connection, row, exc, now, end_grant_later=later)
            # Let go while waiting: a login finishing meanwhile must not be undone by an old token.
            self._table.release(connection, owner=self._owner)
            logger.info("Retrying Webex", extra={"attempt": attempt, "delay_s": round(delay, 2), "error": exc.code})
            self._sleep(delay)
            return None
        except AwsUnavailable as exc:
            logger.warning("AWS call failed during refresh", extra={"error": exc.code})
            return Outcome.TRANSIENT, self._record_failure(connection, row, Outcome.TRANSIENT, exc.code, "", now)

    def _denied(
        self, connection: str, row: Connection, exc: AwsAccessDenied, now: datetime
    ) -> tuple[Outcome, Connection]:
        """Not an outage: recorded (when AWS lets even that), alarmed and announced, never retried now."""
        detail = {"action": exc.action, "resource": exc.resource}
        logger.error("AWS refused the broker's call: a role or key policy lacks a permission", extra=detail)
        self._events.publish(events.AWS_ACCESS_DENIED, {**self._event_detail(row, status=row.status), **detail})
        updated = replace(row, last_error=exc.action)
        try:
            updated = self._record_failure(connection, row, Outcome.DENIED, exc.action, "", now)
        except AwsAccessDenied:
            self._table.release_if_held(connection, owner=self._owner)
        return Outcome.DENIED, updated

    def _client_changed(
        self, connection: str, row: Connection, exc: ClientChanged, now: datetime
    ) -> tuple[Outcome, Connection]:
        """Its grant lives on with the client it was issued to: kept, alarmed once a run, never ended."""
        logger.error("The connection was authorized with another client than the stored one", extra={"why": str(exc)})
        if not self._client_change_reported.is_set():
            self._client_change_reported.set()
            detail = {"error": "client_changed", "issued_to": exc.issued_to[:8], "stored": exc.stored[:8]}
            self._events.publish(events.CONFIGURATION_ERROR, detail)
        return Outcome.CONFIGURATION, self._record_failure(
            connection, row, Outcome.CONFIGURATION, "client_changed", "", now
        )

    def _refresh_leased(self, connection: str, row: Connection, now: datetime) -> tuple[Outcome, Connection | None]:
        material = self._material(connection)
        if material.service_app:
            client = service_apps.client_for(self._broker, material.service_app)
        else:
            client = self._client
            issued_to = material.client_id or row.client_id
            if issued_to and issued_to != client.client_id:
                raise ClientChanged(issued_to, client.client_id)
        grant = material.complete(client.refresh(refresh_token=material.refresh_token, now=self._clock()))
        return self._store(connection, row, material, grant, now)

    def _store(
        self,
        connection: str,
        row: Connection,
        material: RefreshMaterial,
        grant: TokenGrant,
        now: datetime,
        *,
        healed: bool = False,
    ) -> tuple[Outcome, Connection | None]:
        """The refresh's writes, in the shared order; a healed Service App stores its whole new pair."""
        if not self._still_leased(connection, row, since=now):
            return Outcome.SKIPPED, None
        record = TokenRecord(
            connection=connection, person=material.person, grant=grant, updated_at=now, service_app=material.service_app
        )
        changed = fingerprint(grant.access_token) != row.access_token_id
        write_tokens(
            record,
            self._names,
            refresh_token_changed=grant.refresh_token != material.refresh_token,
            access_token_changed=changed,
            pace=self._writes.acquire,
            sharing=self._broker.settings.sharing,
        )
        sharing = token_sharing.converge(self._broker, connection, row.sharing)
        next_at = schedule.next_refresh_at(
            connection,
            access_expires_at=epoch(grant.access_expires_at),
            refreshed_at=epoch(now),
            now=epoch(now),
            policy=self.policy,
        )
        self._table.record_refresh(record, owner=self._owner, next_refresh_at=next_at, sharing=sharing)
        if not healed:
            self._after_success(connection, row, record)
        updated = replace(
            row,
            status=ConnectionStatus.ACTIVE,
            access_expires_at=epoch(grant.access_expires_at),
            refresh_expires_at=epoch(grant.refresh_expires_at),
            next_refresh_at=next_at,
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

    def _material(self, connection: str) -> RefreshMaterial:
        return get_refresh_material(self._names.refresh_secret(connection))

    def _retry_delay(self, exc: WebexError, attempt: int) -> float | None:
        """How long to wait before trying again within this invocation, or None to stop trying now.
        Outages and unexplained refusals are retried with exponential backoff and jitter, honouring
        Retry-After, only while waiting and one more call still fit in the invocation with room to record
        the outcome: a Lambda killed mid-retry would leave nothing recorded."""
        if exc.kind not in (FailureKind.TRANSIENT, FailureKind.REFUSED):
            return None
        if attempt >= self.policy.max_attempts or self._halted.is_set():
            return None
        if exc.status == 429:
            delay = exc.retry_after or self.policy.default_retry_after
        else:
            delay = exc.retry_after or 2 ** (attempt - 1)
        delay = min(delay + random.uniform(0, delay / 4), self.policy.retry_cap_seconds)
        if self._remaining_ms is not None:
            needed_ms = (delay + self._webex_timeout + RETRY_TIME_MARGIN_SECONDS) * 1000
            if self._remaining_ms() <= needed_ms:
                return None
        return delay

    def _handle_webex_failure(
        self, connection: str, row: Connection, exc: WebexError, now: datetime, *, end_grant_later: bool
    ) -> tuple[Outcome, Connection | None]:
        """Each failure class of the Webex client is the refresh outcome of the same name."""
        extra = {"error": exc.code, "status": exc.status, "tracking_id": exc.tracking_id, "failure": exc.kind.value}
        outcome = Outcome(exc.kind)
        match outcome:
            case Outcome.PERMANENT if end_grant_later:
                logger.warning(
                    "Webex says the refresh token is dead; ended after the run unless most was refused", extra=extra
                )
            case Outcome.PERMANENT:
                logger.warning("Grant refused: Webex says the refresh token is dead", extra=extra)
                return self._grant_dead(connection, row, exc, now, reason=GrantEnd.INVALID_GRANT)
            case Outcome.CONFIGURATION if row.service_app:
                logger.error("Webex refused this Service App's client credentials", extra=extra)
                self._events.publish(events.CONFIGURATION_ERROR, self._event_detail(row, status=row.status, exc=exc))
            case Outcome.CONFIGURATION:
                logger.error("Webex refused the integration's client credentials", extra=extra)
                return self._stop_for_configuration(connection, row, exc.code, exc.tracking_id)
            case Outcome.REFUSED:
                logger.warning("Webex refused the refresh without saying the grant is dead; will retry", extra=extra)
            case _:
                logger.warning("Webex unavailable; will retry", extra=extra)
        return outcome, self._record_failure(connection, row, outcome, exc.code, exc.tracking_id, now)

    def _grant_dead(
        self, connection: str, row: Connection, exc: WebexError, now: datetime, *, reason: GrantEnd
    ) -> tuple[Outcome, Connection | None]:
        """A person must authorize again; a Service App first tries to mint a new pair through its
        `via`. A mint that fails for a reason that proves nothing (an outage) leaves the connection
        active and retried, with its dead refresh token still on file: nothing is lost by waiting."""
        heal: dict[str, object] = {}
        if row.service_app:
            try:
                material = self._material(connection)
                grant = service_apps.mint(self._broker, material.service_app, material.person.org_id, now=now)
            except AwsUnavailable as failed:
                logger.warning(
                    "AWS failed while minting a new Service App pair; will retry", extra={"error": failed.code}
                )
                return Outcome.TRANSIENT, self._record_failure(connection, row, Outcome.TRANSIENT, failed.code, "", now)
            except ViaUnavailable as unavailable:
                if unavailable.lapsed:  # its own refresh mends it: no reason to give the app up
                    logger.warning(
                        "The via's access token lapsed; the heal waits for it", extra={"why": unavailable.reason}
                    )
                    return Outcome.TRANSIENT, self._record_failure(
                        connection, row, Outcome.TRANSIENT, "via_token_lapsed", "", now
                    )
                heal = {"heal": "not_possible", "heal_error": unavailable.reason}
            except WebexError as refused:
                if refused.kind == FailureKind.TRANSIENT:
                    logger.warning("Could not mint a new Service App pair; will retry", extra={"error": refused.code})
                    return Outcome.TRANSIENT, self._record_failure(
                        connection, row, Outcome.TRANSIENT, refused.code, refused.tracking_id, now
                    )
                heal = {"heal": "failed", "heal_error": refused.code, "heal_status": refused.status}
            else:
                return self._healed(connection, row, material, material.complete(grant), exc, now)
            logger.warning("The Service App's grant is dead and could not be minted again", extra=heal)
        return Outcome.PERMANENT, self._end_grant(connection, row, exc, now, reason=reason, detail=heal)

    def _healed(
        self,
        connection: str,
        row: Connection,
        material: RefreshMaterial,
        grant: TokenGrant,
        exc: WebexError,
        now: datetime,
    ) -> tuple[Outcome, Connection | None]:
        outcome, updated = self._store(connection, row, material, grant, now, healed=True)
        if outcome == Outcome.SKIPPED:  # the connection changed while the pair was minted: the newer one stays
            return outcome, updated
        via = material.service_app.via if material.service_app else ""
        logger.info("Service App's dead refresh token replaced by a new pair", extra={"via": via})
        metrics.add_metric(name="ServiceAppsHealed", unit="Count", value=1)
        detail = {**self._event_detail(row, status=ConnectionStatus.ACTIVE, exc=exc), "heal": "healed", "via": via}
        self._events.publish(events.SERVICE_APP_HEALED, detail)
        return outcome, updated

    def _stop_for_configuration(
        self, connection: str, row: Connection, error: str, tracking_id: str
    ) -> tuple[Outcome, Connection]:
        """No connection can refresh with these credentials: stop the run with one event, mark nobody."""
        self._table.release(connection, owner=self._owner)
        if not self._halted.is_set():
            self._halted.set()
            logger.error("The integration's client credentials are refused or unset; stopping the run")
            self._events.publish(events.CONFIGURATION_ERROR, {"error": error, "tracking_id": tracking_id})
        return Outcome.CONFIGURATION, row

    def _end_grant(
        self,
        connection: str,
        row: Connection,
        exc: WebexError,
        now: datetime,
        *,
        reason: GrantEnd,
        detail: dict | None = None,
    ) -> Connection:
        """Mark `reauth_required` with a link to re-authorize. While an earlier link is still open it is
        reused, and no new event is sent: asking again must not flood the person with links."""
        invite_id: str | None = row.reauth_invite_id
        reuse = row.status == ConnectionStatus.REAUTH_REQUIRED and self._invitation_open(invite_id, now)
        link = None
        if not reuse:
            invite_id, link = self._reauthorization_link(row, now)
        self._table.mark_reauth_required(
            connection,
            owner=self._owner,
            error=exc.code,
            tracking_id=exc.tracking_id,
            now=epoch(now),
            invite_id=invite_id,
        )
        if not reuse:
            metrics.add_metric(name="ReauthRequired", unit="Count", value=1)
            event = {
                **self._event_detail(row, status=ConnectionStatus.REAUTH_REQUIRED, exc=exc),
                "reason": reason,
                **(detail or {}),
            }
            if link:
                event["login_url"] = link
            self._events.publish(events.REAUTH_REQUIRED, event)
        return replace(row, status=ConnectionStatus.REAUTH_REQUIRED)

    def _invitation_open(self, invite_id: str | None, now: datetime) -> bool:
        if not (invite_id and self._invitations):
            return False
        invitation = self._invitations.get(invite_id)
        return invitation is not None and invitation.expires_at > epoch(now) and invitation.uses_left > 0

    def _reauthorization_link(self, row: Connection, now: datetime) -> tuple[str | None, str | None]:
        """A fresh single-use invitation for the same person and connection, so the event can be acted on."""
        base = row.login_base_url
        if not (self._invitations and base):
            return None, None
        try:
            invitation, token = self._invitations.create(
                row.name, email=row.email or None, ttl_seconds=REAUTH_LINK_SECONDS, max_uses=1, now=epoch(now)
            )
        except ValueError as exc:  # no link can be made for this person (say, a non-ASCII address)
            logger.warning("No reauthorization link can be made; the event goes without one", extra={"why": str(exc)})
            return None, None
        except (AwsUnavailable, AwsAccessDenied) as exc:  # the event matters more than its link
            error = exc.action if isinstance(exc, AwsAccessDenied) else exc.code
            logger.error("Could not create a reauthorization link", extra={"error": error})
            return None, None
        return invitation.id, invitation_link(base, token)

    def _record_failure(
        self, connection: str, row: Connection, error_class: "Outcome", code: str, tracking_id: str, now: datetime
    ) -> Connection:
        """Status and schedule kept, the next attempt backed off. Returns the row as it now stands."""
        failures = row.consecutive_failures + 1
        refused_since = None
        if error_class == Outcome.REFUSED:
            same = row.refused_error == code and row.refused_since is not None
            refused_since = row.refused_since if same else epoch(now)
        self._table.record_failure(
            connection,
            owner=self._owner,
            error=code,
            error_class=error_class,
            tracking_id=tracking_id,
            now=epoch(now),
            retry_at=schedule.retry_at(failures, now=epoch(now), policy=self.policy),
            refused_since=refused_since,
        )
        updated = replace(row, consecutive_failures=failures, last_error=code, last_tracking_id=tracking_id)
        if refused_since is not None:
            updated = replace(updated, refused_error=code, refused_since=refused_since)
        return updated

    def _after_success(self, connection: str, row: Connection, record: TokenRecord) -> None:
        if row.consecutive_failures > 0 or row.status == ConnectionStatus.REAUTH_REQUIRED:
            logger.info("Connection recovered")
            self._events.publish(events.RECOVERED, self._event_detail(row, status=ConnectionStatus.ACTIVE))
        refresh_expires = epoch(record.grant.refresh_expires_at)
        if refresh_expires and refresh_expires - epoch(record.updated_at) < self.policy.expiry_warning_seconds:
            logger.warning("Refresh token expires soon", extra={"refresh_expires_at": refresh_expires})
            metrics.add_metric(name="RefreshTokenExpiring", unit="Count", value=1)
            self._events.publish(
                events.REFRESH_TOKEN_EXPIRING,
                {**self._event_detail(row, status=ConnectionStatus.ACTIVE), "refresh_expires_at": refresh_expires},
            )

    @staticmethod
    def _event_detail(row: Connection, *, status: str, exc: WebexError | None = None) -> dict:
        detail = {
            "connection": row.name,
            "kind": row.kind,
            "email": row.email,
            "display_name": row.display_name,
            "status": status,
        }
        if row.service_app:
            detail.update(app_id=row.app_id, org_id=row.org_id)
        if exc is not None:
            detail.update(error=exc.code, tracking_id=exc.tracking_id)
        return detail

    def _emit_run_metrics(self, report: RunReport, now: int) -> None:
        counts = report.outcomes
        for name, value in (
            ("Refreshed", report.succeeded),
            ("Skipped", counts[Outcome.SKIPPED]),
            ("FailedTransient", counts[Outcome.TRANSIENT]),
            ("FailedRefused", counts[Outcome.REFUSED]),
            ("FailedPermanent", counts[Outcome.PERMANENT]),
            ("MissingRefreshSecrets", counts[Outcome.MISSING_SECRET]),
            ("RunsStoppedByRefusals", 1 if report.refusals_stopped_run else 0),
            ("ConfigurationErrors", 1 if counts[Outcome.CONFIGURATION] else 0),
            ("RunsStoppedByDenials", 1 if report.denials_stopped_run else 0),
            ("Crashed", counts[Outcome.ERROR]),
            ("ConnectionsAtRisk", report.at_risk),
            ("MaxConsecutiveFailures", report.max_consecutive_failures),
        ):
            metrics.add_metric(name=name, unit="Count", value=value)
        if report.earliest_access_expiry is not None:
            hours = (report.earliest_access_expiry - now) / 3600
            metrics.add_metric(name="HoursToEarliestAccessExpiry", unit="None", value=round(hours, 2))
        if report.earliest_refresh_expiry is not None:
            days = (report.earliest_refresh_expiry - now) / 86400
            metrics.add_metric(name="DaysToEarliestRefreshExpiry", unit="None", value=round(days, 2))
