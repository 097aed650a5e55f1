"""API Gateway HTTP API (payload v2) in and out: cookies, redirects, JSON, and the one place that turns
the broker's errors into pages."""

import json
import time
from collections.abc import Callable

from aws_lambda_powertools.utilities.typing import LambdaContext

from webex_broker.adapters.login_state import browser_cookie_name, new_browser_nonce, well_formed
from webex_broker.core.errors import (
    AccessDenied,
    BadCallback,
    ConfigurationError,
    ConsentDeclined,
    Denial,
    FailureKind,
    InvitationProblem,
    InvitationRejected,
    LoginBusy,
    NotConfigured,
    StateProblem,
    StateRejected,
    WebexError,
)
from webex_broker.core.observability import logger
from webex_broker.edge import pages

HTTP_API_TIMEOUT_MS = 30_000  # API Gateway's HTTP API integration timeout, fixed
PAGE_MARGIN_MS = 1_000  # for the page itself and API Gateway's hop back to the browser

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Strict-Transport-Security": "max-age=31536000",
}


INVITATION_PROBLEMS = {
    InvitationProblem.UNKNOWN: ("This invitation link is not valid", "Check that you copied the whole link."),
    InvitationProblem.EXPIRED: ("This invitation has expired", "Ask the broker's administrator for a new one."),
    InvitationProblem.USED: ("This invitation was already used", "Ask the broker's administrator for a new one."),
    InvitationProblem.REVOKED: ("This invitation was withdrawn", "Ask the broker's administrator for a new one."),
}


def base_url(event: dict, public_base_url: str) -> str:
    """Where the broker's pages live: the configured custom domain, else this API's own https domain
    from the request context. Never from client headers such as X-Forwarded-Proto or Host."""
    if public_base_url:
        return public_base_url
    context = event.get("requestContext", {})
    stage = context.get("stage", "$default")
    stage_path = "" if stage == "$default" else f"/{stage}"
    return f"https://{context['domainName']}{stage_path}"


def time_left_ms(event: dict, context: LambdaContext) -> Callable[[], int]:
    """Milliseconds this request may still use: API Gateway gives the whole request 30 s from its
    arrival (`requestContext.timeEpoch`), a cold start included, which the function's own timeout
    does not count. An arrival time no request can have (a sample event's) leaves the function's."""
    arrived = (event.get("requestContext") or {}).get("timeEpoch")

    def left() -> int:
        own = context.get_remaining_time_in_millis()
        if not isinstance(arrived, int):
            return own
        elapsed = int(time.time() * 1000) - arrived
        if not 0 <= elapsed <= HTTP_API_TIMEOUT_MS:
            return own
        return min(own, HTTP_API_TIMEOUT_MS - PAGE_MARGIN_MS - elapsed)

    return left


def query(event: dict) -> dict[str, str]:
    return dict(event.get("queryStringParameters") or {})


def cookies(event: dict) -> dict[str, str]:
    """Payload v2 hands cookies over as a list of `name=value`; the first of a repeated name wins."""
    found: dict[str, str] = {}
    for cookie in event.get("cookies") or []:
        name, _, value = cookie.strip().partition("=")
        found.setdefault(name, value)
    return found


def browser_nonce(event: dict, site: str) -> str:
    """The login-binding nonce this browser presented, or '' if none (or not well formed)."""
    value = cookies(event).get(browser_cookie_name(secure=site.startswith("https://")), "")
    return value if well_formed(value) else ""


def browser_cookie(event: dict, site: str, *, max_age: int) -> tuple[str, str]:
    """The nonce to bind a new login to (the browser's own if it has one, so two tabs both work) and the
    Set-Cookie that keeps it: HttpOnly, SameSite=Lax (sent on Webex's redirect back), Secure over https."""
    secure = site.startswith("https://")
    nonce = browser_nonce(event, site) or new_browser_nonce()
    attributes = f"Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax" + ("; Secure" if secure else "")
    return nonce, f"{browser_cookie_name(secure=secure)}={nonce}; {attributes}"


def redirect(location: str, *, status: int = 302, cookies: list[str] | None = None) -> dict:
    response = {"statusCode": status, "headers": {**SECURITY_HEADERS, "Location": location}, "body": ""}
    if cookies:
        response["cookies"] = cookies
    return response


def html(status: int, body: str) -> dict:
    return {
        "statusCode": status,
        "headers": {
            **SECURITY_HEADERS,
            "Content-Type": "text/html; charset=utf-8",
            "Content-Security-Policy": pages.CONTENT_SECURITY_POLICY,
        },
        "body": body,
    }


def json_response(status: int, body: dict) -> dict:
    return {
        "statusCode": status,
        "headers": {**SECURITY_HEADERS, "Content-Type": "application/json"},
        "body": json.dumps(body),
    }


def error_page(exc: Exception) -> dict:
    """Every failure a person can meet, as a clear page with the right status."""
    match exc:
        case StateRejected(reason=StateProblem.EXPIRED):
            return html(400, pages.problem("This sign-in link has expired", "Sign-in links last a few minutes."))
        case StateRejected(reason=StateProblem.BROWSER):
            return html(
                400,
                pages.problem(
                    "This sign-in was started in another browser",
                    "For your safety a sign-in must finish in the browser that started it. Nothing was stored.",
                ),
            )
        case StateRejected():
            return html(
                400,
                pages.problem("This sign-in link is not valid", "It was already used or was never issued here."),
            )
        case InvitationRejected(reason=reason):
            title, message = INVITATION_PROBLEMS[reason]
            return html(400, pages.problem(title, f"{message} Nothing was stored.", retry=False))
        case AccessDenied(denial=denial):
            status = {Denial.UNUSABLE: 400, Denial.TAKEN: 409}.get(denial, 403)
            return html(status, pages.problem("Not allowed", f"{exc.reason} Nothing was stored.", retry=False))
        case ConsentDeclined(error=error):
            return html(403 if error == "access_denied" else 400, pages.declined(error))
        case BadCallback():
            return html(400, pages.problem("Incomplete sign-in request", str(exc)))
        case LoginBusy():
            response = html(
                503,
                pages.problem(
                    "The broker is busy with this connection",
                    "A refresh of this connection is running right now. Nothing was stored and your invitation "
                    "was not used. Please start again in a minute.",
                ),
            )
            response["headers"]["Retry-After"] = "60"
            return response
        case NotConfigured():
            logger.error("Broker not configured yet", extra={"problem": str(exc)})
            return html(
                503,
                pages.problem(
                    "This broker is not configured yet",
                    "Its administrator has not given it the Webex integration's credentials yet. Nothing was "
                    "stored. Please try again later.",
                    retry=False,
                ),
            )
        case ConfigurationError():
            logger.error("Broker misconfigured", extra={"problem": str(exc)})
            return html(
                500,
                pages.problem(
                    "The broker is not set up correctly",
                    "Nothing was stored. Its administrator can find the details in the broker's logs.",
                    retry=False,
                ),
            )
        case WebexError(kind=FailureKind.CONFIGURATION):
            return html(
                502,
                pages.problem(
                    "Webex rejected the broker's integration",
                    "The client ID or secret configured on the broker was refused. Ask its administrator.",
                    tracking_id=exc.tracking_id,
                    retry=False,
                ),
            )
        case WebexError(kind=FailureKind.PERMANENT | FailureKind.REFUSED):
            return html(
                400,
                pages.problem(
                    "Webex refused the sign-in",
                    f"Webex did not accept the authorization ({exc.code}). Nothing was stored.",
                    tracking_id=exc.tracking_id,
                ),
            )
        case WebexError():
            response = html(
                503 if exc.status == 429 else 502,
                pages.problem(
                    "Webex is not answering right now",
                    "Nothing was stored. Please start again in a minute.",
                    tracking_id=exc.tracking_id,
                ),
            )
            if exc.retry_after:
                response["headers"]["Retry-After"] = str(int(exc.retry_after))
            return response
    logger.exception("Unexpected failure")
    return html(500, pages.problem("Something went wrong", "Nothing was stored. Please start again."))


def respond(action: Callable[[], dict]) -> dict:
    """Run a handler's action; known failures become pages, unknown ones a generic 500 (logged)."""
    try:
        return action()
    except Exception as exc:
        return error_page(exc)
