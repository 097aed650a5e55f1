"""What `webex-broker` asks the broker's admin function for: every operator task that reads or
writes what the broker key seals (the client secret, refresh material), which the operator's own AWS
credentials cannot decrypt. Each action takes a typed request of admin_requests.py, read from the
invocation's JSON, and answers {"ok": true, ...its typed answer} or {"ok": false, "error": KIND,
"message": ...} with KIND "usage", "not_found", "conflict" or "failed". No secret or token is ever in
an answer or a log line.
"""

from collections.abc import Callable

from webex_broker.adapters.invitations import CONNECTION_NAME
from webex_broker.adapters.secret_store import get_secret_document
from webex_broker.core.clock import epoch, utc_now
from webex_broker.core.errors import (
    AccessDenied,
    AwsAccessDenied,
    AwsUnavailable,
    FailureKind,
    LoginBusy,
    Refused,
    ServiceAppRefused,
    ViaUnavailable,
    WebexError,
)
from webex_broker.core.grants import ServiceApp
from webex_broker.core.observability import logger, metrics
from webex_broker.flows import admin_requests, credentials, service_apps, token_sharing
from webex_broker.flows.admin_requests import (
    AddServiceApp,
    AdminAnswer,
    AdminRequest,
    CheckCredentials,
    CheckSealed,
    Converge,
    Converged,
    SealedChecked,
    ServiceAppAdded,
    SetCredentials,
)
from webex_broker.flows.broker import Broker

MAX_CONVERGE_BATCH = 200


def handle(broker: Broker, event: object, *, remaining_ms: Callable[[], int]) -> dict:
    metrics.add_metric(name="AdminActions", unit="Count", value=1)  # CloudTrail says who invoked it
    try:
        request = admin_requests.parse(event)
        logger.info("Admin action", extra={"action": request.action})
        return admin_requests.answer(_run(broker, request, remaining_ms))
    except Refused as exc:
        logger.warning("Admin action refused", extra={"error": exc.kind})
        return admin_requests.refusal(exc)
    except AwsAccessDenied as exc:
        message = f"{exc}: the admin function's role or the broker key's policy lacks it (webex-broker doctor)."
        logger.warning("Admin action refused", extra={"error": "failed"})
        return admin_requests.refusal(Refused("failed", message))


def _run(broker: Broker, request: AdminRequest, remaining_ms: Callable[[], int]) -> AdminAnswer:
    match request:
        case SetCredentials():
            return credentials.set_credentials(broker, request, remaining_ms)
        case CheckCredentials():
            return credentials.check_credentials(broker, request, remaining_ms)
        case CheckSealed():
            return check_sealed(broker, request)
        case AddServiceApp():
            return add_service_app(broker, request, remaining_ms)
        case Converge():
            return converge(broker, request)


def check_sealed(broker: Broker, request: CheckSealed) -> SealedChecked:
    """doctor's proof that the functions can still decrypt what the broker key (or an older key) seals:
    each named refresh secret is read, and only whether AWS refused it is answered. A retained key that
    no longer trusts this stack's roles is found here before a refresh meets it."""
    prefix = broker.names.refresh_secret("")
    if not all(s.startswith(prefix) for s in request.secrets):
        raise Refused("usage", f"secrets must be a list of refresh secrets' names (under {prefix}).")
    refused = {}
    for name in request.secrets:
        try:
            get_secret_document(name)
        except AwsAccessDenied as exc:
            refused[name] = exc.action
        except AwsUnavailable as exc:
            refused[name] = exc.code
        except ValueError:  # not JSON: no refusal of AWS's, but no readable secret either
            refused[name] = "ValueError"
    return SealedChecked(refused)


def add_service_app(broker: Broker, request: AddServiceApp, remaining_ms: Callable[[], int]) -> ServiceAppAdded:
    """Nothing is stored unless Webex hands out a working pair (service_apps.add)."""
    name, org_id, via, refresh_token = request.connection, request.org_id, request.via, request.refresh_token
    if not (via or refresh_token):
        raise Refused("usage", "Give a connection to mint through (via) or a portal-generated refresh token.")
    app = ServiceApp(request.app_id, request.client_id, request.client_secret, via=via)
    if via and not CONNECTION_NAME.fullmatch(via):
        raise Refused("usage", "via must be a connection's name (1-128 of A-Z a-z 0-9 and _+=.@-).")
    if via and broker.connections.get(via) is None:
        raise Refused("not_found", f"No connection named {via!r} to mint through.")
    new_client = request.new_client
    try:
        record = service_apps.add(
            broker,
            name,
            app,
            org_id,
            refresh_token=refresh_token,
            new_client=new_client,
            now=utc_now(),
            remaining_ms=remaining_ms,
        )
    except ValueError as exc:
        raise Refused("usage", str(exc)) from None
    except ServiceAppRefused as exc:
        raise Refused("conflict" if exc.conflict else "failed", f"{exc.reason}; nothing was stored.") from None
    except ViaUnavailable as exc:
        raise Refused("failed", f"Cannot mint through --via: {exc.reason}; nothing was stored.") from None
    except WebexError as exc:
        raise Refused("failed", _mint_refusal(exc, seeded=bool(refresh_token), org_id=org_id, via=via)) from None
    except (AccessDenied, LoginBusy) as exc:
        raise Refused("failed", f"{exc}; nothing was stored.") from None
    return ServiceAppAdded(epoch(record.grant.access_expires_at))


def _mint_refusal(exc: WebexError, *, seeded: bool, org_id: str, via: str) -> str:
    """What the operator can do about Webex's answer; every path stored nothing."""
    tracking = f" (Trackingid {exc.tracking_id})" if exc.tracking_id else ""
    if exc.kind == FailureKind.CONFIGURATION:
        return f"Webex refused the Service App's client ID or secret (invalid_client){tracking}; nothing was stored."
    if seeded and exc.kind == FailureKind.PERMANENT:
        return (
            "Webex says this refresh token is invalid, expired or revoked (or belongs to another app); generate a "
            f"new one in the developer portal{tracking}. Nothing was stored."
        )
    if exc.forbidden:
        return (
            f"Webex answered 403: a Full Admin of org {org_id} must authorize this Service App in Control Hub "
            f"first (or --via's grant lacks spark:applications_token){tracking}. Nothing was stored."
        )
    if exc.unauthorized and via:
        return (
            f"Webex refused the access token of '{via}' (401); `webex-broker refresh {via}` and try "
            f"again{tracking}. Nothing was stored."
        )
    return f"Webex could not mint the tokens ({exc.code}){tracking}; nothing was stored. Try again later."


def converge(broker: Broker, request: Converge) -> Converged:
    """Connections' secrets to what the stack says now (token_sharing.converge_all): the `connections`
    named (the CLI sends them a batch at a time, so no invocation runs long), or every one."""
    names = request.connections
    if names is not None and not (
        len(names) <= MAX_CONVERGE_BATCH and all(CONNECTION_NAME.fullmatch(n) for n in names)
    ):
        raise Refused("usage", f"connections must be a list of at most {MAX_CONVERGE_BATCH} connection names.")
    try:
        return Converged(token_sharing.converge_all(broker, list(names) if names is not None else None))
    except AwsUnavailable as exc:
        raise Refused("failed", f"Could not list the connections ({exc.code}).") from None
