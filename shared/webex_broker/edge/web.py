"""API Gateway HTTP API (payload v2) in and out: cookies, redirects, JSON, and the one place that turns
the broker's errors into pages."""

import json
import time
from collections.abc import Callable
from typing import Any

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
from webex_broker.core.settings import load_settings
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


ASK_FOR_A_NEW_ONE = "Ask whoever sent it for a new one."
# status, title, what to do: a link that can never work again is Gone; one this broker never made, Not Found.
INVITATION_PROBLEMS = {
    InvitationProblem.UNKNOWN: (
        400,
        "This invitation link is not valid",
        "This broker does not know it. Check that you copied the whole link; if you did, ask whoever sent it "
        "for a new one.",
    ),
    InvitationProblem.FOREIGN: (
        404,
        "This link belongs to another broker",
        "It was made by a different Webex Token Broker, or by an earlier installation of this one (a local "
        f"test broker that has since been restarted, say), and cannot be used here. {ASK_FOR_A_NEW_ONE}",
    ),
    InvitationProblem.EXPIRED: (410, "This invitation has expired", ASK_FOR_A_NEW_ONE),
    InvitationProblem.USED: (
        410,
        "This invitation was already used",
        f"It allowed a set number of sign-ins, and they have all been made. {ASK_FOR_A_NEW_ONE}",
    ),
    InvitationProblem.REVOKED: (
        410,
        "This invitation was withdrawn",
        "Whoever sent it has withdrawn it. Ask them for a new one.",
    ),
}
TAKEN = "Ask whoever sent you the link for a link to a connection of your own."


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


def contact() -> str:
    """Whom the pages name (SupportContact); nobody when the configuration itself cannot be read."""
    try:
        return load_settings().support_contact
    except (ConfigurationError, ValueError):
        return ""


def error_page(exc: Exception, *, contact: str = "") -> dict:
    """Every failure a person can meet, as a clear page with the right status."""

    def page(status: int, title: str, message: str, **details: Any) -> dict:
        return html(status, pages.problem(title, message, contact=contact, **details))

    match exc:
        case StateRejected(reason=StateProblem.EXPIRED):
            return page(400, "This sign-in link has expired", "Sign-in links last a few minutes.")
        case StateRejected(reason=StateProblem.BROWSER):
            return page(
                400,
                "This sign-in was started in another browser",
                "For your safety a sign-in must finish in the browser that started it. Nothing was stored.",
            )
        case StateRejected():
            return page(400, "This sign-in link is not valid", "It was already used or was never issued here.")
        case InvitationRejected(reason=reason):
            status, title, message = INVITATION_PROBLEMS[reason]
            return page(status, title, f"{message} Nothing was stored.", retry=False)
        case AccessDenied(denial=Denial.TAKEN):
            return page(409, "Not allowed", f"{exc.reason} Nothing was stored. {TAKEN}", retry=False)
        case AccessDenied(denial=denial):
            status = 400 if denial == Denial.UNUSABLE else 403
            return page(status, "Not allowed", f"{exc.reason} Nothing was stored.", retry=False)
        case ConsentDeclined(error=error):
            return html(403 if error == "access_denied" else 400, pages.declined(error, contact=contact))
        case BadCallback():
            return page(400, "Incomplete sign-in request", str(exc))
        case LoginBusy():
            response = page(
                503,
                "The broker is busy with this connection",
                "A refresh of this connection is running right now. Nothing was stored and your invitation "
                "was not used. Please start again in a minute.",
            )
            response["headers"]["Retry-After"] = "60"
            return response
        case NotConfigured():
            logger.error("Broker not configured yet", extra={"problem": str(exc)})
            return page(
                503,
                "This broker is not configured yet",
                "Its administrator has not given it the Webex integration's credentials yet. Nothing was "
                "stored. Please try again later.",
                retry=False,
            )
        case ConfigurationError():
            logger.error("Broker misconfigured", extra={"problem": str(exc)})
            return page(
                500,
                "The broker is not set up correctly",
                "Nothing was stored. Its administrator can find the details in the broker's logs.",
                retry=False,
            )
        case WebexError(kind=FailureKind.CONFIGURATION):
            return page(
                502,
                "Webex rejected the broker's integration",
                "The client ID or secret configured on the broker was refused. Ask its administrator.",
                tracking_id=exc.tracking_id,
                retry=False,
            )
        case WebexError(kind=FailureKind.PERMANENT | FailureKind.REFUSED):
            return page(
                400,
                "Webex refused the sign-in",
                f"Webex did not accept the authorization ({exc.code}). Nothing was stored.",
                tracking_id=exc.tracking_id,
            )
        case WebexError():
            response = page(
                503 if exc.status == 429 else 502,
                "Webex is not answering right now",
                "Nothing was stored. Please start again in a minute.",
                tracking_id=exc.tracking_id,
            )
            if exc.retry_after:
                response["headers"]["Retry-After"] = str(int(exc.retry_after))
            return response
    logger.exception("Unexpected failure")
    return page(500, "Something went wrong", "Nothing was stored. Please start again.")


def respond(action: Callable[[], dict]) -> dict:
    """Run a handler's action; known failures become pages, unknown ones a generic 500 (logged)."""
    try:
        return action()
    except Exception as exc:
        return error_page(exc, contact=contact())
