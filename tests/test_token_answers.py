"""A 200 is not yet a token: only an answer holding a token of Webex's shape, with lifetimes a token can
have, is ever written. An empty or null token, a lifetime of 1e12 seconds or a page that is no JSON is
a failed attempt (transient: retried, alarmed when it persists), never a write and never a bare 500."""

import json

import pytest

from devstack.lambda_runtime import LambdaContext
from devstack.webex_simulator import OMIT
from tests.conftest import PREFIX
from tests.test_refresher import make_due
from tests.test_refusals import no_sleep

__all__ = ["no_sleep"]  # the fixture: the run's backoff waits are not slept

ALICE = "alice@example.com"
TOKEN = f"{PREFIX}/tokens/{ALICE}"
REFRESH = f"{PREFIX}/refresh/{ALICE}"

BROKEN = {
    "empty access token": {"changes": {"access_token": ""}},
    "null access token": {"changes": {"access_token": None}},
    "no access token": {"changes": {"access_token": OMIT}},
    "access token with spaces": {"changes": {"access_token": "not a token at all, just words"}},
    "access token as a number": {"changes": {"access_token": 12345678901234567890123}},
    "empty refresh token": {"changes": {"refresh_token": ""}},
    "expires_in 1e12": {"changes": {"expires_in": 1e12}},
    "refresh_token_expires_in 1e12": {"changes": {"refresh_token_expires_in": 1e12}},
    "expires_in zero": {"changes": {"expires_in": 0}},
    "expires_in negative": {"changes": {"expires_in": -3600}},
    "expires_in not a number": {"changes": {"expires_in": "soon"}},
    "expires_in missing": {"changes": {"expires_in": OMIT}},
    "an HTML page": {"raw": "<html><body>Service temporarily unavailable</body></html>"},
    "JSON that is no object": {"raw": "[]"},
}


@pytest.fixture
def connected(broker, no_sleep):
    broker.webex.access_token_ttl = 3600
    broker.webex.same_token_window = 0  # every refresh would hand out a new token
    assert broker.login(ALICE)["statusCode"] == 200
    make_due(broker, ALICE)
    broker.events()
    return broker


@pytest.mark.parametrize("answer", BROKEN)
def test_a_broken_token_answer_on_refresh_writes_nothing_and_is_a_transient_failure(connected, answer):
    broker = connected
    token, material = broker.secret(TOKEN), broker.secret(REFRESH)
    versions = broker.versions(TOKEN), broker.versions(REFRESH)
    expires_at = broker.connection(ALICE)["access_expires_at"]
    broker.webex.break_answers(**BROKEN[answer], times=3)  # every attempt of the run

    run = broker.refresh()

    assert run["outcomes"] == {"transient": 1}, "a failed attempt: never a write"
    assert broker.secret(TOKEN) == token
    assert broker.secret(REFRESH) == material
    assert (broker.versions(TOKEN), broker.versions(REFRESH)) == versions
    row = broker.connection(ALICE)
    assert (row["status"], row["last_error"], row["access_expires_at"]) == ("active", "unusable_answer", expires_at)
    assert broker.webex.calls["access_token"] >= 3, "retried within the run like any outage"

    make_due(broker, ALICE)
    assert broker.refresh()["outcomes"] == {"refreshed": 1}, "the next good answer is written as usual"
    assert broker.secret(TOKEN)["access_token"] != token["access_token"]


@pytest.mark.parametrize("answer", ["empty access token", "expires_in 1e12", "an HTML page"])
def test_the_refresh_route_answers_a_broken_token_answer_with_json_not_a_bare_500(connected, answer):
    from refresh_connection import handler

    broker = connected
    token = broker.secret(TOKEN)
    broker.webex.break_answers(**BROKEN[answer], times=3)
    event = broker.event("refresh_connection")
    event["pathParameters"] = {"name": ALICE}

    response = handler(event, LambdaContext(function_name="RefreshConnectionFunction"))

    assert response["statusCode"] == 503
    assert json.loads(response["body"])["outcome"] == "transient"
    assert broker.secret(TOKEN) == token


@pytest.mark.parametrize("answer", ["empty access token", "null access token", "an HTML page"])
def test_a_broken_answer_to_the_code_exchange_stores_nothing(broker, answer):
    broker.webex.break_answers(**BROKEN[answer])
    page = broker.login(ALICE)
    assert page["statusCode"] in (502, 503), page["body"]
    assert broker.connection(ALICE) is None or broker.connection(ALICE)["status"] == "pending"
    assert TOKEN not in broker.secret_names()
    assert REFRESH not in broker.secret_names()


def test_a_token_of_webexs_shape_and_lifetimes_is_kept():
    """What Webex really answers passes: the documented example, the 59-day refresh tokens seen in
    the field, numeric strings, and an answer without a refresh token (the one sent is kept)."""
    from datetime import UTC, datetime

    from webex_broker.adapters.webex import _grant_from

    now = datetime(2026, 12, 6, tzinfo=UTC)
    token = "ZDI3MGEyYzQtNmFlNS00NDNhLWFlNzAtZGVjMjE2YzZjYjFhYmVlNWQ2MzQtYjBm_PF84_1eb65fdf-9643-417f-9974-ad72cae0e10f"
    answer = {"access_token": token, "expires_in": 1209600, "refresh_token": token, "refresh_token_expires_in": 5183999}
    assert _grant_from(answer, now=now, refresh_token="").refresh_expires_at == datetime(
        2027, 2, 3, 23, 59, 59, tzinfo=UTC
    )
    kept = _grant_from({"access_token": token, "expires_in": "3600"}, now=now, refresh_token="the-one-sent")
    assert kept.refresh_token == "the-one-sent"
    assert kept.access_expires_at == datetime(2026, 12, 6, 1, 0, tzinfo=UTC)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_from_webex_is_never_followed_with_the_secrets(connected, status):
    """A 307 would re-post the client secret and the refresh token to wherever it points."""
    from devstack.webex_simulator import WebexSimulator

    broker = connected
    token = broker.secret(TOKEN)
    elsewhere = WebexSimulator()
    with elsewhere.serve() as server:
        broker.webex.inject("access_token", status, location=f"{server.url}/access_token", times=3)
        run = broker.refresh()
    assert elsewhere.calls["access_token"] == 0, "nothing was sent to the other host"
    assert run["outcomes"] == {"transient": 1}
    assert broker.secret(TOKEN) == token
