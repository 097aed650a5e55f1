"""WebexToken: the cache, the signed refresh and what each answer of the route leads to."""

import sys
import threading

import pytest

from webex_broker_client import ReauthorizationRequired, RefreshFailed, WebexBrokerError, WebexToken, webex_token

OLD, NEW = "OLD-ACCESS-TOKEN-0123456789", "NEW-ACCESS-TOKEN-9876543210"


def test_reads_the_secret_once_and_serves_it_from_the_cache(make_token):
    token, secrets = make_token()
    secrets.will_hold(OLD)
    assert [token.access_token for _ in range(3)] == [OLD] * 3
    secrets.stubber.assert_no_pending_responses()


def test_reads_again_once_inside_the_margin_before_expiry(make_token, monkeypatch):
    token, secrets = make_token(cache_margin=300)
    secrets.will_hold(OLD, expires_in=1000)
    secrets.will_hold(NEW)
    now = webex_token.time.time()
    assert token.access_token == OLD
    monkeypatch.setattr(webex_token.time, "time", lambda: now + 699)
    assert token.access_token == OLD
    monkeypatch.setattr(webex_token.time, "time", lambda: now + 701)
    assert token.access_token == NEW


def test_configuration_from_the_environment(monkeypatch, session, route):
    monkeypatch.setenv("WEBEX_BROKER_SECRET_PREFIX", "team-broker")
    monkeypatch.setenv("WEBEX_BROKER_REFRESH_URL", "https://broker.example.com/connections/{name}/refresh")
    token = WebexToken("alice@example.com", session=session)
    assert token.secret_id == "team-broker/tokens/alice@example.com"
    assert token.refresh_url == "https://broker.example.com/connections/{name}/refresh"


def test_the_refresh_is_signed_for_execute_api_with_the_sessions_credentials(make_token, route):
    token, secrets = make_token()
    secrets.will_hold(OLD)
    secrets.will_hold(OLD)
    secrets.will_hold(NEW)
    route.will_answer(200, {"connection": "reports", "outcome": "refreshed"})
    assert token.access_token == OLD
    token.refresh()
    assert token.access_token == NEW
    [sent] = route.requests
    assert sent.method == "POST"
    assert sent.url == "https://abc123.execute-api.us-east-1.amazonaws.com/connections/reports/refresh"
    assert sent.headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDLOCAL/")
    assert "/us-east-1/execute-api/aws4_request" in sent.headers["Authorization"]


def test_a_replica_region_reads_there_and_signs_for_the_apis_region(make_token, route):
    token, secrets = make_token(region="eu-west-1")
    assert token._secrets.meta.region_name == "eu-west-1"
    secrets.will_hold(OLD)
    secrets.will_hold(NEW)
    route.will_answer(200)
    token.refresh(OLD)
    assert "/us-east-1/execute-api/" in route.requests[0].headers["Authorization"]


def test_ten_threads_that_saw_the_same_401_cause_one_refresh(make_token, route):
    token, secrets = make_token()
    for value in (OLD, OLD, NEW):
        secrets.will_hold(value)
    route.will_answer(200)
    route.delay = 0.05
    seen = token.access_token
    start = threading.Barrier(10)

    def after_401():
        assert token.access_token == seen
        start.wait()
        token.refresh()
        return token.access_token

    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(after_401())) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [NEW] * 10
    assert len(route.requests) == 1


def test_no_refresh_when_the_secret_already_holds_a_newer_token(make_token, route):
    token, secrets = make_token()
    secrets.will_hold(OLD)
    secrets.will_hold(NEW)
    assert token.access_token == OLD
    token.refresh()
    assert token.access_token == NEW
    assert route.requests == []


def test_429_waits_its_retry_after_bounded_then_reads_again(make_token, route, sleeps):
    token, secrets = make_token(max_retry_wait=60)
    for value in (OLD, NEW):
        secrets.will_hold(value)
    route.will_answer(429, {"connection": "reports", "message": "cooling down"}, **{"Retry-After": "120"})
    token.refresh(OLD)
    assert sleeps == [60]
    assert token.access_token == NEW


def test_409_busy_reads_again_until_the_other_refresh_lands(make_token, route, sleeps):
    token, secrets = make_token()
    for value in (OLD, OLD, NEW):
        secrets.will_hold(value)
    route.will_answer(409, {"connection": "reports", "outcome": "skipped", "message": "in progress"})
    token.refresh(OLD)
    assert token.access_token == NEW
    assert len(sleeps) == 2


@pytest.mark.parametrize(
    "body",
    [
        {"connection": "reports", "outcome": "permanent", "status": "reauth_required", "message": "m"},
        {"connection": "reports", "status": "reauth_required", "message": "Not connected yet."},
    ],
)
def test_a_connection_to_authorize_again_raises_one_exception_naming_it(make_token, route, body):
    token, secrets = make_token()
    secrets.will_hold(OLD)
    route.will_answer(409, body)
    with pytest.raises(ReauthorizationRequired, match=r"^reports: ") as raised:
        token.refresh(OLD)
    assert raised.value.connection == "reports"


def test_other_failures_raise_refresh_failed_with_the_brokers_answer(make_token, route):
    token, secrets = make_token()
    secrets.will_hold(OLD)
    route.will_answer(502, {"connection": "reports", "outcome": "configuration", "message": "operator must act"})
    with pytest.raises(RefreshFailed) as raised:
        token.refresh(OLD)
    assert (raised.value.status, raised.value.outcome) == (502, "configuration")
    assert str(raised.value) == "reports: the broker's refresh answered 502: operator must act"


def test_no_refresh_url_says_how_to_set_one(session):
    token = WebexToken("reports", session=session)
    with pytest.raises(WebexBrokerError, match="WEBEX_BROKER_REFRESH_URL"):
        token._ask_broker()


def test_a_secret_that_is_not_a_token_secret_is_named_not_shown(make_token):
    token, secrets = make_token()
    secrets.stubber.add_response(
        "get_secret_value", {"SecretString": '{"access_token": "SECRET-VALUE"}'}, {"SecretId": token.secret_id}
    )
    with pytest.raises(WebexBrokerError) as raised:
        token.access_token  # noqa: B018
    assert str(raised.value) == "reports: broker/tokens/reports is not a token secret"
    assert raised.value.__cause__ is None


def test_no_repr_or_exception_shows_a_token(make_token, route):
    token, secrets = make_token()
    secrets.will_hold(OLD)
    secrets.will_hold(OLD)
    route.will_answer(503, {"connection": "reports", "outcome": "transient", "message": "try later"})
    assert token.access_token == OLD
    with pytest.raises(RefreshFailed) as raised:
        token.refresh()
    shown = [repr(token), repr(token.auth), str(raised.value), repr(raised.value)]
    assert not [text for text in shown if OLD in text]
    assert repr(token) == "WebexToken('reports', secret_id='broker/tokens/reports')"


def test_webex_api_gets_the_token_and_the_base_url(make_token, monkeypatch):
    monkeypatch.setenv("WEBEX_BASE_URL", "http://127.0.0.1:9/v1/")
    token, secrets = make_token()
    secrets.will_hold(OLD)
    api = token.webex_api()
    assert api.access_token == OLD
    assert api.base_url == "http://127.0.0.1:9/v1/"


def test_webex_api_without_the_extra_names_it(make_token, monkeypatch):
    monkeypatch.setitem(sys.modules, "webexpythonsdk", None)
    token, _ = make_token()
    with pytest.raises(ImportError, match=r"webex-broker-client\[webexpythonsdk\]"):
        token.webex_api()
