"""What `webex-broker` asks the broker's admin function for: every operator task that reads or
writes what the broker key seals (the client secret, refresh material), which the operator's own AWS
credentials cannot decrypt. Each action takes the invocation's JSON and answers JSON:
{"ok": true, ...} or {"ok": false, "error": KIND, "message": ...} with KIND "usage", "not_found", "conflict" or
"failed". No secret or token is ever in an answer or a log line.
"""

from collections.abc import Callable

from webex_broker.adapters.client_credentials import (
    ClientCredentials,
    client_id_tag,
    client_secret_key,
    load_client_credentials,
    store_client_credentials,
)
from webex_broker.adapters.invitations import CONNECTION_NAME
from webex_broker.adapters.secret_store import get_secret_document, same_key
from webex_broker.core.clock import epoch, utc_now
from webex_broker.core.connection import ConnectionStatus
from webex_broker.core.errors import (
    AccessDenied,
    AwsAccessDenied,
    AwsUnavailable,
    ConfigurationError,
    FailureKind,
    LoginBusy,
    NotConfigured,
    Refused,
    ServiceAppRefused,
    ViaUnavailable,
    WebexError,
)
from webex_broker.core.grants import ServiceApp
from webex_broker.core.observability import logger, metrics
from webex_broker.flows import service_apps, token_sharing
from webex_broker.flows.broker import Broker

MAX_CONVERGE_BATCH = 200
SET_CREDENTIALS_FIX = "webex-broker set-credentials --client-id <the integration's client ID>"


def handle(broker: Broker, event: dict, *, remaining_ms: Callable[[], int]) -> dict:
    metrics.add_metric(name="AdminActions", unit="Count", value=1)  # CloudTrail says who invoked it
    action = event.get("action") if isinstance(event, dict) else None
    run = ACTIONS.get(action) if isinstance(action, str) else None
    if run is None:
        return _refusal(Refused("usage", f"No such action {action!r}; the actions are {', '.join(sorted(ACTIONS))}."))
    logger.info("Admin action", extra={"action": action})
    try:
        return {"ok": True, **run(broker, event, remaining_ms)}
    except Refused as exc:
        return _refusal(exc)
    except AwsAccessDenied as exc:
        message = f"{exc}: the admin function's role or the broker key's policy lacks it (webex-broker doctor)."
        return _refusal(Refused("failed", message))


def _refusal(exc: Refused) -> dict:
    logger.warning("Admin action refused", extra={"error": exc.kind})
    return {"ok": False, "error": exc.kind, "message": str(exc)}


def _text(event: dict, key: str, *, required: bool = True) -> str:
    value = event.get(key, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise Refused("usage", f"{key} must be a non-empty string.")
    try:
        value.encode()
    except UnicodeEncodeError:  # a lone surrogate: no secret store or HTTP request can carry it
        raise Refused("usage", f"{key} is not valid text (a lone surrogate).") from None
    return value.strip()


def set_credentials(broker: Broker, event: dict, remaining_ms: Callable[[], int]) -> dict:
    """Checked with Webex before anything is stored; stored sealed under the broker key. Another client
    ID than the stored one is refused while people's grants were issued to it, unless `force`."""
    credentials = ClientCredentials(_text(event, "client_id"), _text(event, "client_secret"))
    force = event.get("force", False)
    if not isinstance(force, bool):
        raise Refused("usage", "force must be true or false.")
    others = _grants_of_other_clients(broker, credentials.client_id)
    if others and not force:
        raise Refused("conflict", _client_change_refusal(others, credentials.client_id))
    try:
        accepted = broker.webex_client(credentials).credentials_accepted()
    except WebexError as exc:
        raise Refused("failed", f"Could not check them with Webex ({exc.code}); nothing was stored.") from None
    if not accepted:
        raise Refused("failed", "Webex refused this client ID and secret (invalid_client); nothing was stored.")
    arn = broker.settings.client_secret_arn
    store_client_credentials(arn, credentials, key=broker.settings.sharing.broker_key_id)
    message = f"Stored the credentials of client {credentials.client_id[:8]}… in {arn}."
    if others:
        message += (
            f" The {len(others)} connection(s) authorized with another client keep their status but are not "
            "refreshed (each run alarms `client_changed`) until their people log in again, or their client is "
            "stored again."
        )
    return {"message": message}


def _grants_of_other_clients(broker: Broker, client_id: str) -> dict[str, str]:
    """Each person's connection whose grant another client issued (as its row records, else the stored
    client's): Webex refreshes a grant only for the client it was issued to."""
    try:
        stored = load_client_credentials(broker.settings.client_secret_arn, fresh=True).client_id
    except ConfigurationError:  # empty or unreadable: no grant was issued through it
        stored = ""
    issued = {
        c.name: c.client_id or stored
        for c in broker.connections.all()
        if not c.service_app and c.status != ConnectionStatus.PENDING
    }
    return {name: issuer for name, issuer in issued.items() if issuer and issuer != client_id}


def _client_change_refusal(others: dict[str, str], client_id: str) -> str:
    names = sorted(others)
    named = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    issuers = ", ".join(f"{issuer[:8]}…" for issuer in sorted(set(others.values())))
    return (
        f"{len(names)} connection(s) ({named}) were authorized with client {issuers}. Webex refreshes a grant only "
        f"for the client it was issued to, so with client {client_id[:8]}… none of them could be refreshed until "
        "each person logs in again. Nothing was stored. To rotate the secret, give the same client ID; to replace "
        "the integration anyway, add --force: those connections then keep their status, are not refreshed and "
        "raise an alarm each run until their people log in again."
    )


def check_credentials(broker: Broker, event: dict, remaining_ms: Callable[[], int]) -> dict:
    """doctor's check: stored, accepted by Webex, and sealed under the broker key."""
    arn = broker.settings.client_secret_arn
    try:
        credentials = load_client_credentials(arn, fresh=True)
    except NotConfigured:
        return _check("fail", "not set yet: the stack created the client secret empty", SET_CREDENTIALS_FIX)
    except ConfigurationError as exc:
        return _check("fail", str(exc), SET_CREDENTIALS_FIX)
    try:
        accepted = broker.webex_client(credentials).credentials_accepted()
    except WebexError as exc:
        return _check("fail", f"could not ask Webex ({exc.code or exc.status})", "check WebexApiBaseUrl and Webex")
    if not accepted:
        return _check("fail", "Webex refuses the client ID or secret (invalid_client)", SET_CREDENTIALS_FIX)
    accepted_detail = f"Webex accepts client ID {credentials.client_id[:8]}…"
    if client_id_tag(arn) != credentials.client_id:
        return _check(
            "fail",
            f"{accepted_detail}, but the secret's client ID tag differs: logins would ask consent for another client",
            f"{SET_CREDENTIALS_FIX} (tags it again)",
        )
    wanted = broker.settings.sharing.broker_key_id
    if wanted and not same_key(client_secret_key(arn), wanted):
        return _check(
            "warn",
            f"{accepted_detail}, but the secret is not under the broker key: an account administrator can read it",
            f"{SET_CREDENTIALS_FIX} (stores it again, under the broker key)",
        )
    return _check("ok", f"{accepted_detail}; sealed under the broker key" if wanted else accepted_detail)


def check_sealed(broker: Broker, event: dict, remaining_ms: Callable[[], int]) -> dict:
    """doctor's proof that the functions can still decrypt what the broker key (or an older key) seals:
    each named refresh secret is read, and only whether AWS refused it is answered. A retained key that
    no longer trusts this stack's roles is found here before a refresh meets it."""
    secrets = event.get("secrets")
    prefix = broker.names.refresh_secret("")
    if not isinstance(secrets, list) or not all(isinstance(s, str) and s.startswith(prefix) for s in secrets):
        raise Refused("usage", f"secrets must be a list of refresh secrets' names (under {prefix}).")
    refused = {}
    for name in secrets:
        try:
            get_secret_document(name)
        except AwsAccessDenied as exc:
            refused[name] = exc.action
        except AwsUnavailable as exc:
            refused[name] = exc.code
        except ValueError:  # not JSON: no refusal of AWS's, but no readable secret either
            refused[name] = "ValueError"
    return {"refused": refused}


def _check(result: str, detail: str, fix: str = "") -> dict:
    return {"result": result, "detail": detail, "fix": fix}


def add_service_app(broker: Broker, event: dict, remaining_ms: Callable[[], int]) -> dict:
    """Nothing is stored unless Webex hands out a working pair (service_apps.add)."""
    name, org_id, via = _text(event, "connection"), _text(event, "org_id"), _text(event, "via", required=False)
    refresh_token = _text(event, "refresh_token", required=False)
    if not (via or refresh_token):
        raise Refused("usage", "Give a connection to mint through (via) or a portal-generated refresh token.")
    app = ServiceApp(_text(event, "app_id"), _text(event, "client_id"), _text(event, "client_secret"), via=via)
    if via and not CONNECTION_NAME.fullmatch(via):
        raise Refused("usage", "via must be a connection's name (1-128 of A-Z a-z 0-9 and _+=.@-).")
    if via and broker.connections.get(via) is None:
        raise Refused("not_found", f"No connection named {via!r} to mint through.")
    new_client = event.get("new_client", False)
    if not isinstance(new_client, bool):
        raise Refused("usage", "new_client must be true or false.")
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
    return {"access_expires_at": epoch(record.grant.access_expires_at)}


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
    if exc.status == 403:
        return (
            f"Webex answered 403: a Full Admin of org {org_id} must authorize this Service App in Control Hub "
            f"first (or --via's grant lacks spark:applications_token){tracking}. Nothing was stored."
        )
    if exc.status == 401 and via:
        return (
            f"Webex refused the access token of '{via}' (401); `webex-broker refresh {via}` and try "
            f"again{tracking}. Nothing was stored."
        )
    return f"Webex could not mint the tokens ({exc.code}){tracking}; nothing was stored. Try again later."


def converge(broker: Broker, event: dict, remaining_ms: Callable[[], int]) -> dict:
    """Connections' secrets to what the stack says now (token_sharing.converge_all): the `connections`
    named (the CLI sends them a batch at a time, so no invocation runs long), or every one."""
    names = event.get("connections")
    if "connections" in event and not (
        isinstance(names, list)
        and len(names) <= MAX_CONVERGE_BATCH
        and all(isinstance(n, str) and CONNECTION_NAME.fullmatch(n) for n in names)
    ):
        raise Refused("usage", f"connections must be a list of at most {MAX_CONVERGE_BATCH} connection names.")
    try:
        return {"results": token_sharing.converge_all(broker, names)}
    except AwsUnavailable as exc:
        raise Refused("failed", f"Could not list the connections ({exc.code}).") from None


ACTIONS = {
    "set_credentials": set_credentials,
    "check_credentials": check_credentials,
    "check_sealed": check_sealed,
    "add_service_app": add_service_app,
    "converge": converge,
}
