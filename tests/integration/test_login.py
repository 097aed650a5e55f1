"""GET /authorize and GET /callback through their handlers, with moto and the Webex simulator."""

import json
import os
import time
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from tests.support.broker import CALLBACK_URL, CLIENT_ID, CLIENT_SECRET, PREFIX, reset_broker_caches
from tests.support.operator import admin
from tests.support.people import ALICE
from webex_broker.adapters.aws import AwsCallFailed
from webex_broker.adapters.login_state import code_challenge

TOKEN_SECRET = f"{PREFIX}/tokens/{ALICE}"
REFRESH_SECRET = f"{PREFIX}/refresh/{ALICE}"


def query_of(url: str) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def state_item(state: str) -> dict | None:
    return boto3.client("dynamodb").get_item(TableName="StateTable", Key={"state": {"S": state}}).get("Item")


def assert_nothing_stored(broker) -> None:
    assert broker.secret_names() == ["test-broker-client"]
    assert boto3.client("dynamodb").scan(TableName="ConnectionsTable")["Count"] == 0


def assert_page(response: dict, status: int, *phrases: str) -> None:
    assert response["statusCode"] == status, response["body"]
    headers = response["headers"]
    assert headers["Content-Type"].startswith("text/html")
    assert headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    for phrase in phrases:
        assert phrase in response["body"]


# --- /authorize ------------------------------------------------------------------------------


def test_authorize_redirects_to_webex_consent_with_state_and_pkce(broker):
    before = int(time.time())
    response = broker.authorize()

    assert response["statusCode"] == 302
    assert response["headers"]["Cache-Control"] == "no-store"
    location = response["headers"]["Location"]
    assert location.startswith(f"{broker.webex.url}/authorize?")
    assert "scope=spark%3Akms%20spark%3Apeople_read" in location, "scopes are space separated, space as %20"
    query = query_of(location)
    assert query["response_type"] == "code"
    assert query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == CALLBACK_URL
    assert query["scope"] == "spark:kms spark:people_read"
    assert query["code_challenge_method"] == "S256"
    assert len(query["state"]) >= 43
    assert set(query["state"]) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")

    item = state_item(query["state"])
    assert item is not None
    assert before + 600 <= int(item["expires_at"]["N"]) <= int(time.time()) + 600
    assert item["redirect_uri"]["S"] == CALLBACK_URL
    assert code_challenge(item["code_verifier"]["S"]) == query["code_challenge"]
    assert 43 <= len(item["code_verifier"]["S"]) <= 128


def test_each_authorize_gets_its_own_state(broker):
    first = query_of(broker.authorize()["headers"]["Location"])["state"]
    second = query_of(broker.authorize()["headers"]["Location"])["state"]
    assert first != second


def test_public_base_url_sets_the_callback(broker, monkeypatch):
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://broker.example.com/")
    reset_broker_caches()
    query = query_of(broker.authorize()["headers"]["Location"])
    assert query["redirect_uri"] == "https://broker.example.com/callback"


def test_named_stage_is_part_of_the_callback(broker):
    from authorize import handler
    from devstack.lambda_runtime import LambdaContext

    event = broker.event("authorize")
    event["requestContext"]["stage"] = "prod"
    query = query_of(handler(event, LambdaContext())["headers"]["Location"])
    assert query["redirect_uri"] == "https://abc123.execute-api.us-east-1.amazonaws.com/prod/callback"


def test_authorize_refuses_scopes_without_people_read(broker, monkeypatch, caplog):
    monkeypatch.setenv("WEBEX_SCOPES", "spark:kms spark:messages_write")
    reset_broker_caches()
    response = broker.authorize()
    assert_page(response, 500, "not set up correctly")
    assert "spark:people_read" not in response["body"]
    assert any("spark:people_read" in getattr(r, "problem", "") for r in caplog.records), "the log names it"
    assert boto3.client("dynamodb").scan(TableName="StateTable")["Count"] == 0


def test_authorize_survives_an_aws_error_with_a_clear_page(broker):
    boto3.client("dynamodb").delete_table(TableName="StateTable")
    assert_page(broker.authorize(), 500, "Something went wrong")


# --- /callback: the happy path -------------------------------------------------------------------


def test_login_stores_both_secrets_and_the_connection(broker):
    before = int(time.time())
    response = broker.login(ALICE)

    assert_page(response, 200, "Alice Anderson", f"connected as <code>{ALICE}</code>")
    consumer = broker.secret(TOKEN_SECRET)
    refresh = broker.secret(REFRESH_SECRET)
    assert set(consumer) == {
        "kind",
        "access_token",
        "token_type",
        "expires_at",
        "scopes",
        "connection",
        "person_id",
        "email",
        "display_name",
        "org_id",
        "updated_at",
    }
    assert "refresh_token" not in consumer
    assert consumer["kind"] == "person"
    assert consumer["token_type"] == "Bearer"
    assert consumer["connection"] == ALICE
    assert consumer["email"] == ALICE
    assert consumer["display_name"] == "Alice Anderson"
    assert consumer["scopes"] == ["spark:kms", "spark:people_read"]
    assert consumer["person_id"].startswith("Y2lzY29zcGFyazovL3VzL1BFT1BMRS")
    assert consumer["org_id"]
    assert consumer["expires_at"].endswith("Z")
    expires = time.mktime(time.strptime(consumer["expires_at"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert abs(expires - (before + 1_209_600)) < 30

    assert refresh["refresh_token"]
    assert refresh["refresh_token"] != consumer["access_token"]
    assert refresh["refresh_token_expires_at"].endswith("Z")
    assert set(refresh) == {
        "kind",
        "refresh_token",
        "refresh_token_expires_at",
        "connection",
        "person_id",
        "email",
        "display_name",
        "org_id",
        "person_type",
        "scopes",
        "token_type",
        "client_id",
        "updated_at",
    }
    assert refresh["client_id"] == CLIENT_ID, "the client the grant was issued to: only it can refresh it"
    assert consumer["access_token"] not in json.dumps(refresh)

    row = broker.connection(ALICE)
    assert row["status"] == "active"
    assert row["email"] == ALICE
    assert row["person_id"] == consumer["person_id"]
    assert row["scopes"] == ["spark:kms", "spark:people_read"]
    assert abs(int(row["access_expires_at"]) - (before + 1_209_600)) < 30
    assert abs(int(row["refresh_expires_at"]) - (before + 7_776_000)) < 30
    week = before + 7 * 86400
    assert week - 6 * 3600 <= int(row["next_refresh_at"]) <= week + 30, "weekly, with jitter, keeps the grant alive"
    assert row["schedule"] == "scheduled"
    assert row["created_at"] == row["updated_at"]
    assert row["consumer_secret_arn"].split(":")[6].startswith(TOKEN_SECRET)


def test_the_stored_access_token_works_against_webex(broker):
    broker.login(ALICE)
    token = broker.secret(TOKEN_SECRET)["access_token"]
    import requests

    me = requests.get(f"{broker.webex.url}/people/me", headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert me.status_code == 200
    assert me.json()["emails"] == [ALICE]


def test_connection_name_is_the_lowercased_primary_email(broker):
    broker.login("carol@partner.example.org")
    assert broker.connection("carol@partner.example.org")["display_name"] == "Carol Chen"
    assert f"{PREFIX}/tokens/carol@partner.example.org" in broker.secret_names()


def test_authorizing_again_writes_new_versions_not_an_error(broker):
    broker.login(ALICE)
    first = broker.secret(TOKEN_SECRET)
    created = broker.connection(ALICE)["created_at"]

    assert_page(broker.login(ALICE), 200, "Alice Anderson")
    second = broker.secret(TOKEN_SECRET)
    assert second["access_token"] != first["access_token"]
    assert broker.versions(TOKEN_SECRET) == 2
    assert broker.versions(REFRESH_SECRET) == 2
    assert broker.connection(ALICE)["created_at"] == created


# --- /callback: state --------------------------------------------------------------------------


def test_replayed_callback_changes_nothing(broker):
    start = broker.authorize()
    query = broker.consent(start["headers"]["Location"])
    assert broker.callback(query)["statusCode"] == 200
    calls = broker.webex.calls["access_token"]

    assert_page(broker.callback(query), 200, "You are already connected")
    assert broker.webex.calls["access_token"] == calls, "a replay must not reach Webex"
    assert broker.versions(TOKEN_SECRET) == 1


def test_unknown_state_is_refused(broker):
    assert_page(broker.callback({"code": "whatever", "state": "never-issued"}), 400, "not valid")
    assert broker.webex.calls["access_token"] == 0
    assert_nothing_stored(broker)


def test_expired_state_still_present_is_refused(broker):
    """TTL deletion is lazy: an expired item is still in the table and must not be honoured."""
    start = broker.authorize()
    query = broker.consent(start["headers"]["Location"])
    boto3.client("dynamodb").update_item(
        TableName="StateTable",
        Key={"state": {"S": query["state"]}},
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 1)}},
    )
    assert_page(broker.callback(query), 400, "expired")
    assert broker.webex.calls["access_token"] == 0
    assert_nothing_stored(broker)


@pytest.mark.parametrize("query", [{}, {"code": "abc"}], ids=["no-parameters", "no-state"])
def test_callback_without_state_is_refused(broker, query):
    assert_page(broker.callback(query), 400, "no state")
    assert_nothing_stored(broker)


def test_callback_without_code_consumes_the_state(broker):
    start = broker.authorize()
    state = query_of(start["headers"]["Location"])["state"]
    assert_page(broker.callback({"state": state}), 400, "neither a code nor an error")
    assert state_item(state) is None
    assert_nothing_stored(broker)


# --- /callback: consent declined -------------------------------------------------------------------


def test_denied_consent_gets_a_friendly_page_and_consumes_the_state(broker):
    start = broker.authorize()
    query = broker.consent(start["headers"]["Location"], decision="deny")
    assert query["error"] == "access_denied"

    assert_page(broker.callback(query), 403, "You declined access", "Nothing was stored")
    assert state_item(query["state"]) is None
    assert broker.webex.calls["access_token"] == 0
    assert_nothing_stored(broker)


def test_other_consent_errors_are_named(broker):
    start = broker.authorize()
    state = query_of(start["headers"]["Location"])["state"]
    response = broker.callback({"error": "invalid_scope", "error_description": "bad", "state": state})
    assert_page(response, 400, "invalid_scope", "Nothing was stored")
    assert_nothing_stored(broker)


def test_error_markup_is_escaped(broker):
    start = broker.authorize()
    state = query_of(start["headers"]["Location"])["state"]
    response = broker.callback({"error": "<script>alert(1)</script>", "state": state})
    assert "<script>" not in response["body"]
    assert "&lt;script&gt;" in response["body"]


# --- /callback: Webex failures ---------------------------------------------------------------------


def callback_with_fault(broker, endpoint: str, status: int, **fault) -> dict:
    start = broker.authorize()
    query = broker.consent(start["headers"]["Location"])
    broker.webex.inject(endpoint, status, **fault)
    return broker.callback(query)


@pytest.mark.parametrize("shape", ["oauth", "webex"])
@pytest.mark.parametrize("status", [400, 401])
def test_token_endpoint_refusal_in_both_shapes(broker, shape, status):
    response = callback_with_fault(broker, "access_token", status, shape=shape, error="invalid_grant")
    assert_page(response, 400, "Webex refused the sign-in", "Nothing was stored", "ROUTER_")
    assert_nothing_stored(broker)


@pytest.mark.parametrize("shape", ["oauth", "webex"])
def test_rejected_client_credentials_are_an_operator_problem(broker, shape):
    response = callback_with_fault(broker, "access_token", 401, shape=shape, error="invalid_client")
    assert_page(response, 502, "client ID or secret", "ROUTER_")
    assert_nothing_stored(broker)


def test_real_wrong_client_secret_is_reported(broker):
    broker.webex.register_client(CLIENT_ID, "a-different-secret", [CALLBACK_URL])
    start = broker.authorize()
    response = broker.callback(broker.consent(start["headers"]["Location"]))
    assert_page(response, 502, "client ID or secret")
    assert_nothing_stored(broker)


@pytest.mark.parametrize(("retry_after", "header"), [("30", "30"), ("0", None), (None, None)])
def test_rate_limited_token_endpoint(broker, retry_after, header):
    response = callback_with_fault(broker, "access_token", 429, retry_after=retry_after)
    assert_page(response, 503, "not answering right now", "Nothing was stored")
    assert response["headers"].get("Retry-After") == header
    assert_nothing_stored(broker)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
@pytest.mark.parametrize("shape", ["oauth", "webex"])
def test_webex_server_errors(broker, status, shape):
    response = callback_with_fault(broker, "access_token", status, shape=shape)
    assert_page(response, 502, "not answering right now")
    assert_nothing_stored(broker)


def test_token_endpoint_timeout(broker, monkeypatch):
    monkeypatch.setenv("WEBEX_TIMEOUT_SECONDS", "0.3")
    reset_broker_caches()
    start = broker.authorize()
    query = broker.consent(start["headers"]["Location"])
    broker.webex.set_latency(1.0, "access_token")
    began = time.monotonic()
    response = broker.callback(query)
    assert time.monotonic() - began < 1.0
    assert_page(response, 502, "not answering right now")
    assert_nothing_stored(broker)


def test_webex_unreachable(broker, monkeypatch):
    start = broker.authorize()
    query = broker.consent(start["headers"]["Location"])
    monkeypatch.setenv("WEBEX_API_BASE_URL", "http://127.0.0.1:9")
    reset_broker_caches()
    assert_page(broker.callback(query), 502, "not answering right now")
    assert_nothing_stored(broker)


@pytest.mark.parametrize("status", [401, 500])
def test_people_me_failure_stores_nothing(broker, status):
    response = callback_with_fault(broker, "people_me", status)
    assert response["statusCode"] in (400, 502)
    assert "Nothing was stored" in response["body"]
    assert_nothing_stored(broker)


def test_people_me_forbidden_names_the_missing_scope_in_the_log(broker, caplog):
    response = callback_with_fault(broker, "people_me", 403, shape="webex")
    assert_page(response, 500, "not set up correctly")
    assert any("spark:people_read" in getattr(r, "problem", "") for r in caplog.records), "the log names it"
    assert_nothing_stored(broker)


def test_secrets_manager_failure_leaves_no_connection(broker, monkeypatch):

    from webex_broker.adapters import secret_store

    def refuse(*args, **kwargs):
        raise AwsCallFailed({"Error": {"Code": "InternalServiceError", "Message": "boom"}}, "PutSecretValue")

    start = broker.authorize()
    query = broker.consent(start["headers"]["Location"])
    monkeypatch.setattr(secret_store, "put_secret", refuse)
    assert_page(broker.callback(query), 500, "Something went wrong")
    assert_nothing_stored(broker)


def test_a_stack_whose_client_secret_is_still_empty_says_not_configured_yet(broker):
    from webex_broker.adapters.client_credentials import CLIENT_ID_TAG

    broker.secrets.put_secret_value(SecretId="test-broker-client", SecretString="{}")  # as the stack creates it:
    broker.secrets.untag_resource(SecretId="test-broker-client", TagKeys=[CLIENT_ID_TAG])  # empty, untagged
    reset_broker_caches()
    response = broker.authorize()
    assert_page(response, 503, "not configured yet")
    assert boto3.client("dynamodb").scan(TableName="StateTable")["Count"] == 0


# --- the public authorize function never holds the client secret (issue 21.7) -------------------------


def test_the_authorize_function_may_read_the_client_id_but_never_the_client_secret(broker):
    from devstack import function_roles

    role = function_roles.roles(PREFIX)["AuthorizeFunction"]
    actions = {a for s in function_roles.statements(role, os.environ) for a in _listed(s["Action"])}
    assert "secretsmanager:GetSecretValue" not in actions
    assert not [a for a in actions if a.startswith("kms:")]
    start = broker.authorize()
    assert start["statusCode"] == 302
    assert f"client_id={CLIENT_ID}" in start["headers"]["Location"], "from the client secret's tag"


def test_a_client_secret_without_its_client_id_tag_is_named_and_set_credentials_tags_it(broker):
    from webex_broker.adapters.client_credentials import CLIENT_ID_TAG

    arn = os.environ["CLIENT_SECRET_ARN"]
    broker.secrets.untag_resource(SecretId=arn, TagKeys=[CLIENT_ID_TAG])  # filled by hand, not set-credentials
    reset_broker_caches()

    assert_page(broker.authorize(), 503, "not configured yet")
    assert admin({"action": "check_credentials"})["result"] == "fail"

    assert admin({"action": "set_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})["ok"]
    reset_broker_caches()
    assert broker.authorize()["statusCode"] == 302
    assert admin({"action": "check_credentials"})["result"] == "ok"


def _listed(value) -> list[str]:
    return value if isinstance(value, list) else [value]


# --- the page within API Gateway's 30 s, cold or warm (issue 22.6) ----------------------------------------


def callback_arrived(broker, seconds_ago: float) -> dict:
    """A callback that API Gateway received `seconds_ago` (a cold start spent the rest)."""
    from callback import handler
    from devstack.lambda_runtime import LambdaContext

    start = broker.authorize()
    query = broker.consent(start["headers"]["Location"])
    event = broker.event("callback", query)
    event["requestContext"]["timeEpoch"] = int((time.time() - seconds_ago) * 1000)
    return handler(event, LambdaContext(function_name="CallbackFunction", timeout_seconds=29))


def test_after_a_long_cold_start_webex_is_not_asked_past_the_requests_30_seconds(broker):
    exchanged = broker.webex.calls["access_token"]
    started = time.monotonic()
    page = callback_arrived(broker, 24)  # 5 s left, and the writes need 6

    assert_page(page, 502, "Webex is not answering right now")
    assert time.monotonic() - started < 3, "the broker's page, while API Gateway still waits for it"
    assert broker.webex.calls["access_token"] == exchanged, "the code is not spent on an answer nobody gets"
    assert broker.connection(ALICE) is None


def test_a_slow_webex_call_is_cut_to_what_the_request_has_left(broker, monkeypatch):
    monkeypatch.setenv("WEBEX_TIMEOUT_SECONDS", "8")
    reset_broker_caches()
    broker.webex.set_latency(4, "access_token")
    started = time.monotonic()
    page = callback_arrived(broker, 21.5)  # 7.5 s left: 1.5 s for Webex, 6 for the writes

    took = time.monotonic() - started
    assert_page(page, 502, "Webex is not answering right now")
    assert 1 < took < 3.5, f"cut at the request's budget (1.5 s), not the call's own 8 s: {took:.1f} s"


def test_a_sample_events_arrival_time_leaves_the_functions_own_budget(broker):
    from devstack.lambda_runtime import LambdaContext
    from webex_broker.edge.web import time_left_ms

    context = LambdaContext(timeout_seconds=29)
    for arrival in (0, int(time.time() * 1000) + 60_000, "soon", None):
        left = time_left_ms({"requestContext": {"timeEpoch": arrival}}, context)()
        assert 28_000 < left <= 29_000, arrival
    recent = time_left_ms({"requestContext": {"timeEpoch": int(time.time() * 1000) - 10_000}}, context)()
    assert 18_000 < recent <= 19_000
