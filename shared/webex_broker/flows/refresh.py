"""Refreshing tokens so a connection's token never lapses.

One connection at a time is refreshed under a lease on its row, in a fixed order of idempotent
steps: read the refresh material → ask Webex → write the refresh secret (only if the refresh token
changed) → write the token secret (only if the access token changed) → bring the token secret
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
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime
from functools import partial

from webex_broker.adapters.secret_store import PendingVersion
from webex_broker.core.clock import epoch, utc_now
from webex_broker.core.connection import Connection
from webex_broker.core.errors import AwsAccessDenied, AwsUnavailable, FailureKind, GrantEnd, WebexError
from webex_broker.core.events import RunStoppedByDenials, RunStoppedByRefusals
from webex_broker.core.observability import logger
from webex_broker.core.settings import RefreshPolicy
from webex_broker.flows.broker import Broker, current
from webex_broker.flows.connection_refresh import ConnectionRefresher
from webex_broker.flows.refresh_report import Outcome, RunReport, emit_run_metrics


class Refresher:
    """A run: every due connection, a few at a time, within the invocation's time; the run's breakers
    (mostly refused, one AWS action mostly denied); and, once the run is done, the grants it proved
    dead. One connection's refresh is `connection_refresh`."""

    def __init__(
        self,
        broker: Broker | None = None,
        *,
        clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        """clock and sleep are what tests replace, to step past leases and skip backoff waits."""
        broker = broker or current()
        self.policy: RefreshPolicy = broker.settings.refresh
        self._table = broker.connections
        self._events = broker.events
        self._clock = clock
        self.one = ConnectionRefresher(broker, clock=clock, sleep=sleep or time.sleep)  # each connection's refresh

    def run(self, *, remaining_ms: Callable[[], int], run_id: str = "") -> RunReport:
        """Refresh what is due with bounded concurrency; stop starting work when time runs short. A run
        someone asked for by `run_id` leaves its report for them (`webex-broker refresh --due`)."""
        self.one.remaining_ms = remaining_ms
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
                if self.one.halted.is_set() or remaining_ms() < margin_ms:
                    report.stopped_early = True
                    break
                in_flight[pool.submit(self.one.refresh_one, name, end_grants_later=True)] = name
            for future in wait(in_flight).done:
                self._collect(report, in_flight[future], future)
        self._end_dead_grants(report)
        self._confirm_long_refusals(report)
        report.statuses = self._count_statuses()
        upcoming = self._table.next_up(now)
        if upcoming:
            report.note_expiries(upcoming)
        emit_run_metrics(report, now)
        summary = report.summary()
        self._table.record_run(
            finished_at=epoch(self._clock()),
            outcomes=summary.outcomes,
            run_id=run_id,
            report=json.dumps(summary.as_dict()),
        )
        logger.info("Refresh run finished", extra=summary.as_dict())
        return report

    def _count_statuses(self) -> dict[str, int] | None:
        """For the dashboard only: a count AWS refuses or cannot give is logged, and never fails the run."""
        try:
            return self._table.count_by_status()
        except (AwsUnavailable, AwsAccessDenied) as exc:
            logger.warning("Could not count the connections by status", extra={"error": type(exc).__name__})
            return None

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
        self.one.halted.set()
        stopped = RunStoppedByRefusals(
            refused=report.outcomes[Outcome.REFUSED],
            invalid_grant=report.outcomes[Outcome.PERMANENT],
            attempted=report.attempted,
        )
        logger.error(
            "Most refreshes in this run were refused; stopping the run, no status changed", extra=stopped.detail()
        )
        self._events.publish(stopped)

    def _stop_for_denials(self, report: RunReport, action: str) -> None:
        """One error for the run: the role (or a key policy) lacks `action` for every connection alike."""
        report.denials_stopped_run = True
        report.stopped_early = True
        self.one.halted.set()
        stopped = RunStoppedByDenials(action=action, denied=report.denials[action])
        logger.error("AWS refuses the same action for most connections; stopping the run", extra=stopped.detail())
        self._events.publish(stopped)

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
        return self.one.dead_grants.handle(connection, row, refusal, now, reason=GrantEnd.INVALID_GRANT)

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
        return self.one.dead_grants.handle(connection, row, refusal, now, reason=GrantEnd.REFUSED_FOR_AN_HOUR)

    def _end_after_run(
        self,
        connection: str,
        report: RunReport,
        counted_as: Outcome,
        end: Callable[[str, Connection, datetime], tuple[Outcome, Connection | None] | None],
    ) -> None:
        """Under the lease again, if time allows and the row is as the run left it; what is left for
        lack of time stays active and due, and the next run asks Webex again."""
        if self.one.remaining_ms is not None and self.one.remaining_ms() < self.policy.time_margin_seconds * 1000:
            return
        now = self._clock()
        row = self._table.acquire(
            connection, owner=self.one.owner, now=epoch(now), lease_seconds=self.policy.lease_seconds
        )
        if row is None:
            return
        with logger.append_context_keys(connection=connection):
            try:
                ended = end(connection, row, now) if row.active else None
            except Exception:
                logger.exception("Could not end the grant; its lease expires and the next run asks Webex again")
                self._table.release_if_held(connection, owner=self.one.owner)
                ended = Outcome.ERROR, None
            if ended is None:
                self._table.release(connection, owner=self.one.owner)
                return
        report.outcomes[counted_as] -= 1
        report.failures.pop(connection, None)
        report.add(connection, *ended)

    def refresh_one(
        self,
        connection: str,
        *,
        force: bool = False,
        remaining_ms: Callable[[], int] | None = None,
        rotation: PendingVersion | None = None,
    ) -> tuple[Outcome, Connection | None]:
        """One connection now (on-demand, or a rotation: `force` skips the due check, not the lease), its
        grant ended at once on proof (connection_refresh.ConnectionRefresher.refresh_one)."""
        return self.one.refresh_one(connection, force=force, remaining_ms=remaining_ms, rotation=rotation)
