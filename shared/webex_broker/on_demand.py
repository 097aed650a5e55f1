"""On-demand refresh, for a workload that just got a 401 and for the admin CLI: the same lease and
the same steps as the scheduled run, answered with status and expiry only (never a token)."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from webex_broker.connections import PENDING, ConnectionsTable
from webex_broker.observability import metrics
from webex_broker.refresh import Outcome, Refresher
from webex_broker.settings import load_settings
from webex_broker.token_documents import iso


@dataclass(frozen=True)
class RefreshAnswer:
    http_status: int
    body: dict


def refresh_connection(name: str, *, remaining_ms: Callable[[], int] | None = None) -> RefreshAnswer:
    """remaining_ms bounds Webex retries to the caller's time (the function's timeout)."""
    metrics.add_metric(name="OnDemandRefreshes", unit="Count", value=1)
    row = ConnectionsTable(load_settings().connections_table).get(name)
    if row is None:
        return RefreshAnswer(404, {"connection": name, "message": "No such connection."})
    if row.get("status") == PENDING:
        return RefreshAnswer(409, {"connection": name, "status": PENDING, "message": "Not connected yet."})
    outcome, row = Refresher().refresh_one(name, force=True, remaining_ms=remaining_ms)
    body = {"connection": name, "outcome": outcome.value}
    if row:
        body["status"] = row.get("status")
        if row.get("access_expires_at"):
            body["expires_at"] = iso(datetime.fromtimestamp(int(row["access_expires_at"]), UTC))
    match outcome:
        case Outcome.REFRESHED | Outcome.UNCHANGED:
            return RefreshAnswer(200, body)
        case Outcome.SKIPPED:
            body["message"] = "Another refresh of this connection is in progress; read the secret again shortly."
            return RefreshAnswer(409, body)
        case Outcome.PERMANENT:
            body["message"] = "Webex refused the grant: the person must authorize again."
            return RefreshAnswer(409, body)
        case Outcome.CONFIGURATION:
            body["message"] = "Webex refused the broker's client credentials."
            return RefreshAnswer(502, body)
    body["message"] = "Webex or AWS is unavailable; try again later."
    return RefreshAnswer(503, body)
