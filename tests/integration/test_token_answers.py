"""A 200 is not yet a token: only an answer holding a token of Webex's shape, with lifetimes a token can
have, is ever written. An empty or null token, a lifetime of 1e12 seconds or a page that is no JSON is
a failed attempt (transient: retried, alarmed when it persists), never a write and never a bare 500."""

import json

import pytest
import requests

from devstack.lambda_runtime import LambdaContext
from devstack.webex_simulator import OMIT
from tests.support.broker import PREFIX, reset_broker_caches
from tests.support.clock import Clock
from tests.support.people import ALICE
from tests.support.refresh import make_due, refresher, run
from webex_broker.core.token_documents import fingerprint

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
    assert _grant_from(answer, now=now, refresh_token="", client_id="C").refresh_expires_at == datetime(
        2027, 2, 3, 23, 59, 59, tzinfo=UTC
    )
    kept = _grant_from(
        {"access_token": token, "expires_in": "3600"}, now=now, refresh_token="the-one-sent", client_id="C"
    )
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


# --- a slow answer (issue 21.6) ---------------------------------------------------------------------


@pytest.mark.parametrize("sized", [False, True], ids=["http-chunks", "content-length"])
def test_a_trickled_answer_is_cut_at_the_calls_deadline_and_nothing_is_written(connected, sized, monkeypatch):
    """Each read is quick, the whole answer would take 2.5 s: a read timeout alone never fires."""
    import time

    broker = connected
    monkeypatch.setenv("WEBEX_TIMEOUT_SECONDS", "0.25")
    reset_broker_caches()
    token = broker.secret(TOKEN)
    broker.webex.trickle_answers(0.05, chunk_bytes=8, sized=sized, times=3)  # ~400 bytes: 50 chunks, 2.5 s each

    started = time.monotonic()
    run = broker.refresh()
    took = time.monotonic() - started

    assert run["outcomes"] == {"transient": 1}
    assert broker.connection(ALICE)["last_error"] == "timeout"
    assert broker.secret(TOKEN) == token
    assert took < 3 * 0.25 + 1.5, (
        f"three attempts of at most WEBEX_TIMEOUT_SECONDS (0.25 s) each, not 7.5 s: {took:.1f} s"
    )


def test_an_answer_that_outlives_the_lease_never_overwrites_a_login_made_meanwhile(connected, monkeypatch):
    """A stalled invocation (frozen, or Webex slower than any deadline): by the time the answer is
    in, the lease has run out and the person has logged in again. Their new grant stays."""

    from webex_broker.adapters.webex import WebexClient

    broker = connected
    clock = Clock()
    real_refresh = WebexClient.refresh

    def slow_refresh(self, **kwargs):
        answer = real_refresh(self, **kwargs)
        clock.advance(400)  # past the 300 s lease, for the refresher and for the login:
        broker.dynamodb.update_item(
            TableName="ConnectionsTable",
            Key={"connection": {"S": ALICE}},
            UpdateExpression="SET lease_expires_at = :past",
            ExpressionAttributeValues={":past": {"N": "1"}},
        )
        assert broker.login(ALICE)["statusCode"] == 200
        return answer

    monkeypatch.setattr(WebexClient, "refresh", slow_refresh)
    report = run(refresher(clock=clock.utc))
    login_token = broker.secret(TOKEN)["access_token"]

    assert report.outcomes["skipped"] == 1
    assert broker.connection(ALICE)["access_token_id"] == fingerprint(login_token)
    monkeypatch.setattr(WebexClient, "refresh", real_refresh)
    assert me(broker, login_token) == 200, "the token secret holds the new login's working token"


def test_an_answer_after_a_stall_is_written_when_nobody_came_in_between(connected, monkeypatch):

    from webex_broker.adapters.webex import WebexClient

    broker = connected
    before = broker.secret(TOKEN)["access_token"]
    clock = Clock()
    real_refresh = WebexClient.refresh

    def stalled_refresh(self, **kwargs):
        clock.advance(400)
        return real_refresh(self, **kwargs)

    monkeypatch.setattr(WebexClient, "refresh", stalled_refresh)
    assert run(refresher(clock=clock.utc)).outcomes["refreshed"] == 1
    assert broker.secret(TOKEN)["access_token"] != before


def me(broker, access_token: str) -> int:
    headers = {"Authorization": f"Bearer {access_token}"}
    return requests.get(f"{broker.webex.url}/people/me", headers=headers, timeout=5).status_code


def test_an_answer_larger_than_any_of_webexs_is_unusable_not_a_timeout(connected):
    broker = connected
    token = broker.secret(TOKEN)
    broker.webex.break_answers(raw="x" * (1024 * 1024 + 1), times=3)
    assert broker.refresh()["outcomes"] == {"transient": 1}
    assert broker.connection(ALICE)["last_error"] == "unusable_answer"
    assert broker.secret(TOKEN) == token
