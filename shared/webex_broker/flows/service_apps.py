"""Service Apps: org-wide machine accounts whose tokens the broker keeps fresh like a person's.

A Service App's first token pair for an org is minted through a connection whose integration holds
spark:applications_token (its `via`), or seeded from a refresh token generated in the developer
portal. From then on it is an ordinary connection: the same secrets, lease, write order, schedule
and failure classes, except that it refreshes with the app's own client credentials (Webex binds a
refresh token to the client it was issued to). When its refresh token is proven dead, the refresher
mints a new pair through `via` before it gives up on it (see `refresh.Refresher`).
"""

import base64
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from webex_broker.adapters import webex
from webex_broker.adapters.client_credentials import ClientCredentials
from webex_broker.adapters.invitations import CONNECTION_NAME
from webex_broker.adapters.secret_store import get_refresh_material, get_secret_document
from webex_broker.core.clock import epoch
from webex_broker.core.connection import ConnectionStatus
from webex_broker.core.errors import FailureKind, MissingRefreshSecret, ServiceAppRefused, ViaUnavailable, WebexError
from webex_broker.core.grants import APPLICATIONS_TOKEN_SCOPE, Person, ServiceApp, TokenGrant, machine_account
from webex_broker.core.token_documents import RefreshMaterial, TokenRecord, service_app_owner_id
from webex_broker.flows import access
from webex_broker.flows.broker import Broker
from webex_broker.flows.new_grant import announce, store_new_grant

# Webex ids are base64 (of ciscospark://…); client ids are hex with a leading letter.
WEBEX_ID = re.compile(r"[A-Za-z0-9+/=_-]{1,512}")


def client_for(broker: Broker, app: ServiceApp) -> webex.WebexClient:
    """A Webex client that authenticates as the Service App, for its refreshes and its mints."""
    return broker.webex_client(ClientCredentials(app.client_id, app.client_secret))


def via_problem(broker: Broker, via_name: str, *, now: int, owner: str = "") -> str:
    """Why connection `via_name` cannot mint Service App tokens now; '' when it can. Its row says so
    without asking Webex: active, still the `owner`'s (when known), granted spark:applications_token,
    and an access token still live."""
    return _via_state(broker, via_name, now=now, owner=owner)[0]


def _via_state(broker: Broker, via_name: str, *, now: int, owner: str = "") -> tuple[str, bool]:
    """(problem, only its access token lapsed)."""
    via = broker.connections.get(via_name) if via_name else None
    if via is None:
        return (f"no connection named {via_name!r} to mint through" if via_name else "no --via connection"), False
    if owner and via.person_id != owner:
        return f"connection {via.name!r} now belongs to another person than the app was added through", False
    if not via.active:
        return f"connection {via.name!r} is {via.status}, not active", False
    if via.scopes and APPLICATIONS_TOKEN_SCOPE not in via.scopes:
        return f"connection {via.name!r} was not granted {APPLICATIONS_TOKEN_SCOPE}", False
    if (via.access_expires_at or 0) <= now:
        return f"connection {via.name!r} has no live access token (its own refresh mends that)", True
    return "", False


def mint(broker: Broker, app: ServiceApp | None, org_id: str, *, now: datetime) -> TokenGrant:
    """A new token pair for `org_id` through the app's `via` connection, whose integration token must
    be live and hold spark:applications_token (ViaUnavailable otherwise, before Webex is asked).
    WebexError when Webex refuses: 403 until a Full Admin of the org has authorized the app."""
    if app is None:  # a Service App's row whose refresh secret lost its credentials
        raise ViaUnavailable("no Service App credentials on file")
    problem, lapsed = _via_state(broker, app.via, now=epoch(now), owner=app.via_owner)
    if problem:
        raise ViaUnavailable(problem, lapsed=lapsed)
    bearer = get_secret_document(broker.names.token_secret(app.via))["access_token"]
    return client_for(broker, app).mint_service_app_tokens(app_id=app.app_id, org_id=org_id, bearer=bearer, now=now)


def add(
    broker: Broker,
    name: str,
    app: ServiceApp,
    org_id: str,
    *,
    refresh_token: str = "",
    new_client: bool = False,
    now: datetime,
    remaining_ms: Callable[[], int],
) -> TokenRecord:
    """Mint (or, with `refresh_token`, redeem a portal-generated refresh token for) a pair and store
    it as connection `name`, in the order every new grant is stored. Adding the same app and org
    again replaces its pair and secret (a rotated client secret) but keeps its client ID unless
    `new_client`, and its `via` unless another is given; a name that belongs to a person or another app
    is refused with AccessDenied. A redeemed token is stored only once Webex says it acts for that org
    (and, on a re-add, as the same machine account): ServiceAppRefused otherwise. Raises ValueError on
    malformed input, before anything is asked or written."""
    _check_input(name, app, org_id)
    known = _existing(broker, name, service_app_owner_id(app.app_id, org_id))
    app = _as_added(broker, app, known, new_client=new_client)
    client = client_for(broker, app)
    if refresh_token:
        grant = client.refresh(refresh_token=refresh_token, now=now)
        account = _proven_account(client, grant, org_id, known=known.person if known else None)
    else:
        grant = mint(broker, app, org_id, now=now)
        account = _told_account(client, grant, org_id) or (known.person if known else machine_account(org_id))
    record = TokenRecord(connection=name, person=account, grant=grant, updated_at=now, service_app=app)
    before = store_new_grant(broker, record, login_base_url="", remaining_ms=remaining_ms)
    announce(broker, before, record)
    return record


def _existing(broker: Broker, name: str, owner_id: str) -> RefreshMaterial | None:
    """What is kept for this app under `name`; AccessDenied (before Webex is asked) when the name is
    another's. None for a new name, or a row whose refresh secret is gone."""
    row = broker.connections.get(name)
    if row is None or row.status == ConnectionStatus.PENDING:
        return None
    access.check_owner(row, owner_id)
    try:
        return get_refresh_material(broker.names.refresh_secret(name))
    except MissingRefreshSecret:
        return None


def _as_added(broker: Broker, app: ServiceApp, known: RefreshMaterial | None, *, new_client: bool) -> ServiceApp:
    """The app as it will be stored: its client kept unless the command says otherwise, its `via`
    kept unless another is given, and whose connection that `via` is, so a heal asks nobody else."""
    kept = known.service_app if known else None
    if kept and kept.client_id != app.client_id and not new_client:
        raise ServiceAppRefused(
            f"this app was added with client ID {kept.client_id[:8]}…, not {app.client_id[:8]}…; to rotate its "
            "secret give the same client ID, or add --new-client to replace the client",
            conflict=True,
        )
    if not app.via:
        return replace(app, via=kept.via, via_owner=kept.via_owner) if kept else app
    via = broker.connections.get(app.via)
    return replace(app, via_owner=via.person_id if via else "")


def _proven_account(client: webex.WebexClient, grant: TokenGrant, org_id: str, *, known: Person | None) -> Person:
    """Whom a redeemed token acts as, asked of Webex: the app's machine account in `org_id` (the same
    one as before on a re-add), or ServiceAppRefused."""
    try:
        account = client.people_me(grant.access_token)
    except WebexError as exc:
        if exc.kind == FailureKind.TRANSIENT:
            raise
        raise ServiceAppRefused(
            f"Webex would not say whom this token acts for ({exc.status or exc.code}); the app needs "
            "spark:people_read to be seeded from a refresh token, or mint through --via instead"
        ) from None
    if account.type == "person" or not same_org(account.org_id, org_id):
        raise ServiceAppRefused(f"this refresh token acts for another org or account, not a Service App in {org_id}")
    if known and known.id and known.id != account.id:
        raise ServiceAppRefused("this refresh token belongs to another Service App than the one kept under this name")
    return account


def _told_account(client: webex.WebexClient, grant: TokenGrant, org_id: str) -> Person | None:
    """The machine account of a minted pair (the mint itself proves app and org), when Webex says:
    recorded so that a later seeded re-add can be compared with it."""
    try:
        account = client.people_me(grant.access_token)
    except WebexError:  # the app need not hold spark:people_read
        return None
    return account if same_org(account.org_id, org_id) else None


def same_org(one: str, other: str) -> bool:
    """Webex writes an org id as base64 of ciscospark://us/ORGANIZATION/<uuid>, or the bare uuid."""
    return one == other or _org_uuid(one) == _org_uuid(other) != ""


def _org_uuid(org_id: str) -> str:
    try:
        decoded = base64.b64decode(org_id + "=" * (-len(org_id) % 4), validate=False).decode()
    except (ValueError, UnicodeDecodeError):
        decoded = org_id
    candidate = decoded.rsplit("/", 1)[-1].lower()
    return candidate if re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", candidate) else ""


def _check_input(name: str, app: ServiceApp, org_id: str) -> None:
    if not CONNECTION_NAME.fullmatch(name):
        raise ValueError("A connection name is 1-128 of A-Z a-z 0-9 and _+=.@- (the secret's name is built from it).")
    for label, value in (("app id", app.app_id), ("client id", app.client_id), ("org id", org_id)):
        if not WEBEX_ID.fullmatch(value):
            raise ValueError(f"The {label} is not a Webex id (letters, digits and +/=_- only).")
    if not app.client_secret.strip():
        raise ValueError("The Service App's client secret is empty.")
    if app.via == name:
        raise ValueError("A Service App cannot mint its tokens through its own connection.")
