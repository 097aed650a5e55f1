"""A login finishes only in the browser that started it (RFC 9700: the state is bound to the user
agent), and a finished login leaves the address bar through a 303 to a result page."""

import boto3
import pytest

from devstack.lambda_runtime import LambdaContext
from tests.support.broker import API_DOMAIN, PREFIX, other_browser, reset_broker_caches
from tests.support.people import ALICE, BOB

COOKIE = "__Host-webex-broker-login"


def states() -> int:
    return boto3.client("dynamodb").scan(TableName="StateTable")["Count"]


def stored_secrets(broker) -> list[str]:
    return [n for n in broker.secret_names() if n.startswith(f"{PREFIX}/")]


def test_authorize_sets_an_httponly_samesite_host_cookie(broker):
    start = broker.authorize()
    [cookie] = start["cookies"]
    name, _, rest = cookie.partition("=")
    assert name == COOKIE
    attributes = {part.strip().split("=")[0] for part in rest.split(";")[1:]}
    assert {"Path", "Max-Age", "HttpOnly", "SameSite", "Secure"} <= attributes
    assert "SameSite=Lax" in cookie
    assert "Path=/;" in cookie
    assert "Domain" not in cookie, "__Host- cookies name no domain"


def test_over_plain_http_the_cookie_is_not_secure_and_not_host_prefixed(broker, monkeypatch):
    monkeypatch.setenv("PUBLIC_BASE_URL", "http://127.0.0.1:8080")
    reset_broker_caches()
    [cookie] = broker.authorize()["cookies"]
    assert cookie.startswith("webex-broker-login=")
    assert "Secure" not in cookie


def test_a_callback_from_another_browser_is_refused_and_stores_nothing(broker):
    """Login CSRF: an attacker finishes consent for their own account and sends the callback URL on."""
    start = broker.authorize()
    query = broker.consent(start["headers"]["Location"], person=BOB)
    victim = other_browser(broker)
    victim.authorize()  # the victim's browser has its own, different nonce

    page = victim.callback(query)
    assert page["statusCode"] == 400
    assert "started in another browser" in page["body"]
    assert stored_secrets(broker) == []
    assert broker.connection(BOB) is None


def test_a_callback_without_the_cookie_is_refused_and_the_state_survives(broker):
    start = broker.authorize()
    query = broker.consent(start["headers"]["Location"], person=ALICE)
    cookies, broker.browser = broker.browser, {}
    assert states() == 1

    assert broker.callback(query)["statusCode"] == 400
    assert states() == 1, "nothing consumed: the real browser can still finish"
    assert stored_secrets(broker) == []

    broker.browser = cookies
    assert broker.callback(query)["statusCode"] == 200
    assert broker.connection(ALICE)["status"] == "active"


def test_a_forwarded_consent_url_from_an_invitation_finishes_nothing(broker, monkeypatch):
    """Whoever opens an unbound invitation gets a consent URL bound to their own browser."""
    monkeypatch.setenv("ACCESS_MODE", "invite")
    reset_broker_caches()
    start = broker.authorize(broker.invite("team"))
    victim = other_browser(broker)
    query = victim.consent(start["headers"]["Location"], person=ALICE)
    assert victim.callback(query)["statusCode"] == 400
    assert broker.connection("team") is None


def test_success_is_a_303_to_a_result_page_without_code_or_state(broker):
    start = broker.authorize()
    query = broker.consent(start["headers"]["Location"], person=ALICE)
    done = broker.callback(query, follow=False)
    assert done["statusCode"] == 303
    location = done["headers"]["Location"]
    assert location.startswith(f"https://{API_DOMAIN}/connected?r=")
    assert "code=" not in location
    assert "state=" not in location
    assert done["body"] == ""

    page = broker.result_page(location)
    assert page["statusCode"] == 200
    assert "Alice Anderson" in page["body"]
    assert f"connected as <code>{ALICE}</code>" in page["body"]
    again = broker.result_page(location)
    assert again["statusCode"] == 200, "a reload shows the result, not 'link not valid'"
    assert again["body"] == page["body"]


def test_the_result_page_shows_nothing_to_another_browser(broker):
    start = broker.authorize()
    done = broker.callback(broker.consent(start["headers"]["Location"], person=ALICE), follow=False)
    other = other_browser(broker)
    page = other.result_page(done["headers"]["Location"])
    assert page["statusCode"] == 404
    assert "Alice" not in page["body"]
    assert "Nothing to show here" in page["body"]


def test_the_result_page_expires(broker):
    start = broker.authorize()
    done = broker.callback(broker.consent(start["headers"]["Location"], person=ALICE), follow=False)
    boto3.client("dynamodb").update_item(
        TableName="StateTable",
        Key={"state": {"S": "result." + done["headers"]["Location"].split("r=")[1]}},
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues={":past": {"N": "1"}},
    )
    assert broker.result_page(done["headers"]["Location"])["statusCode"] == 404


def test_two_tabs_of_one_browser_can_both_finish(broker):
    first = broker.authorize()
    second = broker.authorize()
    assert first["cookies"][0].split(";")[0] == second["cookies"][0].split(";")[0], "the nonce is reused"
    assert broker.callback(broker.consent(second["headers"]["Location"], person=BOB))["statusCode"] == 200
    assert broker.callback(broker.consent(first["headers"]["Location"], person=ALICE))["statusCode"] == 200


@pytest.mark.parametrize("value", ["", "short", "x" * 43 + "!", "a" * 5000])
def test_a_malformed_cookie_gets_a_fresh_nonce(broker, value):
    from authorize import handler

    event = broker.event("authorize")
    event["cookies"] = [f"{COOKIE}={value}"]
    response = handler(event, LambdaContext())
    assert response["statusCode"] == 302
    fresh = response["cookies"][0].split(";")[0].split("=", 1)[1]
    assert fresh != value
    assert len(fresh) == 43
