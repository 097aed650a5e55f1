"""The Webex simulator must behave like Webex, quirks included, or the broker's tests prove nothing."""

import base64
import hashlib
import re
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from devstack.webex_simulator import DEFAULT_PEOPLE, WebexSimulator
from tests.support.clock import Clock
from tests.support.people import DAY
from tests.support.webex import SIMULATED_NOW, TRACKING_ID

CLIENT_ID = "C1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b"
SECRET = "s3cr3t-0f-the-integration"
REDIRECT = "https://broker.example.com/callback"
LOCAL_REDIRECT = "http://127.0.0.1:8080/cb?tenant=a"
SCOPES = ["spark:people_read", "spark:kms", "spark:messages_write"]
ALICE_ORG_UUID = "6a1f4c2e-93b7-4d58-a0e1-2f7c8b9d4e31"


class ConsentPage(HTMLParser):
    """What a browser would see and submit on the consent page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.inputs: list[dict[str, str | None]] = []
        self.buttons: list[dict[str, str | None]] = []
        self.items: list[str] = []
        self.labels: list[str] = []
        self.title = ""
        self._open: str | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "input":
            self.inputs.append(dict(attrs))
        elif tag == "button":
            self.buttons.append(dict(attrs))
        elif tag in ("li", "label", "title"):
            self._open = tag
            {"li": self.items, "label": self.labels}.get(tag, []).append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == self._open:
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open == "title":
            self.title += data
        elif self._open == "li":
            self.items[-1] += data
        elif self._open == "label":
            self.labels[-1] += data

    def hidden(self) -> dict[str, str]:
        return {i["name"] or "": i["value"] or "" for i in self.inputs if i.get("type") == "hidden"}


@pytest.fixture
def clock() -> Clock:
    return Clock(start=SIMULATED_NOW)


@pytest.fixture
def sim(clock: Clock) -> WebexSimulator:
    simulator = WebexSimulator(clock=clock)
    simulator.register_client(CLIENT_ID, SECRET, [REDIRECT, LOCAL_REDIRECT], scopes=SCOPES)
    return simulator


@pytest.fixture
def client(sim: WebexSimulator):
    return sim.app.test_client()


def authorize_params(**overrides: str | None) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT,
        "scope": "spark:people_read spark:kms",
        "state": "st-123",
    } | overrides
    return {key: value for key, value in params.items() if value is not None}


def query_of(location: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


def consent(client, decision: str = "allow", person: str = "alice@example.com", **overrides: str | None):
    """Open the consent page and press a button, submitting exactly what the page's form carries."""
    page = client.get("/authorize", query_string=authorize_params(**overrides))
    assert page.status_code == 200, page.text
    form = ConsentPage(page.text).hidden() | {"person": person, "decision": decision}
    return client.post("/authorize/decision", data=form)


def get_code(client, **overrides: str | None) -> str:
    response = consent(client, **overrides)
    assert response.status_code == 302
    return query_of(response.location)["code"]


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


def exchange(
    client,
    code: str,
    *,
    auth: str = "body",
    secret: str = SECRET,
    redirect_uri: str | None = REDIRECT,
    verifier: str | None = None,
):
    data = {"grant_type": "authorization_code", "code": code}
    if redirect_uri is not None:
        data["redirect_uri"] = redirect_uri
    if verifier is not None:
        data["code_verifier"] = verifier
    return post_token(client, data, auth=auth, secret=secret)


def refresh(client, refresh_token: str, *, client_id: str = CLIENT_ID, secret: str = SECRET):
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return post_token(client, data, client_id=client_id, secret=secret)


def post_token(client, data: dict[str, str], *, auth: str = "body", client_id: str = CLIENT_ID, secret: str = SECRET):
    headers = {}
    if auth == "body":
        data = data | {"client_id": client_id, "client_secret": secret}
    else:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return client.post("/access_token", data=data, headers=headers)


def people_me(client, token: str):
    return client.get("/people/me", headers={"Authorization": f"Bearer {token}"})


def tokens(client, **overrides: str | None) -> dict:
    response = exchange(client, get_code(client, **overrides))
    assert response.status_code == 200, response.text
    return response.json


# Consent page and /authorize validation


def test_consent_page_lists_scopes_people_and_both_buttons(client):
    page = client.get("/authorize", query_string=authorize_params())

    assert page.status_code == 200
    assert page.mimetype == "text/html"
    parsed = ConsentPage(page.text)
    assert parsed.title == "Webex — Authorize access"
    assert CLIENT_ID in page.text
    assert parsed.items == ["spark:people_read", "spark:kms"]
    radios = [i for i in parsed.inputs if i.get("type") == "radio"]
    assert [(r["name"], r["value"]) for r in radios] == [("person", p.email) for p in DEFAULT_PEOPLE]
    assert ["checked" in r for r in radios] == [True, False, False]
    assert parsed.labels[0].strip() == "Alice Anderson (alice@example.com)"
    assert {(b["id"], b["value"]) for b in parsed.buttons} == {("allow", "allow"), ("deny", "deny")}
    assert parsed.hidden() == authorize_params()
    assert "<script" not in page.text
    assert "http://" not in page.text.replace(REDIRECT, "")  # no external assets


def test_consent_page_escapes_what_it_echoes(client):
    page = client.get("/authorize", query_string=authorize_params(state='"><script>alert(1)</script>'))

    assert "<script>" not in page.text
    assert ConsentPage(page.text).hidden()["state"] == '"><script>alert(1)</script>'


def test_scopes_separated_by_percent20(client):
    url = (
        f"/authorize?response_type=code&client_id={CLIENT_ID}&redirect_uri=https%3A%2F%2Fbroker.example.com"
        "%2Fcallback&scope=spark%3Apeople_read%20spark%3Amessages_write&state=x"
    )

    assert ConsentPage(client.get(url).text).items == ["spark:people_read", "spark:messages_write"]


def test_unknown_client_gets_an_error_page_not_a_redirect(client):
    response = client.get("/authorize", query_string=authorize_params(client_id="nobody"))

    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert "Location" not in response.headers
    assert "client_id" in response.text


@pytest.mark.parametrize("redirect_uri", [None, "https://evil.example.com/callback", REDIRECT + "/", REDIRECT + "?x=1"])
def test_unregistered_redirect_uri_gets_an_error_page(client, redirect_uri):
    response = client.get("/authorize", query_string=authorize_params(redirect_uri=redirect_uri))

    assert response.status_code == 400
    assert "Location" not in response.headers
    assert "redirect_uri" in response.text


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "spark:people_read spark:all"}, "invalid_scope"),
        ({"scope": None}, "invalid_scope"),
        ({"code_challenge": "a" * 43, "code_challenge_method": "S512"}, "invalid_request"),
        ({"code_challenge_method": "S256"}, "invalid_request"),
        ({"code_challenge": "too-short"}, "invalid_request"),
    ],
)
def test_bad_authorization_requests_go_back_to_the_client_with_an_error(client, overrides, error):
    response = client.get("/authorize", query_string=authorize_params(**overrides))

    assert response.status_code == 302
    assert response.location.startswith(REDIRECT + "?")
    assert query_of(response.location)["error"] == error
    assert query_of(response.location)["state"] == "st-123"


def test_deny_sends_access_denied_with_state(client):
    response = consent(client, decision="deny")

    assert response.status_code == 302
    assert response.location == (
        f"{REDIRECT}?error=access_denied&error_description=The+user+denied+access&state=st-123"
    )


def test_allow_sends_a_code_with_state(client):
    response = consent(client)

    assert response.status_code == 302
    params = query_of(response.location)
    assert set(params) == {"code", "state"}
    assert params["state"] == "st-123"
    assert len(params["code"]) > 40


def test_allow_keeps_the_registered_query_string(client):
    response = consent(client, redirect_uri=LOCAL_REDIRECT, state=None)

    assert response.location.startswith("http://127.0.0.1:8080/cb?tenant=a&code=")
    assert "state" not in query_of(response.location)


def test_decision_revalidates_the_tampered_form(client):
    form = ConsentPage(client.get("/authorize", query_string=authorize_params()).text).hidden()

    evil = client.post(
        "/authorize/decision", data=form | {"redirect_uri": "https://evil.example.com/", "decision": "allow"}
    )
    nobody = client.post("/authorize/decision", data=form | {"person": "mallory@example.com", "decision": "allow"})

    assert evil.status_code == 400
    assert nobody.status_code == 400


# Code exchange


def test_exchange_with_credentials_in_the_body(client):
    response = exchange(client, get_code(client))

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json
    assert set(body) == {
        "access_token",
        "expires_in",
        "refresh_token",
        "refresh_token_expires_in",
        "token_type",
        "scope",
    }
    assert body["expires_in"] == 1_209_600
    assert body["refresh_token_expires_in"] == 7_776_000
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "spark:people_read spark:kms"
    for token in (body["access_token"], body["refresh_token"]):
        assert re.fullmatch(rf"[A-Za-z0-9]{{64}}_PF84_{ALICE_ORG_UUID}", token)
    assert body["access_token"] != body["refresh_token"]


def test_exchange_with_http_basic(client):
    response = exchange(client, get_code(client), auth="basic")

    assert response.status_code == 200
    assert response.json["token_type"] == "Bearer"


@pytest.mark.parametrize("auth", ["body", "basic"])
def test_wrong_secret_is_invalid_client(client, auth):
    response = exchange(client, get_code(client), auth=auth, secret="wrong")

    assert response.status_code == 401
    assert response.json == {"error": "invalid_client", "error_description": "Client authentication failed"}


def test_unknown_client_at_the_token_endpoint_is_invalid_client(client):
    response = post_token(client, {"grant_type": "refresh_token", "refresh_token": "x"}, client_id="nobody")

    assert response.status_code == 401
    assert response.json["error"] == "invalid_client"


def test_unsupported_grant_type(client):
    response = post_token(client, {"grant_type": "password"})

    assert response.status_code == 400
    assert response.json["error"] == "unsupported_grant_type"


def test_json_body_is_rejected(client):
    response = client.post("/access_token", json={"grant_type": "refresh_token"})

    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"


def test_pkce_s256_with_the_right_verifier(client):
    verifier, challenge = pkce_pair()
    code = get_code(client, code_challenge=challenge, code_challenge_method="S256")

    assert exchange(client, code, verifier=verifier).status_code == 200


def test_pkce_s256_with_a_wrong_verifier_is_invalid_grant(client):
    _, challenge = pkce_pair()
    code = get_code(client, code_challenge=challenge, code_challenge_method="S256")

    response = exchange(client, code, verifier=pkce_pair()[0])

    assert response.status_code == 400
    assert response.json["error"] == "invalid_grant"


@pytest.mark.parametrize("verifier", [None, "short", "x" * 129, "a" * 42 + "!"])
def test_pkce_missing_or_malformed_verifier_is_refused(client, verifier):
    _, challenge = pkce_pair()
    code = get_code(client, code_challenge=challenge, code_challenge_method="S256")

    response = exchange(client, code, verifier=verifier)

    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"


def test_pkce_plain_is_the_default_method(client):
    verifier = "p" * 43
    code = get_code(client, code_challenge=verifier)

    assert exchange(client, code, verifier="q" * 43).status_code == 400
    assert exchange(client, get_code(client, code_challenge=verifier), verifier=verifier).status_code == 200


def test_code_is_single_use_even_after_a_failed_exchange(client):
    code = get_code(client)

    assert exchange(client, code, secret="wrong").status_code == 401  # client auth fails before the code is seen
    assert exchange(client, code, redirect_uri=REDIRECT + "/other").status_code == 400
    second = exchange(client, code)

    assert second.status_code == 400
    assert second.json["error"] == "invalid_grant"


def test_code_expires(client, clock):
    code = get_code(client)
    clock.advance(301)

    response = exchange(client, code)

    assert response.status_code == 400
    assert response.json == {"error": "invalid_grant", "error_description": "The authorization code has expired"}


def test_code_still_valid_just_before_it_expires(client, clock):
    code = get_code(client)
    clock.advance(299)

    assert exchange(client, code).status_code == 200


def test_code_is_bound_to_its_client(sim, client):
    sim.register_client("other", "other-secret", [REDIRECT])
    code = get_code(client)

    response = post_token(
        client,
        {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
        client_id="other",
        secret="other-secret",
    )

    assert response.status_code == 400
    assert response.json["error"] == "invalid_grant"


@pytest.mark.parametrize(("redirect_uri", "error"), [(LOCAL_REDIRECT, "invalid_grant"), (None, "invalid_request")])
def test_redirect_uri_must_repeat_the_authorize_value(client, redirect_uri, error):
    response = exchange(client, get_code(client), redirect_uri=redirect_uri)

    assert response.status_code == 400
    assert response.json["error"] == error


# Refresh


def test_refresh_within_24h_returns_the_same_token_and_expiry(client, clock):
    first = tokens(client)
    clock.advance(3 * 3600)

    again = refresh(client, first["refresh_token"]).json

    assert again["access_token"] == first["access_token"]
    assert again["refresh_token"] == first["refresh_token"]
    assert again["expires_in"] == first["expires_in"] - 3 * 3600
    assert again["refresh_token_expires_in"] == first["refresh_token_expires_in"] - 3 * 3600


def test_refresh_after_24h_mints_a_token_and_slides_the_refresh_expiry(client, clock):
    first = tokens(client)
    clock.advance(DAY + 1)

    second = refresh(client, first["refresh_token"]).json

    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] == first["refresh_token"]
    assert second["expires_in"] == 1_209_600
    assert second["refresh_token_expires_in"] == 7_776_000
    assert people_me(client, first["access_token"]).status_code == 200  # the old token lives on
    clock.advance(3600)
    assert refresh(client, first["refresh_token"]).json["access_token"] == second["access_token"]


def test_refreshing_keeps_a_grant_alive_past_the_refresh_lifetime(client, clock):
    first = tokens(client)
    for _ in range(4):
        clock.advance(60 * DAY)
        assert refresh(client, first["refresh_token"]).status_code == 200


def test_unused_refresh_token_expires(client, clock):
    first = tokens(client)
    clock.advance(7_776_000)

    response = refresh(client, first["refresh_token"])

    assert response.status_code == 400
    assert response.json["error"] == "invalid_grant"


def test_refresh_token_of_another_client_is_invalid_grant(sim, client):
    sim.register_client("other", "other-secret", [REDIRECT])
    first = tokens(client)

    response = refresh(client, first["refresh_token"], client_id="other", secret="other-secret")

    assert response.status_code == 400
    assert response.json["error"] == "invalid_grant"


def test_lifetimes_are_configurable(clock):
    sim = WebexSimulator(access_token_ttl=3600, refresh_token_ttl=5_097_600, clock=clock)
    sim.register_client(CLIENT_ID, SECRET, [REDIRECT])
    client = sim.app.test_client()
    first = tokens(client)
    clock.advance(2 * 3600)

    second = refresh(client, first["refresh_token"]).json

    assert (first["expires_in"], first["refresh_token_expires_in"]) == (3600, 5_097_600)
    assert second["access_token"] != first["access_token"]  # the same-token window never hands out a dead token
    assert second["expires_in"] == 3600
    assert people_me(client, first["access_token"]).status_code == 401


def test_concurrent_refreshes_agree_on_one_token(sim, clock):
    first = sim.issue_grant(CLIENT_ID, "bob@example.com", SCOPES)
    clock.advance(DAY)

    def one(_: int) -> str:
        return refresh(sim.app.test_client(), first["refresh_token"]).json["access_token"]

    with ThreadPoolExecutor(16) as pool:
        results = set(pool.map(one, range(32)))

    assert len(results) == 1
    assert results != {first["access_token"]}


# Revocation and /people/me


def test_revoked_grant_cannot_refresh_or_call_the_api(sim, client):
    first = tokens(client)
    other = sim.issue_grant(CLIENT_ID, "bob@example.com", SCOPES)

    assert sim.revoke_grant(refresh_token=first["refresh_token"]) == 1
    assert sim.revoke_grant(refresh_token=first["refresh_token"]) == 0

    response = refresh(client, first["refresh_token"])
    assert response.status_code == 400
    assert response.json["error"] == "invalid_grant"
    assert people_me(client, first["access_token"]).status_code == 401
    assert people_me(client, other["access_token"]).status_code == 200


def test_revoke_by_person_covers_all_their_grants(sim, client):
    grants = [sim.issue_grant(CLIENT_ID, "carol@partner.example.org", SCOPES) for _ in range(2)]
    sim.issue_grant(CLIENT_ID, "alice@example.com", SCOPES)

    assert sim.revoke_grant(person_email="Carol@Partner.example.org") == 2
    assert all(people_me(client, g["access_token"]).status_code == 401 for g in grants)
    with pytest.raises(ValueError, match="exactly one"):
        sim.revoke_grant()


def test_revoking_an_access_token_keeps_its_grant_refreshable(client):
    first = tokens(client)

    assert client.post("/_sim/revoke", json={"access_token": first["access_token"]}).json == {"revoked": 1}
    assert client.post("/_sim/revoke", json={"access_token": first["access_token"]}).json == {"revoked": 0}
    assert people_me(client, first["access_token"]).status_code == 401
    renewed = refresh(client, first["refresh_token"])
    assert renewed.status_code == 200
    assert people_me(client, renewed.json["access_token"]).status_code == 200


def test_people_me_returns_the_consenting_person(client):
    response = people_me(client, tokens(client, person="carol@partner.example.org")["access_token"])

    assert response.status_code == 200
    carol = DEFAULT_PEOPLE[2]
    assert response.json == {
        "id": carol.id,
        "emails": ["carol@partner.example.org"],
        "phoneNumbers": [],
        "displayName": "Carol Chen",
        "nickName": "Carol",
        "firstName": "Carol",
        "lastName": "Chen",
        "orgId": carol.org_id,
        "created": "2023-05-04T09:12:31.514Z",
        "lastModified": "2023-05-04T09:12:31.514Z",
        "type": "person",
    }


def test_people_me_with_an_expired_token_is_401(client, clock):
    access = tokens(client)["access_token"]
    clock.advance(1_209_600)

    response = people_me(client, access)

    assert response.status_code == 401
    assert response.json["message"].startswith("The request requires a valid access token")
    assert response.json["trackingId"] == response.headers["Trackingid"]


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer not-a-token", "Basic Zm9vOmJhcg=="])
def test_people_me_without_a_valid_token_is_401(client, header):
    headers = {} if header is None else {"Authorization": header}

    assert client.get("/people/me", headers=headers).status_code == 401


def test_people_me_without_people_read_is_403(sim, client):
    granted = sim.issue_grant(CLIENT_ID, "alice@example.com", ["spark:kms"])

    response = people_me(client, granted["access_token"])

    assert response.status_code == 403
    assert set(response.json) == {"message", "errors", "trackingId"}
    assert response.json["errors"] == [{"description": response.json["message"]}]


def test_spark_all_also_reads_people(clock):
    sim = WebexSimulator(clock=clock)
    sim.register_client(CLIENT_ID, SECRET, [REDIRECT])

    granted = sim.issue_grant(CLIENT_ID, "bob@example.com", ["spark:all"])

    assert people_me(sim.app.test_client(), granted["access_token"]).json["displayName"] == "Bob Brown"


def test_issue_grant_returns_a_code_exchange_body(sim):
    body = sim.issue_grant(CLIENT_ID, "alice@example.com", ["spark:people_read"])

    assert body["scope"] == "spark:people_read"
    assert body["expires_in"] == 1_209_600
    assert sim.calls["access_token"] == 0
    with pytest.raises(ValueError, match="not registered"):
        sim.issue_grant(CLIENT_ID, "alice@example.com", ["spark:all"])
    with pytest.raises(KeyError):
        sim.issue_grant(CLIENT_ID, "nobody@example.com", ["spark:kms"])


# Faults, latency, error shapes


@pytest.mark.parametrize("retry_after", ["7", "0", None])
def test_injected_429_with_and_without_retry_after(sim, client, retry_after):
    first = sim.issue_grant(CLIENT_ID, "alice@example.com", SCOPES)
    sim.inject("access_token", 429, retry_after=retry_after)

    limited = refresh(client, first["refresh_token"])
    recovered = refresh(client, first["refresh_token"])

    assert limited.status_code == 429
    assert limited.headers.get("Retry-After") == retry_after
    assert limited.json == {"error": "too_many_requests", "error_description": "Too Many Requests"}
    assert recovered.status_code == 200
    assert sim.calls["access_token"] == 2


@pytest.mark.parametrize("status", [500, 503])
def test_injected_server_errors_last_for_times_requests(sim, client, status):
    access = sim.issue_grant(CLIENT_ID, "alice@example.com", SCOPES)["access_token"]
    sim.inject("people_me", status, times=2)

    statuses = [people_me(client, access).status_code for _ in range(3)]

    assert statuses == [status, status, 200]
    assert sim.calls["people_me"] == 3


def test_faults_queue_in_order_and_reset(sim, client):
    access = sim.issue_grant(CLIENT_ID, "alice@example.com", SCOPES)["access_token"]
    sim.inject("people_me", 502)
    sim.inject("people_me", 504)

    assert [people_me(client, access).status_code for _ in range(2)] == [502, 504]
    sim.inject("people_me", 423, times=5)
    sim.reset_faults()
    assert people_me(client, access).status_code == 200


def test_webex_error_shape_from_the_constructor(clock):
    sim = WebexSimulator(error_shape="webex", clock=clock)
    sim.register_client(CLIENT_ID, SECRET, [REDIRECT])

    response = refresh(sim.app.test_client(), "unknown-refresh-token")

    assert response.status_code == 400
    body = response.json
    tracking_id = response.headers["Trackingid"]
    assert body == {
        "message": (
            "POST failed: HTTP/1.1 400 Bad Request (url = https://idbroker.webex.com/idb/oauth2/v1/access_token, "
            f"request/response TrackingId = {tracking_id}, error = 'invalid_grant', "
            "description = 'The refresh token is invalid, expired or revoked')"
        ),
        "errors": [{"description": body["message"]}],
        "trackingId": tracking_id,
    }


def test_webex_shape_outside_the_token_endpoint_is_plain(clock):
    sim = WebexSimulator(error_shape="webex", clock=clock)
    sim.inject("people_me", 503)

    response = sim.app.test_client().get("/people/me")

    assert response.json["message"] == "Service Unavailable"
    assert response.json["errors"] == [{"description": "Service Unavailable"}]


def test_fault_shape_overrides_the_default(sim, client):
    sim.inject("access_token", 503, shape="webex", error="temporarily_unavailable")
    sim.inject("access_token", 400, shape="oauth", error="invalid_grant")

    webex = refresh(client, "x")
    oauth = refresh(client, "x")

    assert webex.status_code == 503
    assert set(webex.json) == {"message", "errors", "trackingId"}
    assert "error = 'temporarily_unavailable', description = 'Service Unavailable'" in webex.json["message"]
    assert webex.json["trackingId"] == webex.headers["Trackingid"]
    assert oauth.json == {"error": "invalid_grant", "error_description": "Bad Request"}


def test_a_fault_worded_by_webex_alone_carries_the_message_verbatim(sim, client):
    """A refusal with no error code in it, as the broker must classify it from the words alone."""
    words = "The refresh token provided is expired, revoked, malformed, or invalid."
    sim.inject("access_token", 400, shape="webex", message=words)
    sim.inject("access_token", 403, shape="oauth", error="access_denied", message="Policy forbids this client")
    client.post("/_sim/faults", json={"endpoint": "access_token", "status": 401, "shape": "webex", "message": "No."})

    webex, oauth, remote = refresh(client, "x"), refresh(client, "x"), refresh(client, "x")

    assert webex.status_code == 400
    assert webex.json["message"] == words
    assert webex.json["errors"] == [{"description": words}]
    assert oauth.json == {"error": "access_denied", "error_description": "Policy forbids this client"}
    assert (remote.status_code, remote.json["message"]) == (401, "No.")


def test_authorize_faults_redirect_or_fail(sim, client):
    sim.inject("authorize", 302, error="server_error")
    sim.inject("authorize", 503)

    redirected = client.get("/authorize", query_string=authorize_params())
    failed = client.get("/authorize", query_string=authorize_params())

    assert query_of(redirected.location) == {"error": "server_error", "state": "st-123"}
    assert failed.status_code == 503
    assert client.get("/authorize", query_string=authorize_params()).status_code == 200


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"endpoint": "nope", "status": 500}, "endpoint"),
        ({"endpoint": "people_me", "status": 799}, "799"),
        ({"endpoint": "people_me", "status": 500, "shape": "xml"}, "shape"),
        ({"endpoint": "people_me", "status": 500, "times": 0}, "times"),
    ],
)
def test_inject_rejects_nonsense(sim, kwargs, match):
    with pytest.raises(ValueError, match=match):
        sim.inject(**kwargs)


def test_latency_delays_one_endpoint_or_all(sim, client):
    access = sim.issue_grant(CLIENT_ID, "alice@example.com", SCOPES)["access_token"]

    def timed(call) -> float:
        started = time.perf_counter()
        call()
        return time.perf_counter() - started

    sim.set_latency(0.1, "people_me")
    assert timed(lambda: people_me(client, access)) >= 0.1
    assert timed(lambda: refresh(client, "x")) < 0.1

    sim.set_latency(0.0, "people_me")
    sim.set_latency(0.1)
    assert timed(lambda: refresh(client, "x")) >= 0.1

    sim.reset_faults()
    assert timed(lambda: people_me(client, access)) < 0.1


def test_every_response_carries_a_fresh_trackingid(sim, client):
    sim.inject("people_me", 429)
    access = tokens(client)["access_token"]
    responses = [
        client.get("/authorize", query_string=authorize_params()),
        client.get("/authorize", query_string=authorize_params(client_id="nobody")),
        consent(client, decision="deny"),
        consent(client),
        refresh(client, "x"),
        people_me(client, access),
        people_me(client, access),
        client.get("/people/me"),
        client.get("/_sim/health"),
        client.post("/_sim/faults", json={}),
        client.delete("/_sim/faults"),
        client.get("/no/such/path"),
        client.get("/access_token"),
    ]

    ids = [response.headers.get("Trackingid", "") for response in responses]
    assert all(TRACKING_ID.fullmatch(tracking_id) for tracking_id in ids), ids
    assert len(set(ids)) == len(ids)
    assert [r.status_code for r in responses][-2:] == [404, 405]


# Control endpoints


def test_control_endpoints(sim, client):
    first = sim.issue_grant(CLIENT_ID, "alice@example.com", SCOPES)
    bob = sim.issue_grant(CLIENT_ID, "bob@example.com", SCOPES)

    fault = {"endpoint": "access_token", "status": 429, "shape": "webex", "retry_after": 0, "times": 2}
    assert client.post("/_sim/faults", json=fault).status_code == 204
    limited = refresh(client, first["refresh_token"])
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "0")
    assert "description = 'Too Many Requests'" in limited.json["message"]
    assert client.delete("/_sim/faults").status_code == 204
    assert refresh(client, first["refresh_token"]).status_code == 200

    assert client.post("/_sim/latency", json={"seconds": 0.05, "endpoint": "people_me"}).status_code == 204
    started = time.perf_counter()
    people_me(client, first["access_token"])
    assert time.perf_counter() - started >= 0.05

    by_email = client.post("/_sim/revoke", json={"person_email": "alice@example.com"})
    by_token = client.post("/_sim/revoke", json={"refresh_token": bob["refresh_token"]})
    assert (by_email.json, by_token.json) == ({"revoked": 1}, {"revoked": 1})
    assert refresh(client, first["refresh_token"]).status_code == 400

    health = client.get("/_sim/health")
    assert health.json == {"status": "ok", "calls": {"access_token": 3, "people_me": 1}}
    for response in (by_email, by_token, health):
        assert first["access_token"] not in response.text
        assert bob["refresh_token"] not in response.text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/_sim/faults", {"endpoint": "people_me"}),
        ("/_sim/faults", {"endpoint": "nope", "status": 500}),
        ("/_sim/faults", ["not", "an", "object"]),
        ("/_sim/latency", {"seconds": "slow"}),
        ("/_sim/latency", {"seconds": 1, "endpoint": "nope"}),
        ("/_sim/revoke", {}),
    ],
)
def test_control_endpoints_reject_bad_input(client, path, body):
    response = client.post(path, json=body)

    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"


def test_default_people_have_webex_shaped_ids():
    def decoded(id_: str) -> str:
        return base64.b64decode(id_ + "=" * (-len(id_) % 4)).decode()

    assert [p.email for p in DEFAULT_PEOPLE] == ["alice@example.com", "bob@example.com", "carol@partner.example.org"]
    for person in DEFAULT_PEOPLE:
        assert person.id.startswith("Y2lzY29zcGFyazovL3VzL1BFT1BMRS")
        assert re.fullmatch(r"ciscospark://us/PEOPLE/[0-9a-f-]{36}", decoded(person.id))
        assert re.fullmatch(r"ciscospark://us/ORGANIZATION/[0-9a-f-]{36}", decoded(person.org_id))
    assert DEFAULT_PEOPLE[0].org_id == DEFAULT_PEOPLE[1].org_id != DEFAULT_PEOPLE[2].org_id
    assert decoded(DEFAULT_PEOPLE[0].org_id).endswith(ALICE_ORG_UUID)


# Over real HTTP on loopback


def test_simulators_share_their_routes_but_each_answers_from_its_own_state(sim, client, clock):
    other = WebexSimulator(clock=clock)
    other.register_client(CLIENT_ID, SECRET, [REDIRECT], scopes=SCOPES)
    granted = tokens(client)
    other.inject("access_token", 503, times=1)

    assert refresh(other.app.test_client(), granted["refresh_token"]).status_code == 503, "its own fault"
    assert refresh(other.app.test_client(), granted["refresh_token"]).status_code == 400, "no grant of its own"
    assert people_me(other.app.test_client(), granted["access_token"]).status_code == 401
    assert refresh(client, granted["refresh_token"]).status_code == 200
    assert people_me(client, granted["access_token"]).status_code == 200
    assert (sim.calls["access_token"], other.calls["access_token"]) == (2, 2)


def test_served_over_http_on_loopback(sim):
    verifier, challenge = pkce_pair()
    with sim.serve() as server, requests.Session() as http:
        assert server.url == f"http://127.0.0.1:{server.port}"
        page = http.get(
            f"{server.url}/authorize", params=authorize_params(code_challenge=challenge, code_challenge_method="S256")
        )
        form = ConsentPage(page.text).hidden() | {"person": "bob@example.com", "decision": "allow"}
        callback = http.post(f"{server.url}/authorize/decision", data=form, allow_redirects=False)
        code = query_of(callback.headers["Location"])["code"]
        token = http.post(
            f"{server.url}/access_token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT,
                "code_verifier": verifier,
            },
            auth=(CLIENT_ID, SECRET),
            timeout=5,
        )
        me = http.get(
            f"{server.url}/people/me", headers={"Authorization": f"Bearer {token.json()['access_token']}"}, timeout=5
        )

        sim.set_latency(0.3, "people_me")
        with pytest.raises(requests.exceptions.ReadTimeout):
            http.get(f"{server.url}/people/me", timeout=0.1)

    assert me.json()["emails"] == ["bob@example.com"]
    assert TRACKING_ID.fullmatch(me.headers["Trackingid"])


def test_latency_does_not_serialize_concurrent_clients(sim):
    sim.set_latency(0.1)
    barrier = threading.Barrier(8)

    def one(_: int) -> int:
        barrier.wait()
        return (
            requests.get(f"{server.url}/_sim/health", timeout=5).status_code
            + requests.get(f"{server.url}/people/me", timeout=5).status_code
        )

    with sim.serve() as server, ThreadPoolExecutor(8) as pool:
        started = time.perf_counter()
        results = list(pool.map(one, range(8)))
        elapsed = time.perf_counter() - started

    assert results == [200 + 401] * 8
    assert 0.1 <= elapsed < 0.5


@pytest.mark.parametrize("sized", [False, True])
def test_a_trickled_token_answer_arrives_whole_and_slowly_once(sim, client, sized):
    first = tokens(client)
    sim.trickle_answers(0.02, chunk_bytes=32, sized=sized)
    with sim.serve() as server:

        def refresh_over_http() -> tuple[requests.Response, float]:
            started = time.monotonic()
            answer = requests.post(
                f"{server.url}/access_token",
                data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
                auth=(CLIENT_ID, SECRET),
                timeout=10,
            )
            return answer, time.monotonic() - started

        slow, took = refresh_over_http()
        assert slow.status_code == 200
        assert ("Content-Length" in slow.headers) is sized
        assert slow.json()["access_token"]
        assert took >= 0.02 * (len(slow.content) // 32), "one pause per chunk"
        again, took = refresh_over_http()
        assert again.status_code == 200
        assert took < 0.2, "only the next answer trickles"
