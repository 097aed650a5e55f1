"""Service Apps: org-wide machine accounts whose tokens the broker keeps fresh like a person's.

A Service App's first token pair for an org is minted through a connection whose integration holds
spark:applications_token (its `via`), or seeded from a refresh token generated in the developer
portal. From then on it is an ordinary connection: the same secrets, lease, write order, schedule
and failure classes, except that it refreshes with the app's own client credentials (Webex binds a
refresh token to the client it was issued to). When its refresh token is proven dead, the refresher
mints a new pair through `via` before it gives up on it (see `refresh.Refresher`).
"""

import re
from collections.abc import Callable
from datetime import datetime

from webex_broker.adapters import webex
from webex_broker.adapters.client_credentials import ClientCredentials
from webex_broker.adapters.invitations import CONNECTION_NAME
from webex_broker.adapters.secret_store import get_secret_document
from webex_broker.core.clock import epoch
from webex_broker.core.errors import ViaUnavailable
from webex_broker.core.grants import APPLICATIONS_TOKEN_SCOPE, ServiceApp, TokenGrant, machine_account
from webex_broker.core.token_documents import TokenRecord
from webex_broker.flows.broker import Broker
from webex_broker.flows.new_grant import store_new_grant

# Webex ids are base64 (of ciscospark://…); client ids are hex with a leading letter.
WEBEX_ID = re.compile(r"[A-Za-z0-9+/=_-]{1,512}")


def client_for(broker: Broker, app: ServiceApp) -> webex.WebexClient:
    """A Webex client that authenticates as the Service App, for its refreshes and its mints."""
    return broker.webex_client(ClientCredentials(app.client_id, app.client_secret))


def via_problem(broker: Broker, via_name: str, *, now: int) -> str:
    """Why connection `via_name` cannot mint Service App tokens now; '' when it can. Its row says so
    without asking Webex: active, granted spark:applications_token, and an access token still live."""
    via = broker.connections.get(via_name) if via_name else None
    if via is None:
        return f"no connection named {via_name!r} to mint through" if via_name else "no --via connection"
    if not via.active:
        return f"connection {via.name!r} is {via.status}, not active"
    if via.scopes and APPLICATIONS_TOKEN_SCOPE not in via.scopes:
        return f"connection {via.name!r} was not granted {APPLICATIONS_TOKEN_SCOPE}"
    if (via.access_expires_at or 0) <= now:
        return f"connection {via.name!r} has no live access token"
    return ""


def mint(broker: Broker, app: ServiceApp, org_id: str, *, now: datetime) -> TokenGrant:
    """A new token pair for `org_id` through the app's `via` connection, whose integration token must
    be live and hold spark:applications_token (ViaUnavailable otherwise, before Webex is asked).
    WebexError when Webex refuses: 403 until a Full Admin of the org has authorized the app."""
    if problem := via_problem(broker, app.via, now=epoch(now)):
        raise ViaUnavailable(problem)
    bearer = get_secret_document(broker.names.token_secret(app.via))["access_token"]
    return client_for(broker, app).mint_service_app_tokens(app_id=app.app_id, org_id=org_id, bearer=bearer, now=now)


def add(
    broker: Broker,
    name: str,
    app: ServiceApp,
    org_id: str,
    *,
    refresh_token: str = "",
    now: datetime,
    remaining_ms: Callable[[], int],
) -> TokenRecord:
    """Mint (or, with `refresh_token`, redeem a portal-generated refresh token for) a pair and store
    it as connection `name`, in the order every new grant is stored. Adding the same app and org
    again replaces its pair and credentials (a rotated client secret); a name that belongs to a
    person or another app is refused with AccessDenied. Raises ValueError on malformed input, before
    anything is asked or written."""
    _check_input(name, app, org_id)
    if refresh_token:
        grant = client_for(broker, app).refresh(refresh_token=refresh_token, now=now)
    else:
        grant = mint(broker, app, org_id, now=now)
    record = TokenRecord(connection=name, person=machine_account(org_id), grant=grant, updated_at=now, service_app=app)
    store_new_grant(broker, record, login_base_url="", remaining_ms=remaining_ms)
    return record


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
