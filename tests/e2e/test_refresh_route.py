"""POST /connections/{name}/refresh on the local stack: SigV4 (service execute-api) with the stack's own
credentials or 403, then the refresh under the shared lease, answered with status and expiry only.

One local stack serves the module. Its background refresher is slowed to an hour, so only these
requests refresh (and only they meet the faults injected at the Webex simulator), and the simulator
mints a new access token on every refresh, so a 200 here is a real token change the body must not show.
"""

import json
from collections.abc import Iterator
from urllib.parse import quote

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.support.local_stack import (
    ISO_Z,
    PREFIX,
    RunningBroker,
    a_minute_later,
    invite_many,
    login,
    start_local_broker,
    stop_local_broker,
)

FORBIDDEN = {"message": "Forbidden"}
ANSWER_FIELDS = {"connection", "outcome", "status", "expires_at", "message"}

CONNECTIONS = {
    "route-ok": "alice@example.com",
    "ops@route.example": "bob@example.com",
    "route-signatures": "carol@partner.example.org",
    "route-refused": "alice@example.com",
    "route-outage": "bob@example.com",
}


# --- the local stack and its connections ---------------------------------------------------------


@pytest.fixture(scope="module")
def broker() -> Iterator[RunningBroker]:
    running = start_local_broker(REFRESH_INTERVAL_SECONDS="3600", WEBEX_SIM_SAME_TOKEN_SECONDS="0")
    links = invite_many(running, list(CONNECTIONS))
    for name, person in CONNECTIONS.items():
        assert login(links[name], person).status_code == 200
    yield running
    assert stop_local_broker(running) == 0


def secret(broker: RunningBroker, kind: str, name: str) -> dict:
    return broker.secret(f"{PREFIX}/{kind}/{name}")


def tokens(broker: RunningBroker, name: str) -> list[str]:
    return [secret(broker, "tokens", name)["access_token"], secret(broker, "refresh", name)["refresh_token"]]


def row(broker: RunningBroker, name: str) -> dict:
    item = broker.boto3("dynamodb").get_item(
        TableName=f"{PREFIX}-connections", Key={"connection": {"S": name}}, ConsistentRead=True
    )["Item"]
    return {key: next(iter(value.values())) for key, value in item.items()}


# --- the route -----------------------------------------------------------------------------------


def refresh_url(broker: RunningBroker, name: str) -> str:
    return f"{broker.base_url}/connections/{quote(name, safe='')}/refresh"


def signed_headers(
    url: str,
    *,
    key: str = "local",
    secret_key: str = "local",
    service: str = "execute-api",
    region: str = "us-east-1",
    body: bytes = b"",
) -> dict[str, str]:
    request = AWSRequest(method="POST", url=url, data=body)
    SigV4Auth(Credentials(key, secret_key), service, region).add_auth(request)
    return dict(request.headers)


def post(url: str, headers: dict[str, str] | None = None, body: bytes = b"") -> requests.Response:
    return requests.post(url, data=body, headers=headers or {}, timeout=30)


def refresh(broker: RunningBroker, name: str) -> requests.Response:
    url = refresh_url(broker, name)
    return post(url, signed_headers(url))


def assert_no_tokens(response: requests.Response, secrets: list[str]) -> None:
    shown = response.text + json.dumps(dict(response.headers))
    for value in secrets:
        assert value not in shown, "the refresh route never answers with a token"


# --- authorization -------------------------------------------------------------------------------


def test_unsigned_request_is_forbidden(broker):
    before = tokens(broker, "route-signatures")
    for name in ("route-signatures", "route-nobody"):
        response = post(refresh_url(broker, name))
        assert response.status_code == 403
        assert response.json() == FORBIDDEN
    assert tokens(broker, "route-signatures") == before, "a refused request refreshes nothing"


@pytest.mark.parametrize(
    "signing",
    [
        {"secret_key": "not-the-local-secret"},
        {"key": "AKIAOTHERCALLER", "secret_key": "local"},
        {"service": "s3"},
    ],
    ids=["wrong-secret-key", "unknown-access-key", "service-s3"],
)
def test_wrongly_signed_request_is_forbidden(broker, signing):
    before = tokens(broker, "route-signatures")
    url = refresh_url(broker, "route-signatures")
    response = post(url, signed_headers(url, **signing))
    assert response.status_code == 403
    assert response.json() == FORBIDDEN
    assert tokens(broker, "route-signatures") == before


def test_signature_for_another_request_is_forbidden(broker):
    """Signed for one connection and sent for another, or with a body other than the one signed."""
    before = tokens(broker, "route-signatures")
    url = refresh_url(broker, "route-signatures")
    moved = post(url, signed_headers(refresh_url(broker, "route-ok")))
    assert (moved.status_code, moved.json()) == (403, FORBIDDEN)
    tampered = post(url, signed_headers(url), body=b"{}")
    assert (tampered.status_code, tampered.json()) == (403, FORBIDDEN)
    garbled = post(url, {"Authorization": "AWS4-HMAC-SHA256 nonsense"})
    assert (garbled.status_code, garbled.json()) == (403, FORBIDDEN)
    assert tokens(broker, "route-signatures") == before


# --- answers -------------------------------------------------------------------------------------


def test_signed_refresh_answers_status_and_expiry_without_a_token(broker):
    old = tokens(broker, "route-ok")
    response = refresh(broker, "route-ok")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert set(body) == {"connection", "outcome", "status", "expires_at"}
    assert body["connection"] == "route-ok"
    assert body["outcome"] in ("refreshed", "unchanged")
    assert body["status"] == "active"
    assert ISO_Z.fullmatch(body["expires_at"])

    new = tokens(broker, "route-ok")
    assert body["outcome"] == "refreshed", "this simulator mints a new access token on every refresh"
    assert new[0] != old[0]
    assert_no_tokens(response, old + new)
    stored = row(broker, "route-ok")
    assert stored["status"] == "active"
    assert body["expires_at"] == _iso(int(stored["access_expires_at"]))


def _iso(epoch: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_connection_name_with_an_at_sign_is_url_encoded(broker):
    url = refresh_url(broker, "ops@route.example")
    assert "/connections/ops%40route.example/refresh" in url
    response = refresh(broker, "ops@route.example")
    assert response.status_code == 200, response.text
    assert response.json()["connection"] == "ops@route.example"
    assert response.json()["status"] == "active"
    assert_no_tokens(response, tokens(broker, "ops@route.example"))


def test_unknown_connection_is_404(broker):
    response = refresh(broker, "route-nobody")
    assert response.status_code == 404
    assert response.json() == {"connection": "route-nobody", "message": "No such connection."}


def test_grant_refused_by_webex_is_409_reauth_required(broker, sim):
    sim(endpoint="access_token", status=400, error="invalid_grant", times=1)
    response = refresh(broker, "route-refused")
    assert response.status_code == 409, response.text
    body = response.json()
    assert set(body) <= ANSWER_FIELDS
    assert body["connection"] == "route-refused"
    assert body["outcome"] == "permanent"
    assert body["status"] == "reauth_required"
    assert "authorize again" in body["message"]
    assert row(broker, "route-refused")["status"] == "reauth_required"
    assert_no_tokens(response, tokens(broker, "route-refused"))


def test_webex_outage_is_503_and_the_connection_stays_active(broker, sim):
    before = tokens(broker, "route-outage")
    sim(endpoint="access_token", status=503, times=3, retry_after="0.05")  # every attempt of one refresh
    response = refresh(broker, "route-outage")
    assert response.status_code == 503, response.text
    body = response.json()
    assert set(body) <= ANSWER_FIELDS
    assert (body["outcome"], body["status"]) == ("transient", "active")
    assert "try again later" in body["message"]
    stored = row(broker, "route-outage")
    assert stored["status"] == "active"
    assert int(stored["consecutive_failures"]) == 1
    assert tokens(broker, "route-outage") == before
    assert_no_tokens(response, before)

    too_soon = refresh(broker, "route-outage")
    assert too_soon.status_code == 429, "at most one forced Webex call per connection per minute"
    assert 1 <= int(too_soon.headers["Retry-After"]) <= 60
    assert set(too_soon.json()) <= ANSWER_FIELDS
    a_minute_later(broker, "route-outage")
    recovered = refresh(broker, "route-outage")
    assert recovered.status_code == 200, "Webex is back: the next call refreshes"
    assert_no_tokens(recovered, before + tokens(broker, "route-outage"))


def test_no_token_reaches_the_gateways_output(broker):
    output = "\n".join(broker.lines)
    assert "POST /connections/{name}/refresh -> 200" in output
    for name in CONNECTIONS:
        for value in tokens(broker, name):
            assert value not in output
