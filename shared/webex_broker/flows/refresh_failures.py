"""A failed refresh's bookkeeping: the row keeps its status and schedule and is backed off (an
unexplained refusal also keeps its streak, which proves a dead grant once it lasts an hour), and a
failed Webex call is retried within the invocation only while the wait and one more call still fit."""

import random
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from webex_broker.core import schedule
from webex_broker.core.clock import epoch
from webex_broker.core.connection import Connection
from webex_broker.core.errors import AwsAccessDenied, ClientChanged, FailureKind, WebexError
from webex_broker.core.events import (
    About,
    AwsRefused,
    CredentialsRefused,
    GrantsOfAnotherClient,
    ServiceAppClientRefused,
    WebexSaid,
)
from webex_broker.core.observability import logger
from webex_broker.core.settings import RefreshPolicy
from webex_broker.flows.broker import Broker
from webex_broker.flows.refresh_report import Outcome

RETRY_TIME_MARGIN_SECONDS = 5


def retry_delay(
    exc: WebexError,
    attempt: int,
    policy: RefreshPolicy,
    *,
    halted: bool,
    remaining_ms: Callable[[], int] | None,
    call_seconds: float,
) -> float | None:
    """How long to wait before trying again within this invocation, or None to stop trying now.
    Outages and unexplained refusals are retried with exponential backoff and jitter, honouring
    Retry-After, only while waiting and one more call still fit in the invocation with room to record
    the outcome: a Lambda killed mid-retry would leave nothing recorded."""
    if exc.kind not in (FailureKind.TRANSIENT, FailureKind.REFUSED):
        return None
    if attempt >= policy.max_attempts or halted:
        return None
    backoff = policy.default_retry_after if exc.throttled else 2 ** (attempt - 1)
    delay = exc.retry_after or backoff
    delay = min(delay + random.uniform(0, delay / 4), policy.retry_cap_seconds)
    if remaining_ms is not None:
        needed_ms = (delay + call_seconds + RETRY_TIME_MARGIN_SECONDS) * 1000
        if remaining_ms() <= needed_ms:
            return None
    return delay


class Failures:
    """What a refresh does with each kind of failure: recorded with status and schedule kept, backed
    off, announced where an operator must act. Only proof ends a grant, and that is dead_grants'."""

    def __init__(self, broker: Broker, *, owner: str, halted: threading.Event) -> None:
        self._table = broker.connections
        self._events = broker.events
        self._policy = broker.settings.refresh
        self._owner = owner
        self._halted = halted
        self._client_change_reported = threading.Event()

    def record(self, row: Connection, error_class: Outcome, code: str, tracking_id: str, now: datetime) -> Connection:
        """Status and schedule kept, the next attempt backed off, the lease released. Returns the row as
        it now stands."""
        failures = row.consecutive_failures + 1
        refused_since = None
        if error_class == Outcome.REFUSED:
            same = row.refused_error == code and row.refused_since is not None
            refused_since = row.refused_since if same else epoch(now)
        self._table.record_failure(
            row.name,
            owner=self._owner,
            error=code,
            error_class=error_class,
            tracking_id=tracking_id,
            now=epoch(now),
            retry_at=schedule.retry_at(failures, now=epoch(now), written_at=row.last_write, policy=self._policy),
            refused_since=refused_since,
        )
        updated = replace(row, consecutive_failures=failures, last_error=code, last_tracking_id=tracking_id)
        if refused_since is not None:
            updated = replace(updated, refused_error=code, refused_since=refused_since)
        return updated

    def webex(self, row: Connection, exc: WebexError, now: datetime) -> tuple[Outcome, Connection]:
        """Each failure class of the Webex client is the refresh outcome of the same name; a dead
        grant met in a run is recorded here, and ended after the run (the refresh ends it at once
        otherwise, through dead_grants)."""
        extra = {"error": exc.code, "status": exc.status, "tracking_id": exc.tracking_id, "failure": exc.kind.value}
        outcome = Outcome(exc.kind)
        match outcome:
            case Outcome.PERMANENT:
                logger.warning(
                    "Webex says the refresh token is dead; ended after the run unless most was refused", extra=extra
                )
            case Outcome.CONFIGURATION if row.service_app:
                logger.error("Webex refused this Service App's client credentials", extra=extra)
                said = WebexSaid(exc.code, exc.tracking_id)
                self._events.publish(ServiceAppClientRefused(About.of(row, status=row.status), said))
            case Outcome.CONFIGURATION:
                logger.error("Webex refused the integration's client credentials", extra=extra)
                return self.stop_for_configuration(row, exc.code, exc.tracking_id)
            case Outcome.REFUSED:
                logger.warning("Webex refused the refresh without saying the grant is dead; will retry", extra=extra)
            case _:
                logger.warning("Webex unavailable; will retry", extra=extra)
        return outcome, self.record(row, outcome, exc.code, exc.tracking_id, now)

    def denied(self, row: Connection, exc: AwsAccessDenied, now: datetime) -> tuple[Outcome, Connection]:
        """Not an outage: recorded (when AWS lets even that), alarmed and announced, never retried now."""
        detail = {"action": exc.action, "resource": exc.resource}
        logger.error("AWS refused the broker's call: a role or key policy lacks a permission", extra=detail)
        self._events.publish(AwsRefused(About.of(row, status=row.status), exc.action, exc.resource))
        updated = replace(row, last_error=exc.action)
        try:
            updated = self.record(row, Outcome.DENIED, exc.action, "", now)
        except AwsAccessDenied:
            self._table.release_if_held(row.name, owner=self._owner)
        return Outcome.DENIED, updated

    def client_changed(self, row: Connection, exc: ClientChanged, now: datetime) -> tuple[Outcome, Connection]:
        """Its grant lives on with the client it was issued to: kept, alarmed once a run, never ended."""
        logger.error("The connection was authorized with another client than the stored one", extra={"why": str(exc)})
        if not self._client_change_reported.is_set():
            self._client_change_reported.set()
            self._events.publish(GrantsOfAnotherClient(issued_to=exc.issued_to[:8], stored=exc.stored[:8]))
        return Outcome.CONFIGURATION, self.record(row, Outcome.CONFIGURATION, "client_changed", "", now)

    def stop_for_configuration(self, row: Connection, error: str, tracking_id: str) -> tuple[Outcome, Connection]:
        """No connection can refresh with these credentials: stop the run with one event, mark nobody."""
        self._table.release(row.name, owner=self._owner)
        if not self._halted.is_set():
            self._halted.set()
            logger.error("The integration's client credentials are refused or unset; stopping the run")
            self._events.publish(CredentialsRefused(WebexSaid(error, tracking_id)))
        return Outcome.CONFIGURATION, row
