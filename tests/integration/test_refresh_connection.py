"""POST /connections/{name}/refresh through its handler: status and expiry only, the shared lease."""

import json
import time

import pytest

from devstack.lambda_runtime import LambdaContext
from tests.support.broker import PREFIX, reset_broker_caches
from tests.support.people import ALICE
from tests.support.refresh import refresh_route
from webex_broker.adapters.aws import AwsCallFailed


@pytest.fixture
def alice(broker):
    broker.login(ALICE)
    return broker


def test_refreshes_now_and_answers_status_and_expiry_only(alice):
    calls = alice.webex.calls["access_token"]
    status, body = refresh_route(alice, ALICE)
    assert status == 200
    assert body["outcome"] in ("refreshed", "unchanged")
    assert body["status"] == "active"
    assert body["expires_at"].endswith("Z")
    assert alice.webex.calls["access_token"] == calls + 1, "on demand means now, not when due"
    secrets_in_play = (
        alice.secret(f"{PREFIX}/tokens/{ALICE}")["access_token"],
        alice.secret(f"{PREFIX}/refresh/{ALICE}")["refresh_token"],
    )
    assert not any(value in json.dumps(body) for value in secrets_in_play)


def test_url_encoded_names_are_decoded(alice):
    assert refresh_route(alice, "alice%40example.com")[0] == 200


def test_unknown_connection_is_404(broker):
    status, body = refresh_route(broker, "nobody@example.com")
    assert status == 404
    assert body["connection"] == "nobody@example.com"


def test_a_refresh_in_progress_elsewhere_is_409(alice):
    from webex_broker.adapters.connections import ConnectionsTable

    assert ConnectionsTable("ConnectionsTable").acquire(
        ALICE, owner="scheduled-run", now=int(time.time()), lease_seconds=300
    )
    calls = alice.webex.calls["access_token"]
    status, body = refresh_route(alice, ALICE)
    assert status == 409
    assert "in progress" in body["message"]
    assert alice.webex.calls["access_token"] == calls, "the lease holder does the work, not us"


def test_a_dead_grant_is_409_reauth_required(alice):
    alice.webex.inject("access_token", 401, shape="webex", error="invalid_grant")
    status, body = refresh_route(alice, ALICE)
    assert status == 409
    assert body["status"] == "reauth_required"


def test_webex_outage_is_503(alice, monkeypatch):
    from webex_broker.flows.refresh import Refresher

    real_init = Refresher.__init__
    monkeypatch.setattr(
        Refresher, "__init__", lambda self, *args, **kw: real_init(self, *args, **{"sleep": lambda s: None, **kw})
    )
    alice.webex.inject("access_token", 503, times=3)
    status, body = refresh_route(alice, ALICE)
    assert status == 503
    assert body["status"] == "active"


def test_a_connection_whose_login_has_not_finished_is_409_and_untouched(broker):
    from webex_broker.adapters.connections import ConnectionsTable

    table = ConnectionsTable("ConnectionsTable")
    assert table.claim("half-done", person_id="someone", email="someone@example.com", now=int(time.time()))
    before = table.get("half-done")
    status, body = refresh_route(broker, "half-done")
    assert status == 409
    assert body["status"] == "pending"
    assert table.get("half-done") == before, "no error recorded on a connection that has no token yet"


def test_on_demand_failures_reach_the_alarm_metrics(alice, capsys):
    alice.webex.inject("access_token", 400, error="invalid_grant")
    assert refresh_route(alice, ALICE)[0] == 409
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert any("ReauthRequired" in doc for doc in emf), "flushed by the handler, not left in a buffer"


def test_webex_retries_stop_before_the_function_times_out(alice, monkeypatch):
    from refresh_connection import handler

    slept = []
    from webex_broker.flows.refresh import Refresher

    real_init = Refresher.__init__
    monkeypatch.setattr(
        Refresher, "__init__", lambda self, *args, **kw: real_init(self, *args, **{"sleep": slept.append, **kw})
    )
    alice.webex.inject("access_token", 429, times=3)  # no Retry-After: the default wait is 15 s
    event = alice.event("refresh_connection")
    event["pathParameters"] = {"name": ALICE}
    response = handler(event, LambdaContext(function_name="refresh-connection", timeout_seconds=20))
    assert response["statusCode"] == 503, "answered in time, not killed mid-wait"
    assert [s for s in slept if s >= 1] == [], "a 15 s wait plus another call would not fit in 20 s"
    assert alice.connection(ALICE)["last_error_class"] == "transient"
    assert "lease_owner" not in alice.connection(ALICE)


# --- the route keeps its promises: documented JSON on every path, lease never left held -------------------


def a_minute_later(broker, name: str) -> None:
    broker.dynamodb.update_item(
        TableName="ConnectionsTable",
        Key={"connection": {"S": name}},
        UpdateExpression="SET forced_at = forced_at - :minute",
        ExpressionAttributeValues={":minute": {"N": "61"}},
    )


def refresh_route_response(broker, name: str) -> dict:
    from refresh_connection import handler

    event = broker.event("refresh_connection")
    event["pathParameters"] = {"name": name}
    return handler(event, LambdaContext(function_name="refresh-connection", timeout_seconds=29))


def throttled(operation: str):

    def fail(*args, **kwargs):
        raise AwsCallFailed({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, operation)

    return fail


def test_a_throttled_read_is_a_503_json_answer(alice, monkeypatch):
    from webex_broker.adapters import connections

    monkeypatch.setattr(connections.ConnectionsTable, "get", throttled("GetItem"))
    status, body = refresh_route(alice, ALICE)
    assert (status, body["connection"]) == (503, ALICE)
    assert "AWS is unavailable" in body["message"]


def test_an_unreadable_client_secret_is_a_502_json_answer_and_frees_nothing_it_never_took(alice, monkeypatch):
    alice.secrets.put_secret_value(SecretId="test-broker-client", SecretString="not json")
    reset_broker_caches()
    status, body = refresh_route(alice, ALICE)
    assert status == 502
    assert "operator must act" in body["message"]
    assert "lease_owner" not in alice.connection(ALICE)


def test_a_lost_lease_is_a_409_json_answer(alice, monkeypatch):
    from webex_broker.adapters import connections

    monkeypatch.setattr(
        connections.ConnectionsTable,
        "record_refresh",
        lambda *a, **k: (_ for _ in ()).throw(connections.LeaseLost(ALICE)),
    )
    status, body = refresh_route(alice, ALICE)
    assert status == 409
    assert "in progress" in body["message"]
    assert "lease_owner" not in alice.connection(ALICE), "released on the way out"


@pytest.mark.parametrize("failing", ["record_failure", "record_refresh"])
def test_an_aws_failure_after_taking_the_lease_releases_it(alice, monkeypatch, failing):
    from webex_broker.adapters import connections

    if failing == "record_failure":
        alice.webex.inject("access_token", 503, times=3, retry_after="0.01")
    monkeypatch.setattr(connections.ConnectionsTable, failing, throttled("UpdateItem"))
    status, body = refresh_route(alice, ALICE)
    assert status == 503
    assert {"connection", "message"} <= set(body) <= {"connection", "outcome", "status", "expires_at", "message"}
    assert "lease_owner" not in alice.connection(ALICE), "not held for 300 s"


def test_a_second_forced_refresh_within_a_minute_is_429_with_retry_after(alice):
    calls = alice.webex.calls["access_token"]
    assert refresh_route(alice, ALICE)[0] == 200
    response = refresh_route_response(alice, ALICE)
    assert response["statusCode"] == 429
    assert 1 <= int(response["headers"]["Retry-After"]) <= 60
    assert json.loads(response["body"])["connection"] == ALICE
    assert alice.webex.calls["access_token"] == calls + 1, "one Webex call per connection per minute"
    a_minute_later(alice, ALICE)
    assert refresh_route(alice, ALICE)[0] == 200


def test_repeated_calls_on_a_dead_grant_reuse_one_invitation_and_one_event(alice):
    alice.events()
    alice.webex.revoke_grant(person_email=ALICE)
    for _ in range(7):
        status, body = refresh_route(alice, ALICE)
        assert (status, body["status"]) == (409, "reauth_required")
        a_minute_later(alice, ALICE)
    reauth = [e for e in alice.events() if e["detail-type"] == "Connection Reauthorization Required"]
    assert len(reauth) == 1, "seven calls, one event"
    assert alice.dynamodb.scan(TableName="InvitationsTable")["Count"] == 1, "seven calls, one link"


def test_a_new_link_once_the_old_one_expired(alice):
    alice.events()
    alice.webex.revoke_grant(person_email=ALICE)
    refresh_route(alice, ALICE)
    alice.dynamodb.update_item(
        TableName="InvitationsTable",
        Key={"invite_id": {"S": alice.connection(ALICE)["reauth_invite_id"]}},
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues={":past": {"N": "1"}},
    )
    a_minute_later(alice, ALICE)
    refresh_route(alice, ALICE)
    reauth = [e for e in alice.events() if e["detail-type"] == "Connection Reauthorization Required"]
    assert len(reauth) == 2
    assert reauth[1]["detail"]["login_url"] != reauth[0]["detail"].get("login_url")
