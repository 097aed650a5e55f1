"""A connection's health in words, as an operator needs it: is its token usable now, and if something is
wrong, since when and why. `list`, `show`, `token` and `doctor` all read it from here, so they never
disagree about a connection."""

from dataclasses import dataclass
from enum import StrEnum

from webex_broker.core.connection import Connection, ConnectionStatus


class Health(StrEnum):
    OK = "ok"  # refreshed on schedule, last attempt succeeded
    FAILING = "failing"  # attempts fail for reasons that prove nothing about the grant; retried
    REFUSED = "refused"  # Webex keeps refusing without saying why; retried, and ended only on proof
    EXPIRED = "expired"  # active, but its access token has lapsed: the broker failed its promise
    REAUTH_REQUIRED = "reauth_required"  # Webex proved the grant dead: only its person (or app) can fix it
    PENDING = "pending"  # a login that has not finished: no token yet


@dataclass(frozen=True)
class ConnectionHealth:
    state: Health
    since: int | None = None  # when the trouble began (epoch seconds)
    error: str = ""  # Webex's or AWS's error code, never a message that could carry a token
    error_class: str = ""  # transient, permanent, denied, configuration, ...

    @property
    def usable(self) -> bool:
        """Whether the access token in the secret can be handed to a workload now."""
        return self.state in (Health.OK, Health.FAILING, Health.REFUSED)


def health(row: Connection, now: int) -> ConnectionHealth:
    """What the row proves. A lapsed access token outranks a failure streak: it is what a user sees."""
    if row.status == ConnectionStatus.PENDING:
        return ConnectionHealth(Health.PENDING, row.created_at)
    if row.status == ConnectionStatus.REAUTH_REQUIRED:
        return ConnectionHealth(Health.REAUTH_REQUIRED, row.last_error_at, row.last_error, row.last_error_class)
    if row.access_expires_at is not None and row.access_expires_at <= now:
        return ConnectionHealth(Health.EXPIRED, row.access_expires_at, row.last_error, row.last_error_class)
    if row.refused_since is not None:
        return ConnectionHealth(Health.REFUSED, row.refused_since, row.refused_error, row.last_error_class)
    if row.consecutive_failures:
        since = row.failing_since or row.last_error_at
        return ConnectionHealth(Health.FAILING, since, row.last_error, row.last_error_class)
    return ConnectionHealth(Health.OK)
