"""On-demand refresh, for a workload that just got a 401 and for the admin CLI: the same lease and
the same steps as the scheduled run. What became of it is a typed result; `edge.refresh_route` turns
it into the route's JSON (status and expiry only, never a token).

Every path ends in a result, and none leaves the lease held: a failure that is nobody's fault
(throttled AWS, an unreadable client secret, a lost lease) says so, and the route answers 5xx or 409."""

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from webex_broker.adapters.invitations import CONNECTION_NAME
from webex_broker.core.connection import Connection, ConnectionStatus
from webex_broker.core.errors import AwsAccessDenied, AwsUnavailable, ConfigurationError, CoolingDown, LeaseLost
from webex_broker.core.observability import logger, metrics
from webex_broker.flows.broker import Broker
from webex_broker.flows.refresh import Refresher
from webex_broker.flows.refresh_report import Outcome


class NotRefreshed(StrEnum):
    """Why an on-demand refresh did not reach an outcome of its own."""

    NOT_A_NAME = "not_a_name"  # no connection can have this name: asked of nothing
    NOT_FOUND = "not_found"
    NOT_CONNECTED = "not_connected"  # its first login has not finished
    COOLING_DOWN = "cooling_down"  # forced less than a minute ago: `retry_after`
    BUSY = "busy"  # a refresh or login of it took the lease over
    DENIED = "denied"  # AWS refused one of the broker's calls
    UNCONFIGURED = "unconfigured"  # the integration's configuration cannot be read
    AWS_UNAVAILABLE = "aws_unavailable"


@dataclass(frozen=True)
class OnDemandResult:
    connection: str
    outcome: Outcome | None = None  # the refresh's own outcome, when it ran
    row: Connection | None = None
    not_refreshed: NotRefreshed | None = None
    retry_after: int | None = None


def refresh_now(
    broker: Callable[[], Broker], name: str, *, remaining_ms: Callable[[], int] | None = None
) -> OnDemandResult:
    """remaining_ms bounds Webex retries to the caller's time (the function's timeout). `broker`
    assembles the broker when asked, inside the result (a bad configuration is an answer, not a crash)."""
    metrics.add_metric(name="OnDemandRefreshes", unit="Count", value=1)
    try:
        return _refresh(broker(), name, remaining_ms)
    except CoolingDown as exc:
        return OnDemandResult(name, not_refreshed=NotRefreshed.COOLING_DOWN, retry_after=max(exc.retry_after, 1))
    except LeaseLost:
        return OnDemandResult(name, not_refreshed=NotRefreshed.BUSY)
    except AwsAccessDenied as exc:
        logger.error("AWS refused the broker's call", extra={"action": exc.action, "resource": exc.resource})
        return OnDemandResult(name, not_refreshed=NotRefreshed.DENIED)
    except ConfigurationError as exc:
        logger.error("The broker cannot read its configuration", extra={"error_type": type(exc).__name__})
        return OnDemandResult(name, not_refreshed=NotRefreshed.UNCONFIGURED)
    except AwsUnavailable as exc:
        logger.warning("AWS call failed during an on-demand refresh", extra={"error": exc.code})
        return OnDemandResult(name, not_refreshed=NotRefreshed.AWS_UNAVAILABLE)


def _refresh(broker: Broker, name: str, remaining_ms: Callable[[], int] | None) -> OnDemandResult:
    if not CONNECTION_NAME.fullmatch(name):  # not even asked of the table: a retry would not help
        return OnDemandResult(name, not_refreshed=NotRefreshed.NOT_A_NAME)
    row = broker.connections.get(name)
    if row is None:
        return OnDemandResult(name, not_refreshed=NotRefreshed.NOT_FOUND)
    if row.status == ConnectionStatus.PENDING:
        return OnDemandResult(name, row=row, not_refreshed=NotRefreshed.NOT_CONNECTED)
    outcome, updated = Refresher(broker).refresh_one(name, force=True, remaining_ms=remaining_ms)
    return OnDemandResult(name, outcome=outcome, row=updated)
