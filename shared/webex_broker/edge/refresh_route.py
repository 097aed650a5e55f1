"""POST /connections/{name}/refresh's answers: an on-demand refresh's result as the documented JSON,
status and expiry only (never a token), with the HTTP status a workload's retry logic can act on."""

from datetime import UTC, datetime

from webex_broker.core.clock import iso
from webex_broker.edge import web
from webex_broker.flows.on_demand import NotRefreshed, OnDemandResult
from webex_broker.flows.refresh_report import SUCCEEDED, Outcome

OUTCOMES = {
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
UNAVAILABLE = (503, "Webex or AWS is unavailable; try again later.")
NOT_REFRESHED = {
    NotRefreshed.NOT_A_NAME: (400, "Not a connection name: 1-128 of A-Z a-z 0-9 and _+=.@-."),
    NotRefreshed.NOT_FOUND: (404, "No such connection."),
    NotRefreshed.NOT_CONNECTED: (409, "Not connected yet."),
    NotRefreshed.COOLING_DOWN: (
        429,
        "This connection was refreshed on demand less than a minute ago; try again after Retry-After.",
    ),
    NotRefreshed.BUSY: OUTCOMES[Outcome.SKIPPED],
    NotRefreshed.DENIED: OUTCOMES[Outcome.DENIED],
    NotRefreshed.UNCONFIGURED: (
        502,
        "The broker cannot read its integration's configuration; its operator must act (see its logs).",
    ),
    NotRefreshed.AWS_UNAVAILABLE: (503, "AWS is unavailable; try again later."),
}


def answer(result: OnDemandResult) -> dict:
    """The route's response: 200 with status and expiry, or the status that says what to do next."""
    if result.not_refreshed is not None:
        status, message = NOT_REFRESHED[result.not_refreshed]
        body: dict = {"message": message}
        if result.not_refreshed != NotRefreshed.NOT_A_NAME:
            body = {"connection": result.connection, **body}
        if result.not_refreshed == NotRefreshed.NOT_CONNECTED and result.row:
            body["status"] = result.row.status
        response = web.json_response(status, body)
        if result.retry_after:
            response["headers"]["Retry-After"] = str(result.retry_after)
        return response
    outcome = result.outcome
    body = {"connection": result.connection, "outcome": outcome.value if outcome else None}
    if result.row:
        body["status"] = result.row.status
        if result.row.access_expires_at:
            body["expires_at"] = iso(datetime.fromtimestamp(result.row.access_expires_at, UTC))
    if outcome in SUCCEEDED:
        return web.json_response(200, body)
    status, message = OUTCOMES.get(outcome, UNAVAILABLE) if outcome else UNAVAILABLE
    return web.json_response(status, {**body, "message": message})
