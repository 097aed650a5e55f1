"""On-demand refresh, for a workload that just got a 401 and for the admin CLI: the same lease and
the same steps as the scheduled run, answered with status and expiry only (never a token).

Every path answers the documented JSON, and none leaves the lease held: a failure that is nobody's
fault (throttled AWS, an unreadable client secret, a lost lease) is a 5xx or 409 with a message."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError, TransformParameterError
from botocore.exceptions import BotoCoreError, ClientError

from webex_broker.adapters import aws
from webex_broker.adapters.connections import CoolingDown, LeaseLost
from webex_broker.adapters.invitations import CONNECTION_NAME
from webex_broker.core.clock import iso
from webex_broker.core.connection import ConnectionStatus
from webex_broker.core.errors import AwsAccessDenied, ConfigurationError
from webex_broker.core.observability import logger, metrics
from webex_broker.flows.broker import Broker, current
from webex_broker.flows.refresh import SUCCEEDED, Outcome, Refresher


@dataclass(frozen=True)
class RefreshAnswer:
    http_status: int
    body: dict
    retry_after: int | None = None


MESSAGES = {
    Outcome.SKIPPED: (409, "A refresh or login of this connection is in progress; read the secret again shortly."),
    Outcome.PERMANENT: (
        409,
        "Webex refused the grant: the person must authorize again (a Service App: its operator adds it again).",
    ),
    Outcome.CONFIGURATION: (
        502,
        "The client credentials (the integration's, or the Service App's) are refused, unset or unreadable, "
        "or the connection was authorized with another client than the stored one; the broker's operator must act.",
    ),
    Outcome.DENIED: (
        502,
        "AWS refused one of the broker's own calls (a role or key policy lacks a permission); its operator must act.",
    ),
    Outcome.MISSING_SECRET: (502, "The connection's refresh secret is missing; its operator must act."),
    Outcome.REFUSED: (503, "Webex refused the refresh without saying why; the connection is kept and retried."),
}


def refresh_connection(name: str, *, remaining_ms: Callable[[], int] | None = None) -> RefreshAnswer:
    """remaining_ms bounds Webex retries to the caller's time (the function's timeout). Assembling this
    container's broker is inside the answer too (a bad configuration is JSON)."""
    metrics.add_metric(name="OnDemandRefreshes", unit="Count", value=1)
    try:
        return _refresh(current(), name, remaining_ms)
    except CoolingDown as exc:
        message = "This connection was refreshed on demand less than a minute ago; try again after Retry-After."
        return RefreshAnswer(429, {"connection": name, "message": message}, retry_after=max(exc.retry_after, 1))
    except LeaseLost:
        return RefreshAnswer(409, {"connection": name, "message": MESSAGES[Outcome.SKIPPED][1]})
    except AwsAccessDenied as exc:
        logger.error("AWS refused the broker's call", extra={"action": exc.action, "resource": exc.resource})
        return RefreshAnswer(502, {"connection": name, "message": MESSAGES[Outcome.DENIED][1]})
    except (ConfigurationError, GetParameterError, TransformParameterError) as exc:
        logger.error("The broker cannot read its configuration", extra={"error_type": type(exc).__name__})
        message = "The broker cannot read its integration's configuration; its operator must act (see its logs)."
        return RefreshAnswer(502, {"connection": name, "message": message})
    except (ClientError, BotoCoreError) as exc:
        logger.warning("AWS call failed during an on-demand refresh", extra={"error": aws.error_code(exc)})
        return RefreshAnswer(503, {"connection": name, "message": "AWS is unavailable; try again later."})


def _refresh(broker: Broker, name: str, remaining_ms: Callable[[], int] | None) -> RefreshAnswer:
    if not CONNECTION_NAME.fullmatch(name):  # not even asked of the table: a retry would not help
        return RefreshAnswer(400, {"message": "Not a connection name: 1-128 of A-Z a-z 0-9 and _+=.@-."})
    row = broker.connections.get(name)
    if row is None:
        return RefreshAnswer(404, {"connection": name, "message": "No such connection."})
    if row.status == ConnectionStatus.PENDING:
        return RefreshAnswer(409, {"connection": name, "status": row.status, "message": "Not connected yet."})
    outcome, row = Refresher(broker).refresh_one(name, force=True, remaining_ms=remaining_ms)
    body = {"connection": name, "outcome": outcome.value}
    if row:
        body["status"] = row.status
        if row.access_expires_at:
            body["expires_at"] = iso(datetime.fromtimestamp(row.access_expires_at, UTC))
    if outcome in SUCCEEDED:
        return RefreshAnswer(200, body)
    status, message = MESSAGES.get(outcome, (503, "Webex or AWS is unavailable; try again later."))
    return RefreshAnswer(status, {**body, "message": message})
