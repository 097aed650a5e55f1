"""What a refresh comes to: each connection's outcome, and a run's report of them, which tells a run
whose attempts were mostly refused (Webex's or the integration's fault, not the people's) from one
where some grants are dead, and feeds the metrics the alarms read."""

import threading
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum

from webex_broker.core.connection import Connection, ConnectionStatus
from webex_broker.core.observability import metrics
from webex_broker.core.settings import RefreshPolicy


class Outcome(StrEnum):
    """What became of one connection in a run. The failures carry the Webex client's FailureKind values
    (a failure of that kind is the outcome of the same name) and are what `last_error_class` records."""

    REFRESHED = "refreshed"  # Webex gave a new access token; the token secret has it
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
STATUS_METRICS = {
    ConnectionStatus.ACTIVE: "ConnectionsActive",
    ConnectionStatus.REAUTH_REQUIRED: "ConnectionsReauthRequired",
    ConnectionStatus.PENDING: "ConnectionsPending",
}


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
    statuses: dict[str, int] | None = None  # connections per status once the run is done; None if AWS did not say
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

    def summary(self) -> "RunSummary":
        return RunSummary(
            refreshed=self.outcomes[Outcome.REFRESHED],
            unchanged=self.outcomes[Outcome.UNCHANGED],
            succeeded=self.succeeded,
            failed=len(self.failures),
            failures=dict(self.failures),
            outcomes={k.value: v for k, v in sorted(self.outcomes.items()) if v},
            stopped_early=self.stopped_early,
            refusals_stopped_run=self.refusals_stopped_run,
            denials_stopped_run=self.denials_stopped_run,
            denied=dict(self.denials),
        )


@dataclass(frozen=True)
class RunSummary:
    """A run's answer: the refresher's return value, its log line, and the report `webex-broker refresh
    --due` reads back. `refreshed` counts new tokens only; `succeeded` adds the unchanged and the healed."""

    refreshed: int
    unchanged: int
    succeeded: int
    failed: int
    failures: dict[str, str]  # connection -> its failure outcome
    outcomes: dict[str, int]
    stopped_early: bool
    refusals_stopped_run: bool
    denials_stopped_run: bool
    denied: dict[str, int]  # AWS action -> connections it was refused for

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, document: dict) -> "RunSummary":
        return cls(**{f.name: document[f.name] for f in fields(cls)})

    def counts(self) -> str:
        """What happened, in words: 'refreshed 0, unchanged 4, failed 0'."""
        others = {k: v for k, v in self.outcomes.items() if k not in ("refreshed", "unchanged")}
        counts = {"refreshed": self.refreshed, "unchanged": self.unchanged, **others, "failed": self.failed}
        return ", ".join(f"{outcome} {n}" for outcome, n in counts.items())


def _earliest(known: int | None, candidate: int | None) -> int | None:
    values = [v for v in (known, candidate) if v is not None]
    return min(values) if values else None


def emit_run_metrics(report: RunReport, now: int) -> None:
    """One data point per metric and run: what the alarms and the dashboard read."""
    counts = report.outcomes
    for name, value in (
        ("Refreshed", report.succeeded),
        ("Skipped", counts[Outcome.SKIPPED]),
        ("Failed", len(report.failures)),
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
    if report.statuses is not None:
        for status, name in STATUS_METRICS.items():
            metrics.add_metric(name=name, unit="Count", value=report.statuses.get(status, 0))
    if report.earliest_access_expiry is not None:
        hours = (report.earliest_access_expiry - now) / 3600
        metrics.add_metric(name="HoursToEarliestAccessExpiry", unit="None", value=round(hours, 2))
    if report.earliest_refresh_expiry is not None:
        days = (report.earliest_refresh_expiry - now) / 86400
        metrics.add_metric(name="DaysToEarliestRefreshExpiry", unit="None", value=round(days, 2))
