"""Service Apps in the simulator must behave like Webex's, or the broker's Service App support proves nothing."""

import base64
import re
import time

import pytest

from devstack.webex_simulator import WebexSimulator, webex_id
from tests.support.clock import Clock
from tests.support.people import DAY, HOUR
from tests.support.webex import SIMULATED_NOW, TRACKING_ID

INTEGRATION = "C-integration-that-asks-for-service-app-tokens"
INTEGRATION_SECRET = "s3cr3t-0f-the-integration"
REDIRECT = "https://broker.example.com/callback"
APP_ID = webex_id("APPLICATION", "9f2c7e41-3a6b-4d8e-b5f0-1c2d3e4f5a6b")
APP_CLIENT = "C-service-app-client"
APP_SECRET = "s3cr3t-0f-the-service-app"
APP_SCOPES = ["spark:people_read", "spark-admin:people_read"]
ORG_UUID = "7b3e9d10-4c2a-4f6e-8d1b-a2c3e4f5b6d7"
ORG = webex_id("ORGANIZATION", ORG_UUID)
OTHER_ORG = webex_id("ORGANIZATION", "c4d5e6f7-0a1b-4c2d-9e3f-4a5b6c7d8e9f")
TOKEN_FIELDS = {"access_token", "expires_in", "refresh_token", "refresh_token_expires_in", "token_type"}


@pytest.fixture
def clock() -> Clock:
    return Clock(start=SIMULATED_NOW)


@pytest.fixture
def sim(clock: Clock) -> WebexSimulator:
    simulator = WebexSimulator(clock=clock)
    simulator.register_client(INTEGRATION, INTEGRATION_SECRET, [REDIRECT], scopes=["spark:applications_token"])
    simulator.register_service_app(APP_ID, APP_CLIENT, APP_SECRET, APP_SCOPES)
    simulator.authorize_service_app(APP_ID, ORG)
    return simulator


@pytest.fixture
def client(sim: WebexSimulator):
    return sim.app.test_client()


@pytest.fixture
def bearer(sim: WebexSimulator) -> str:
    """An integration's access token that holds spark:applications_token."""
    return sim.issue_grant(INTEGRATION, "alice@example.com", ["spark:applications_token"])["access_token"]


def mint(
    client,
    bearer: str | None,
    *,
    app_id: str = APP_ID,
    client_id: str = APP_CLIENT,
    secret: str = APP_SECRET,
    org_id: str = ORG,
):
    headers = {} if bearer is None else {"Authorization": f"Bearer {bearer}"}
    body = {"clientId": client_id, "clientSecret": secret, "targetOrgId": org_id}
    return client.post(f"/applications/{app_id}/token", json=body, headers=headers)


def minted(client, bearer: str, **overrides: str) -> dict:
    response = mint(client, bearer, **overrides)
    assert response.status_code == 200
    return response.json


def refresh(client, refresh_token: str, *, client_id: str = APP_CLIENT, secret: str = APP_SECRET):
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id}
    return client.post("/access_token", data=data | {"client_secret": secret})


def people_me(client, token: str):
    return client.get("/people/me", headers={"Authorization": f"Bearer {token}"})


def decoded(id_: str) -> str:
    return base64.b64decode(id_ + "=" * (-len(id_) % 4)).decode()


# Minting


def test_mint_answers_the_documented_body(sim, client, bearer):
    response = mint(client, bearer)

    assert response.status_code == 200
    body = response.json
    assert set(body) == TOKEN_FIELDS  # no scope, as in Webex's documented example
    assert (body["expires_in"], body["refresh_token_expires_in"], body["token_type"]) == (3600, 7_776_000, "Bearer")
    assert response.headers["Cache-Control"] == "no-store"
    assert TRACKING_ID.fullmatch(response.headers["Trackingid"])
    for name in ("access_token", "refresh_token"):
        assert re.fullmatch(rf"[A-Za-z0-9]+_PF84_{ORG_UUID}", body[name])
    assert sim.calls["applications_token"] == 1


def test_lifetimes_come_from_the_clock_and_the_constructor(clock):
    sim = WebexSimulator(service_app_access_token_ttl=1800, refresh_token_ttl=50 * DAY, clock=clock)
    sim.register_client(INTEGRATION, INTEGRATION_SECRET, [REDIRECT], scopes=["spark:applications_token"])
    sim.register_service_app(APP_ID, APP_CLIENT, APP_SECRET, APP_SCOPES)
    sim.authorize_service_app(APP_ID, ORG)
    client = sim.app.test_client()
    bearer = sim.issue_grant(INTEGRATION, "alice@example.com", ["spark:applications_token"])["access_token"]
    body = minted(client, bearer)

    assert (sim.service_app_access_token_ttl, body["expires_in"], body["refresh_token_expires_in"]) == (
        1800,
        1800,
        50 * DAY,
    )
    clock.advance(1799)
    assert people_me(client, body["access_token"]).status_code == 200
    clock.advance(1)
    assert people_me(client, body["access_token"]).status_code == 401


def test_every_mint_is_a_new_grant_and_earlier_ones_stay_valid(client, bearer):
    first, second = minted(client, bearer), minted(client, bearer)

    assert first["refresh_token"] != second["refresh_token"]
    assert first["access_token"] != second["access_token"]
    assert refresh(client, first["refresh_token"]).status_code == 200
    assert refresh(client, second["refresh_token"]).status_code == 200


def test_a_non_webex_org_id_still_mints(sim, client, bearer):
    """Hand-made org ids get a stable stand-in uuid in the token, as hand-made people's orgs do."""
    sim.authorize_service_app(APP_ID, "org-made-by-hand")

    first = minted(client, bearer, org_id="org-made-by-hand")
    second = minted(client, bearer, org_id="org-made-by-hand")

    suffix = re.fullmatch(r"[A-Za-z0-9]+_PF84_([0-9a-f-]{36})", first["access_token"])
    assert suffix is not None
    assert second["access_token"].endswith(suffix[1])
    assert people_me(client, first["access_token"]).json["orgId"] == "org-made-by-hand"


# Refreshing at /access_token


def test_refresh_with_the_apps_credentials_follows_webex_refresh_semantics(client, clock, bearer):
    first = minted(client, bearer)
    clock.advance(HOUR / 2)
    same = refresh(client, first["refresh_token"])
    clock.advance(HOUR)
    renewed = refresh(client, first["refresh_token"])

    assert same.status_code == renewed.status_code == 200
    assert same.json["access_token"] == first["access_token"]  # within 24 h: the same token and expiry
    assert same.json["expires_in"] == HOUR / 2
    assert renewed.json["access_token"] != first["access_token"]  # the old one expired: a new one
    assert renewed.json["expires_in"] == HOUR  # Service App lifetime, not the integration's 14 days
    assert renewed.json["refresh_token"] == first["refresh_token"]
    assert renewed.json["refresh_token_expires_in"] == 7_776_000  # slid from this refresh
    assert renewed.headers["Cache-Control"] == "no-store"


def test_a_refreshed_pair_outlives_the_refresh_lifetime(client, clock, bearer):
    refresh_token = minted(client, bearer)["refresh_token"]
    for _ in range(3):
        clock.advance(60 * DAY)
        assert refresh(client, refresh_token).status_code == 200


def test_an_unused_pair_dies(client, clock, bearer):
    refresh_token = minted(client, bearer)["refresh_token"]
    clock.advance(90 * DAY)

    response = refresh(client, refresh_token)

    assert (response.status_code, response.json["error"]) == (400, "invalid_grant")


def test_refresh_with_the_integrations_credentials_is_invalid_grant(client, bearer):
    refresh_token = minted(client, bearer)["refresh_token"]

    response = refresh(client, refresh_token, client_id=INTEGRATION, secret=INTEGRATION_SECRET)

    assert (response.status_code, response.json["error"]) == (400, "invalid_grant")


def test_rotation_and_omitted_fields_apply_to_service_apps_too(sim, client, clock, bearer):
    first = minted(client, bearer)
    sim.rotate_refresh_tokens = True
    clock.advance(DAY)
    rotated = refresh(client, first["refresh_token"]).json
    sim.refresh_response_omits = frozenset({"refresh_token", "refresh_token_expires_in"})
    clock.advance(DAY)
    trimmed = refresh(client, rotated["refresh_token"]).json

    assert rotated["refresh_token"] != first["refresh_token"]
    assert refresh(client, first["refresh_token"]).json["error"] == "invalid_grant"
    assert "refresh_token" not in trimmed
    assert trimmed["expires_in"] == HOUR


# Refusals


@pytest.mark.parametrize("header", [None, "Bearer unknown-token", "Basic dXNlcjpwYXNz", "Bearer"])
def test_a_missing_or_unknown_bearer_is_401_in_webex_shape(sim, client, header):
    headers = {} if header is None else {"Authorization": header}

    response = client.post(f"/applications/{APP_ID}/token", json={}, headers=headers)

    assert response.status_code == 401
    assert set(response.json) == {"message", "errors", "trackingId"}
    assert "valid access token" in response.json["message"]
    assert response.json["trackingId"] == response.headers["Trackingid"]
    assert sim.calls["applications_token"] == 1


def test_an_expired_or_revoked_bearer_is_401(sim, client, clock, bearer):
    clock.advance(1_209_600)
    expired = mint(client, bearer)
    fresh = sim.issue_grant(INTEGRATION, "bob@example.com", ["spark:applications_token"])
    sim.revoke_grant(refresh_token=fresh["refresh_token"])
    revoked = mint(client, fresh["access_token"])

    assert expired.status_code == revoked.status_code == 401


def test_a_bearer_without_the_scope_is_403(sim, client):
    sim.register_client("C-plain", "plain-secret", [REDIRECT], scopes=["spark:people_read", "spark:all"])
    plain = sim.issue_grant("C-plain", "alice@example.com", ["spark:people_read", "spark:all"])["access_token"]

    response = mint(client, plain)

    assert response.status_code == 403
    assert set(response.json) == {"message", "errors", "trackingId"}
    assert "lacks the spark:applications_token scope" in response.json["message"]


@pytest.mark.parametrize(
    "body",
    [
        None,
        ["not", "an", "object"],
        {"clientId": APP_CLIENT, "clientSecret": APP_SECRET},
        {"clientId": APP_CLIENT, "clientSecret": APP_SECRET, "targetOrgId": 42},
    ],
)
def test_a_bad_body_is_400(client, bearer, body):
    headers = {"Authorization": f"Bearer {bearer}"}
    if body is None:
        response = client.post(f"/applications/{APP_ID}/token", data={"clientId": APP_CLIENT}, headers=headers)
    else:
        response = client.post(f"/applications/{APP_ID}/token", json=body, headers=headers)

    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"


def test_an_unknown_app_is_404(client, bearer):
    response = mint(client, bearer, app_id=webex_id("APPLICATION", "00000000-0000-4000-8000-000000000000"))

    assert response.status_code == 404
    assert "Application not found" in response.json["error_description"]


@pytest.mark.parametrize(
    ("client_id", "secret"), [(APP_CLIENT, "wrong-secret"), (INTEGRATION, INTEGRATION_SECRET), ("", "")]
)
def test_credentials_that_are_not_the_apps_are_invalid_client(client, bearer, client_id, secret):
    response = mint(client, bearer, client_id=client_id, secret=secret)

    assert response.status_code == 401
    assert response.json["error"] == "invalid_client"


def test_an_org_that_has_not_authorized_the_app_is_403_and_mints_nothing(sim, client, bearer):
    response = mint(client, bearer, org_id=OTHER_ORG)

    assert response.status_code == 403
    assert response.json["error"] == "access_denied"
    assert "Full Admin" in response.json["error_description"]
    assert "Control Hub" in response.json["error_description"]
    assert sim.revoke_grant(app_id=APP_ID, org_id=OTHER_ORG) == 0  # no grant was made


def test_refusals_speak_webex_shape_when_asked(sim, client, bearer):
    """Switched in between, as a test of the broker's parser would; never wrapped as an idbroker error."""
    sim.error_shape = "webex"
    unknown = mint(client, bearer, app_id="no-such-app")
    bad_client = mint(client, bearer, secret="wrong-secret")
    not_authorized = mint(client, bearer, org_id=OTHER_ORG)
    bad_body = client.post(f"/applications/{APP_ID}/token", json={}, headers={"Authorization": f"Bearer {bearer}"})

    assert [r.status_code for r in (unknown, bad_client, not_authorized, bad_body)] == [404, 401, 403, 400]
    for response in (unknown, bad_client, not_authorized, bad_body):
        body = response.json
        assert set(body) == {"message", "errors", "trackingId"}
        assert body["errors"] == [{"description": body["message"]}]
        assert body["trackingId"] == response.headers["Trackingid"]
        assert "POST failed" not in body["message"]
    assert "invalid_client" in bad_client.json["message"]
    assert "not authorized in the target organization" in not_authorized.json["message"]
    assert "Full Admin" in not_authorized.json["message"]
    assert "Control Hub" in not_authorized.json["message"]
    assert sim.revoke_grant(app_id=APP_ID, org_id=OTHER_ORG) == 0


def test_webex_shape_from_the_constructor(clock):
    sim = WebexSimulator(error_shape="webex", clock=clock)
    sim.register_client(INTEGRATION, INTEGRATION_SECRET, [REDIRECT], scopes=["spark:applications_token"])
    sim.register_service_app(APP_ID, APP_CLIENT, APP_SECRET, APP_SCOPES)
    bearer = sim.issue_grant(INTEGRATION, "alice@example.com", ["spark:applications_token"])["access_token"]

    response = mint(sim.app.test_client(), bearer)

    assert response.status_code == 403
    assert "not authorized in the target organization" in response.json["message"]
    assert "error" not in response.json


# Authorization in Control Hub and revocation


def test_withdrawn_authorization_kills_the_apps_grants_in_that_org_only(sim, client, bearer):
    sim.authorize_service_app(APP_ID, OTHER_ORG)
    here, there = minted(client, bearer), minted(client, bearer, org_id=OTHER_ORG)

    sim.authorize_service_app(APP_ID, ORG, authorized=False)

    dead = refresh(client, here["refresh_token"])
    assert (dead.status_code, dead.json["error"]) == (400, "invalid_grant")
    assert people_me(client, here["access_token"]).status_code == 401
    assert mint(client, bearer).status_code == 403
    assert refresh(client, there["refresh_token"]).status_code == 200

    sim.authorize_service_app(APP_ID, ORG)
    assert mint(client, bearer).status_code == 200
    assert refresh(client, here["refresh_token"]).status_code == 400


def test_authorizing_an_unknown_app_is_refused(sim):
    with pytest.raises(ValueError, match="unknown service app"):
        sim.authorize_service_app("no-such-app", ORG)


def test_revoke_by_app_and_org(sim, client, bearer):
    sim.authorize_service_app(APP_ID, OTHER_ORG)
    grants = [minted(client, bearer), minted(client, bearer)]
    there = minted(client, bearer, org_id=OTHER_ORG)

    assert sim.revoke_grant(app_id=APP_ID, org_id=ORG) == 2
    assert sim.revoke_grant(app_id=APP_ID, org_id=ORG) == 0

    for grant in grants:
        assert refresh(client, grant["refresh_token"]).json["error"] == "invalid_grant"
    assert refresh(client, there["refresh_token"]).status_code == 200
    assert people_me(client, bearer).status_code == 403  # the integration's grant is untouched (no people_read)
    assert refresh(client, minted(client, bearer)["refresh_token"]).status_code == 200  # still authorized


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"app_id": APP_ID}, {"org_id": ORG}, {"app_id": APP_ID, "org_id": ORG, "person_email": "a@example.com"}],
)
def test_revoke_takes_exactly_one_form(sim, kwargs):
    with pytest.raises(ValueError, match="exactly one"):
        sim.revoke_grant(**kwargs)


# The developer portal's "Generate tokens" button


def test_generate_service_app_tokens_needs_no_integration(sim, client):
    body = sim.generate_service_app_tokens(APP_ID, ORG)

    assert set(body) == TOKEN_FIELDS
    assert (body["expires_in"], body["refresh_token_expires_in"]) == (3600, 7_776_000)
    assert sim.calls["applications_token"] == 0
    assert refresh(client, body["refresh_token"]).status_code == 200
    with pytest.raises(ValueError, match="not authorized"):
        sim.generate_service_app_tokens(APP_ID, OTHER_ORG)
    with pytest.raises(ValueError, match="unknown service app"):
        sim.generate_service_app_tokens("no-such-app", ORG)


# /people/me for the machine account


def test_people_me_answers_the_machine_account(sim, client, bearer):
    sim.authorize_service_app(APP_ID, OTHER_ORG)
    first, again = minted(client, bearer), minted(client, bearer)
    there = minted(client, bearer, org_id=OTHER_ORG)

    me = people_me(client, first["access_token"])

    assert me.status_code == 200
    account = me.json
    assert re.fullmatch(r"ciscospark://us/PEOPLE/[0-9a-f-]{36}", decoded(account["id"]))
    assert re.fullmatch(r"[a-z0-9-]+@[a-z0-9.-]+\.webex\.example", account["emails"][0])
    assert account["displayName"].startswith("Service App ")
    assert (account["orgId"], account["type"]) == (ORG, "appuser")
    assert people_me(client, again["access_token"]).json == account  # one machine account per app and org
    other = people_me(client, there["access_token"]).json
    assert other["orgId"] == OTHER_ORG
    assert other["id"] != account["id"]
    assert other["emails"] != account["emails"]


def test_people_me_needs_people_read_for_service_apps_too(sim, client):
    sim.register_service_app("app-without-people", "C-lean", "lean-secret", ["spark:kms"])
    sim.authorize_service_app("app-without-people", ORG)

    token = sim.generate_service_app_tokens("app-without-people", ORG)["access_token"]

    assert people_me(client, token).status_code == 403


# Faults and latency


def test_injected_faults_come_first_and_count(sim, client, bearer):
    sim.inject("applications_token", 429, retry_after="5")
    client.post("/_sim/faults", json={"endpoint": "applications_token", "status": 503, "shape": "webex"})

    limited = mint(client, None)  # the fault answers before the bearer is even looked at
    unavailable = mint(client, bearer)
    recovered = mint(client, bearer)

    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "5")
    assert limited.json == {"error": "too_many_requests", "error_description": "Too Many Requests"}
    assert unavailable.status_code == 503
    assert unavailable.json["message"] == "Service Unavailable"
    assert recovered.status_code == 200
    assert sim.calls["applications_token"] == 3
    assert client.get("/_sim/health").json["calls"] == {"applications_token": 3}


def test_latency_applies_to_the_applications_endpoint(sim, client, bearer):
    def timed(call) -> float:
        started = time.perf_counter()
        call()
        return time.perf_counter() - started

    sim.set_latency(0.05, "applications_token")
    assert timed(lambda: mint(client, bearer)) >= 0.05
    assert timed(lambda: people_me(client, bearer)) < 0.05

    sim.reset_faults()
    assert client.post("/_sim/latency", json={"seconds": 0.05, "endpoint": "applications_token"}).status_code == 204
    assert timed(lambda: mint(client, bearer)) >= 0.05


# Control endpoints


def test_service_app_control_endpoints(sim, client, bearer):
    app = {"app_id": "app-2", "client_id": "C-app-2", "client_secret": "app-2-secret", "scopes": ["spark:people_read"]}
    credentials = {"client_id": "C-app-2", "secret": "app-2-secret"}
    assert client.post("/_sim/service-apps", json=app).status_code == 204
    assert mint(client, bearer, app_id="app-2", **credentials).status_code == 403

    grant = {"app_id": "app-2", "org_id": OTHER_ORG}
    assert client.post("/_sim/service-apps/authorization", json=grant | {"authorized": True}).status_code == 204
    first = minted(client, bearer, app_id="app-2", org_id=OTHER_ORG, **credentials)

    generated = client.post("/_sim/service-apps/tokens", json=grant)
    assert generated.status_code == 200
    assert set(generated.json) == TOKEN_FIELDS
    assert generated.headers["Cache-Control"] == "no-store"
    assert refresh(client, generated.json["refresh_token"], **credentials).status_code == 200

    revoked = client.post("/_sim/revoke", json=grant)
    assert revoked.json == {"revoked": 2}
    assert refresh(client, first["refresh_token"], **credentials).status_code == 400

    assert client.post("/_sim/service-apps/tokens", json=grant).status_code == 200
    assert client.post("/_sim/service-apps/authorization", json=grant | {"authorized": False}).status_code == 204
    assert sim.revoke_grant(app_id="app-2", org_id=OTHER_ORG) == 0  # withdrawing revoked the new grant already
    refused = client.post("/_sim/service-apps/tokens", json=grant)
    assert (refused.status_code, refused.json["error"]) == (400, "invalid_request")
    assert client.get("/_sim/health").json == {"status": "ok", "calls": {"applications_token": 2, "access_token": 2}}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/_sim/service-apps", {"app_id": "a", "client_id": "c", "client_secret": "s"}),
        ("/_sim/service-apps", {"app_id": "a", "client_id": "c", "client_secret": "s", "scopes": "spark:kms"}),
        ("/_sim/service-apps", {"app_id": 1, "client_id": "c", "client_secret": "s", "scopes": []}),
        ("/_sim/service-apps", ["not", "an", "object"]),
        ("/_sim/service-apps/authorization", {"app_id": APP_ID}),
        ("/_sim/service-apps/authorization", {"app_id": "no-such-app", "org_id": ORG}),
        ("/_sim/service-apps/authorization", {"app_id": APP_ID, "org_id": ORG, "authorized": "yes"}),
        ("/_sim/service-apps/tokens", {"app_id": APP_ID}),
        ("/_sim/service-apps/tokens", {"app_id": "no-such-app", "org_id": ORG}),
        ("/_sim/revoke", {"app_id": APP_ID}),
        ("/_sim/revoke", {"app_id": APP_ID, "org_id": ORG, "person_email": "alice@example.com"}),
    ],
)
def test_service_app_control_endpoints_reject_bad_input(client, path, body):
    response = client.post(path, json=body)

    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"
