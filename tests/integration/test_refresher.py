"""The refresher: only what is due, exactly once per connection, classified failures, never a lost token."""

import json
import threading
from datetime import datetime

import pytest
import requests

from tests.support.broker import PREFIX, reset_broker_caches
from tests.support.clock import Clock
from tests.support.crash import crashing_after
from tests.support.people import ALICE, BOB, CAROL, DAY, HOUR
from tests.support.refresh import emf_values, make_due, material, refresher, run, tokens
from webex_broker.adapters.aws import AwsCallFailed
from webex_broker.core.token_documents import fingerprint


def accepted_by_webex(broker, access_token: str) -> bool:
    me = requests.get(f"{broker.webex.url}/people/me", headers={"Authorization": f"Bearer {access_token}"}, timeout=5)
    return me.status_code == 200


def refresh_token_still_works(broker, who: str) -> bool:
    """Ask Webex directly with the stored refresh token (as the next run would)."""
    answer = requests.post(
        f"{broker.webex.url}/access_token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": material(broker, who)["refresh_token"],
            "client_id": "C0ffee-test-client",
            "client_secret": "s3cr3t-client-value-never-shown",
        },
        timeout=5,
    )
    return answer.status_code == 200


def assert_consistent(broker, who: str) -> None:
    """Secrets and row agree, the lease is free, and Webex accepts what is stored."""
    consumer, row = tokens(broker, who), broker.connection(who)
    assert accepted_by_webex(broker, consumer["access_token"])
    assert refresh_token_still_works(broker, who)
    assert row["access_token_id"] == fingerprint(consumer["access_token"])
    assert abs(int(row["access_expires_at"]) - datetime.fromisoformat(consumer["expires_at"]).timestamp()) <= 2
    assert "lease_owner" not in row


@pytest.fixture
def sleeps(monkeypatch):
    """Backoff sleeps are recorded instead of slept."""
    recorded = []
    from webex_broker.flows.refresh import Refresher

    real_init = Refresher.__init__
    monkeypatch.setattr(
        Refresher, "__init__", lambda self, *args, **kw: real_init(self, *args, **{"sleep": recorded.append, **kw})
    )
    return recorded


# --- what is due ---------------------------------------------------------------------------------------


def test_nothing_due_means_no_webex_call_and_no_write(broker, aws_calls):
    broker.login(ALICE)
    aws_calls.clear()
    result = broker.refresh()
    assert result["refreshed"] == 0
    assert broker.webex.calls["access_token"] == 1  # the login's code exchange only
    assert aws_calls["PutSecretValue"] == aws_calls["GetSecretValue"] == 0, "not even the client secret"
    assert aws_calls["UpdateItem"] == 1, "only the run's own record, for `webex-broker doctor`"


def test_a_new_stack_without_client_credentials_runs_clean_until_something_is_due(broker, capsys):
    from webex_broker.adapters.connections import ConnectionsTable

    broker.secrets.put_secret_value(SecretId="test-broker-client", SecretString="{}")  # as the stack creates it
    reset_broker_caches()
    assert broker.refresh()["failed"] == 0, "nothing due: the empty client secret is never read"
    assert ConnectionsTable("ConnectionsTable").last_run()[0] > 0
    assert ConnectionsTable("ConnectionsTable").all() == [], "the run record is not a connection"


@pytest.mark.parametrize("deletion", [{"ForceDeleteWithoutRecovery": True}, {"RecoveryWindowInDays": 7}])
def test_an_active_connection_without_its_refresh_secret_is_a_configuration_fault(broker, capsys, deletion):
    broker.login(ALICE)
    make_due(broker, ALICE)
    broker.secrets.delete_secret(SecretId=f"{PREFIX}/refresh/{ALICE}", **deletion)
    assert broker.refresh()["failures"] == {ALICE: "missing_secret"}
    row = broker.connection(ALICE)
    assert (row["status"], row["last_error"]) == ("active", "missing_refresh_secret"), "nothing is marked dead"
    assert emf_values(capsys.readouterr().out, "MissingRefreshSecrets") == [1.0], "its own alarm's metric"


def test_due_connection_gets_a_new_token_and_keeps_its_refresh_token(short_lived, webex_clock, aws_calls):
    broker = short_lived
    broker.login(ALICE)
    before, kept = tokens(broker, ALICE), material(broker, ALICE)
    webex_clock.advance(25 * HOUR)  # past Webex's 24 h same-token window
    aws_calls.clear()

    result = broker.refresh()
    assert result["refreshed"] == 1
    assert result["outcomes"] == {"refreshed": 1}

    after = tokens(broker, ALICE)
    assert after["access_token"] != before["access_token"]
    assert material(broker, ALICE) == kept, "the refresh token came back unchanged: its secret is not rewritten"
    assert aws_calls["PutSecretValue"] == 1, "one write per routine refresh"
    assert broker.versions(f"{PREFIX}/tokens/{ALICE}") == 2
    assert_consistent(broker, ALICE)
    row = broker.connection(ALICE)
    assert row["refreshed_at"] >= row["authorized_at"]
    assert row["consecutive_failures"] == 0


def test_due_selection_reads_only_what_is_due(broker, aws_calls):
    for who in (ALICE, BOB, CAROL):
        broker.login(who)
    make_due(broker, BOB)
    aws_calls.clear()
    assert broker.refresh()["succeeded"] == 1
    assert aws_calls["Scan"] == 0
    assert aws_calls["GetSecretValue"] == 1, "only the due connection's refresh material is read"
    assert aws_calls["UpdateItem"] == 3, "lease, the final row update that also releases it, the run's record"


def test_same_token_within_24_hours_is_not_rewritten(short_lived, aws_calls):
    broker = short_lived
    broker.login(ALICE)
    before = tokens(broker, ALICE)
    aws_calls.clear()
    assert broker.refresh()["outcomes"] == {"unchanged": 1}
    assert tokens(broker, ALICE) == before
    assert aws_calls["PutSecretValue"] == 0, "nothing changed, nothing written"


def test_rotated_refresh_token_is_stored_before_the_access_token(short_lived, webex_clock, aws_calls):
    broker = short_lived
    broker.webex.rotate_refresh_tokens = True
    broker.login(ALICE)
    old = material(broker, ALICE)["refresh_token"]
    webex_clock.advance(25 * HOUR)
    written = []
    from webex_broker.adapters import aws

    aws.client("secretsmanager").meta.events.register(
        "before-parameter-build.secrets-manager.PutSecretValue", lambda params, **_: written.append(params["SecretId"])
    )
    assert broker.refresh()["refreshed"] == 1
    assert material(broker, ALICE)["refresh_token"] != old
    assert written == [f"{PREFIX}/refresh/{ALICE}", f"{PREFIX}/tokens/{ALICE}"]
    assert_consistent(broker, ALICE)


def test_answer_without_refresh_token_keeps_the_old_one(short_lived, webex_clock):
    broker = short_lived
    broker.login(ALICE)
    kept = material(broker, ALICE)
    broker.webex.refresh_response_omits = frozenset({"refresh_token", "refresh_token_expires_in"})
    webex_clock.advance(25 * HOUR)
    assert broker.refresh()["refreshed"] == 1
    assert material(broker, ALICE) == kept
    assert broker.connection(ALICE)["refresh_expires_at"] > 0
    assert_consistent(broker, ALICE)


# --- exactly one refresher per connection ------------------------------------------------------------


def test_a_connection_the_due_query_returns_twice_is_refreshed_once(short_lived, webex_clock, monkeypatch, aws_calls):
    """A paged index query can return a row again after the run moved it; the lease, held by this
    same run, would not stop a second refresh of it."""
    from webex_broker.adapters.connections import ConnectionsTable

    broker = short_lived
    broker.login(ALICE)
    broker.login(BOB)
    webex_clock.advance(25 * HOUR)
    broker.webex.set_latency(0.2, "access_token")  # the first refresh is still in flight when the name comes again
    due = ConnectionsTable.due
    monkeypatch.setattr(ConnectionsTable, "due", lambda self, now: (n for name in due(self, now) for n in (name, name)))
    calls_before = broker.webex.calls["access_token"]
    aws_calls.clear()

    result = broker.refresh()
    assert result["outcomes"] == {"refreshed": 2}
    assert result["failed"] == 0
    assert broker.webex.calls["access_token"] - calls_before == 2, "one Webex refresh per connection"
    assert aws_calls["PutSecretValue"] == 2
    for who in (ALICE, BOB):
        assert broker.versions(f"{PREFIX}/tokens/{who}") == 2
        assert_consistent(broker, who)


def test_two_refreshers_at_once_refresh_each_connection_once(broker, webex_clock):
    people = (ALICE, BOB, CAROL)
    for who in people:
        broker.login(who)
        make_due(broker, who)  # 14-day tokens: once refreshed, not due again, whichever run comes second
    webex_clock.advance(25 * HOUR)
    broker.webex.set_latency(0.1, "access_token")  # the runs overlap on the connections (not needed to pass)
    calls_before = broker.webex.calls["access_token"]
    first, second = refresher(), refresher()
    both_read = threading.Barrier(2, timeout=10)  # each run has every connection as due before either starts
    for instance in (first, second):
        due = instance._table.due
        instance._table.due = lambda now, due=due: (list(due(now)), both_read.wait())[0]
    reports = {}
    threads = [
        threading.Thread(target=lambda r=r, k=k: reports.update({k: run(r)})) for k, r in (("a", first), ("b", second))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert broker.webex.calls["access_token"] - calls_before == len(people), "one Webex refresh per connection"
    refreshed = reports["a"].outcomes["refreshed"] + reports["b"].outcomes["refreshed"]
    skipped = reports["a"].outcomes["skipped"] + reports["b"].outcomes["skipped"]
    assert refreshed == len(people)
    assert skipped == len(people)
    for who in people:
        assert broker.versions(f"{PREFIX}/tokens/{who}") == 2
        assert_consistent(broker, who)


def test_a_held_lease_is_respected_until_it_expires(short_lived):
    broker = short_lived
    broker.login(ALICE)
    clock = Clock()
    holder = refresher(clock=clock.utc)
    assert holder._table.acquire(ALICE, owner="someone-else", now=int(clock()), lease_seconds=300)
    assert refresher(clock=clock.utc).refresh_one(ALICE)[0] == "skipped"
    clock.advance(301)
    assert refresher(clock=clock.utc).refresh_one(ALICE)[0] == "unchanged"


# --- crash at every step --------------------------------------------------------------------------------


CRASH_POINTS = {
    "after-webex-answered": ("webex", "refresh"),
    "after-refresh-secret": ("secret_store", "write_refresh_material"),
    "after-consumer-secret": ("secret_store", "write_token_secret"),
    "after-row-update": ("connections", "record_refresh"),
}


@pytest.mark.parametrize("step", list(CRASH_POINTS))
def test_a_crash_at_any_step_is_finished_by_the_next_run(short_lived, webex_clock, monkeypatch, step):
    broker = short_lived
    # The hardest case: the refresh token changes on every refresh. Before anything is written, only
    # Webex's real behaviour (no rotation) can be survived: the new token exists nowhere else yet.
    broker.webex.rotate_refresh_tokens = step != "after-webex-answered"
    broker.login(ALICE)
    webex_clock.advance(25 * HOUR)

    with crashing_after(monkeypatch, *CRASH_POINTS[step], step):
        crashed = run(refresher())
    assert crashed.outcomes["error"] == 1

    clock = Clock()
    clock.advance(10 * 60)  # past the crashed run's lease
    make_due(broker, ALICE)  # the row may already be updated (crash after the last step)
    webex_clock.advance(25 * HOUR)
    finished = run(refresher(clock=clock.utc))
    assert finished.failures == {}
    assert finished.outcomes["refreshed"] + finished.outcomes["unchanged"] == 1
    assert_consistent(broker, ALICE)


# --- failures are classified ------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "shape"), [(400, "oauth"), (400, "webex"), (401, "oauth"), (401, "webex")])
def test_a_refused_grant_needs_reauthorization(short_lived, status, shape, capsys):
    broker = short_lived
    broker.login(ALICE)
    broker.login(BOB)
    kept_tokens, kept_material = tokens(broker, ALICE), material(broker, ALICE)
    broker.events()
    broker.webex.inject("access_token", status, shape=shape, error="invalid_grant")

    result = broker.refresh()
    failed = [who for who, kind in result["failures"].items() if kind == "permanent"]
    assert len(failed) == 1
    who = failed[0]
    row = broker.connection(who)
    assert row["status"] == "reauth_required"
    assert "schedule" not in row, "out of the schedule index: no more attempts"
    assert row["last_error"] == "invalid_grant"
    if who == ALICE:
        assert (tokens(broker, ALICE), material(broker, ALICE)) == (kept_tokens, kept_material)
    [event] = broker.events()
    assert event["detail-type"] == "Connection Reauthorization Required"
    assert event["source"] == "webex-token-broker.webex-token-broker", "webex-token-broker.<stack name>"
    assert event["detail"]["connection"] == who
    assert event["detail"]["tracking_id"].startswith("ROUTER_")
    assert '"ReauthRequired"' in capsys.readouterr().out, "an EMF metric for the alarm"

    calls = broker.webex.calls["access_token"]
    make_due(broker, who)
    broker.refresh()
    assert broker.connection(who)["status"] == "reauth_required"
    assert broker.webex.calls["access_token"] == calls + 1, "only the healthy connection is refreshed again"


def test_revoked_grant_in_the_simulator(short_lived, webex_clock):
    broker = short_lived
    broker.login(ALICE)
    broker.webex.revoke_grant(person_email=ALICE)
    webex_clock.advance(25 * HOUR)
    assert broker.refresh()["failures"] == {ALICE: "permanent"}
    assert broker.connection(ALICE)["status"] == "reauth_required"


@pytest.mark.parametrize("shape", ["oauth", "webex"])
def test_rejected_client_stops_the_run_with_one_error(short_lived, monkeypatch, shape, capsys):
    broker = short_lived
    for who in (ALICE, BOB, CAROL):
        broker.login(who)
    broker.events()
    monkeypatch.setenv("REFRESH_CONCURRENCY", "1")
    reset_broker_caches()
    broker.webex.inject("access_token", 401, shape=shape, error="invalid_client", times=3)
    calls = broker.webex.calls["access_token"]

    result = broker.refresh()
    assert broker.webex.calls["access_token"] == calls + 1, "no point asking again with the same credentials"
    assert result["outcomes"] == {"configuration": 1}
    assert result["stopped_early"] is True
    for who in (ALICE, BOB, CAROL):
        row = broker.connection(who)
        assert row["status"] == "active"
        assert "last_error" not in row, "not a death sentence for any connection"
        assert "lease_owner" not in row
    assert [e["detail-type"] for e in broker.events()] == ["Integration Configuration Error"]
    assert '"ConfigurationErrors"' in capsys.readouterr().out


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    [(429, "7", [7, 7]), (429, "0", [15, 15]), (429, None, [15, 15]), (503, None, [1, 2]), (423, None, [1, 2])],
)
def test_transient_failures_are_retried_with_backoff(short_lived, sleeps, status, retry_after, expected):
    broker = short_lived
    broker.login(ALICE)
    broker.webex.inject("access_token", status, retry_after=retry_after, times=3)
    before = broker.connection(ALICE)

    result = broker.refresh()
    assert result["failures"] == {ALICE: "transient"}
    backoffs = [s for s in sleeps if s >= 0.5]
    assert len(backoffs) == 2, "three attempts, two waits"
    for waited, base in zip(backoffs, expected, strict=True):
        assert base <= waited <= base * 1.25
    row = broker.connection(ALICE)
    assert row["status"] == "active", "an outage never marks a grant dead"
    assert row["last_error"] == ("http_429" if status == 429 else f"http_{status}") or row["last_error"]
    assert row["last_error_class"] == "transient"
    assert row["consecutive_failures"] == 1
    assert int(row["next_refresh_at"]) >= int(before["refreshed_at"]) + 300
    assert row["access_token_id"] == before["access_token_id"]
    assert "lease_owner" not in row


def test_a_transient_failure_that_clears_within_the_run_is_a_success(short_lived, sleeps):
    broker = short_lived
    broker.login(ALICE)
    broker.webex.inject("access_token", 502, shape="webex")
    assert broker.refresh()["failures"] == {}
    assert "last_error" not in broker.connection(ALICE)


def test_timeouts_are_transient(short_lived, sleeps, monkeypatch):
    broker = short_lived
    broker.login(ALICE)
    monkeypatch.setenv("WEBEX_TIMEOUT_SECONDS", "0.2")
    reset_broker_caches()
    broker.webex.set_latency(0.6, "access_token")
    assert broker.refresh()["failures"] == {ALICE: "transient"}
    assert broker.connection(ALICE)["last_error"] == "timeout"


def test_recovery_after_failures_emits_a_recovered_event(short_lived, sleeps):
    broker = short_lived
    broker.login(ALICE)
    broker.events()
    broker.webex.inject("access_token", 500, times=3)
    broker.refresh()
    assert broker.connection(ALICE)["consecutive_failures"] == 1
    make_due(broker, ALICE)

    assert broker.refresh()["failures"] == {}
    row = broker.connection(ALICE)
    assert row["consecutive_failures"] == 0
    assert "last_error" not in row
    assert [e["detail-type"] for e in broker.events()] == ["Connection Recovered"]


def test_secrets_manager_throttling_is_transient(short_lived, webex_clock, monkeypatch):

    from webex_broker.adapters import secret_store

    broker = short_lived
    broker.login(ALICE)
    webex_clock.advance(25 * HOUR)

    def throttled(*args, **kwargs):
        raise AwsCallFailed({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "PutSecretValue")

    monkeypatch.setattr(secret_store, "write_token_secret", throttled)
    assert broker.refresh()["failures"] == {ALICE: "transient"}
    row = broker.connection(ALICE)
    assert row["last_error"] == "ThrottlingException"
    assert row["status"] == "active"
    assert "lease_owner" not in row


def test_refresh_token_close_to_expiry_raises_a_warning(short_lived, webex_clock, capsys):
    broker = short_lived
    broker.webex.refresh_token_ttl = 10 * DAY  # Webex would not extend it past the 14-day warning
    broker.login(ALICE)
    broker.events()
    webex_clock.advance(25 * HOUR)
    broker.refresh()
    [event] = broker.events()
    assert event["detail-type"] == "Refresh Token Expiring"
    assert event["detail"]["connection"] == ALICE
    assert '"RefreshTokenExpiring"' in capsys.readouterr().out


# --- time budget and operators' figures -----------------------------------------------------------------


def test_the_run_stops_starting_work_when_time_runs_short(short_lived, monkeypatch):
    broker = short_lived
    for who in (ALICE, BOB, CAROL):
        broker.login(who)
    monkeypatch.setenv("REFRESH_CONCURRENCY", "1")
    reset_broker_caches()
    budget = iter([900_000, 900_000])
    report = run(refresher(), remaining_ms=lambda: next(budget, 10_000))
    assert report.stopped_early
    assert report.outcomes["unchanged"] == 2
    untouched = [who for who in (ALICE, BOB, CAROL) if "last_attempt_at" not in broker.connection(who)]
    assert len(untouched) == 1, "the rest is left for the next run"
    assert "lease_owner" not in broker.connection(untouched[0]), "nothing half-done"


def test_handler_emits_operator_metrics(short_lived, capsys):
    broker = short_lived
    broker.login(ALICE)
    broker.refresh()
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert emf, "CloudWatch embedded metrics were printed"
    names = {m["Name"] for doc in emf for d in doc["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {
        "Refreshed",
        "Skipped",
        "FailedTransient",
        "FailedPermanent",
        "ConfigurationErrors",
        "HoursToEarliestAccessExpiry",
        "DaysToEarliestRefreshExpiry",
    } <= names
    doc = emf[-1]
    assert 0 < min(doc["HoursToEarliestAccessExpiry"]) <= 1
    assert 80 < min(doc["DaysToEarliestRefreshExpiry"]) <= 90


@pytest.mark.parametrize(("interval_minutes", "at_risk"), [("60", 1), ("15", 0)])
def test_tokens_that_would_lapse_before_the_next_run_are_counted(
    short_lived, monkeypatch, capsys, interval_minutes, at_risk
):
    """1-hour tokens with hourly runs can lapse between runs; with 15-minute runs they cannot."""
    monkeypatch.setenv("REFRESH_INTERVAL_MINUTES", interval_minutes)
    reset_broker_caches()
    short_lived.login(ALICE)
    short_lived.refresh()
    assert emf_values(capsys.readouterr().out, "ConnectionsAtRisk") == [at_risk]


def test_consecutive_failures_feed_the_failure_alarm(short_lived, sleeps, capsys):
    broker = short_lived
    broker.login(ALICE)
    for _ in range(2):
        broker.webex.inject("access_token", 503, times=3)
        make_due(broker, ALICE)
        broker.refresh()
    assert emf_values(capsys.readouterr().out, "MaxConsecutiveFailures") == [1, 2]
    assert broker.connection(ALICE)["consecutive_failures"] == 2


def test_reauth_event_is_published_even_when_no_link_can_be_made(short_lived, monkeypatch):

    from webex_broker.adapters.invitations import InvitationStore

    broker = short_lived
    broker.login(ALICE)
    broker.dynamodb.update_item(
        TableName="ConnectionsTable",
        Key={"connection": {"S": ALICE}},
        UpdateExpression="SET login_base_url = :url",
        ExpressionAttributeValues={":url": {"S": "https://broker.example.com"}},
    )
    broker.events()

    def refuse(*args, **kwargs):
        raise AwsCallFailed({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "x"}}, "PutItem")

    monkeypatch.setattr(InvitationStore, "create", refuse)
    broker.webex.inject("access_token", 400, error="invalid_grant")
    assert broker.refresh()["failures"] == {ALICE: "permanent"}
    [event] = broker.events()
    assert event["detail-type"] == "Connection Reauthorization Required"
    assert "login_url" not in event["detail"]


def test_a_dead_grant_of_a_person_no_link_can_name_still_ends_with_its_event(short_lived):
    """A person whose address an invitation cannot carry (non-ASCII): no link, but the grant's end is
    recorded and announced all the same, on the schedule and on the refresh route."""
    from devstack.lambda_runtime import LambdaContext
    from refresh_connection import handler

    broker = short_lived
    for who in (ALICE, BOB):
        broker.login(who)
        broker.dynamodb.update_item(
            TableName="ConnectionsTable",
            Key={"connection": {"S": who}},
            UpdateExpression="SET email = :email, login_base_url = :url, next_refresh_at = :later",
            ExpressionAttributeValues={
                ":email": {"S": "jörg@exämple.com"},
                ":url": {"S": "https://broker.example"},
                ":later": {"N": str(10**10)},  # only the one made due below is refreshed on schedule
            },
        )
    broker.events()
    broker.webex.inject("access_token", 400, error="invalid_grant")
    make_due(broker, ALICE)
    assert broker.refresh()["failures"] == {ALICE: "permanent"}
    broker.webex.inject("access_token", 400, error="invalid_grant")
    event = broker.event("refresh_connection")
    event["pathParameters"] = {"name": BOB}
    assert handler(event, LambdaContext(function_name="RefreshConnectionFunction"))["statusCode"] == 409
    for who in (ALICE, BOB):
        assert broker.connection(who)["status"] == "reauth_required"
    ended = [e["detail"] for e in broker.events() if e["detail-type"] == "Connection Reauthorization Required"]
    assert sorted(d["connection"] for d in ended) == [ALICE, BOB]
    assert all("login_url" not in d for d in ended)


def test_due_connections_with_an_emptied_client_secret_stop_the_run_with_one_error(short_lived, capsys):
    broker = short_lived
    broker.login(ALICE)
    broker.login(BOB)
    broker.events()
    broker.secrets.put_secret_value(SecretId="test-broker-client", SecretString="{}")
    reset_broker_caches()
    result = broker.refresh()
    assert set(result["failures"].values()) == {"configuration"}
    assert {broker.connection(who)["status"] for who in (ALICE, BOB)} == {"active"}
    assert [e["detail-type"] for e in broker.events()] == ["Integration Configuration Error"]


def test_an_unreadable_client_secret_stops_the_run_with_one_configuration_error(short_lived, monkeypatch):
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

    from webex_broker.adapters import client_credentials

    broker = short_lived
    broker.login(ALICE)
    broker.login(BOB)
    broker.events()

    def unreadable(*args, **kwargs):
        raise GetParameterError("the secret could not be read")

    monkeypatch.setattr(client_credentials.SecretsProvider, "get", unreadable)
    result = broker.refresh()
    assert set(result["failures"].values()) == {"configuration"}, "not a crash per connection: an alarmed fault"
    assert [e["detail-type"] for e in broker.events()] == ["Integration Configuration Error"]


@pytest.mark.parametrize(
    ("message", "deleted"),
    [
        ("You can't perform this operation on the secret because it was marked for deletion.", True),  # AWS
        ("You tried to perform the operation on a secret that's currently marked deleted.", True),  # moto
        ("You can't perform this operation on the secret because it is disabled.", False),
    ],
)
def test_a_secret_in_its_recovery_window_is_told_apart_in_either_wording(message, deleted):
    from botocore.exceptions import ClientError

    from webex_broker.adapters.secret_store import scheduled_for_deletion

    exc = ClientError({"Error": {"Code": "InvalidRequestException", "Message": message}}, "GetSecretValue")
    assert scheduled_for_deletion(exc) is deleted
