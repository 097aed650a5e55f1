"""AWS refusing one of the broker's calls is proof of a configuration fault, never an outage: the
connection fails as `denied` (status kept, nothing written), an alarm metric and an event name the
action and the resource, a run where the same action is refused for most connections stops with one
error, and every other way in (a login, the on-demand route, the admin function) says so clearly."""

import json

import boto3
import pytest

from devstack.lambda_runtime import LambdaContext
from tests.support.broker import CLIENT_ID, CLIENT_SECRET, OPERATOR, PREFIX, reset_broker_caches
from tests.support.operator import lock_broker_key
from tests.support.refresh import connect, emf_values, make_due


def test_a_refresh_aws_refuses_fails_as_denied_names_the_action_and_writes_nothing(broker, capsys):
    assert broker.login()["statusCode"] == 200
    token_secret = f"{PREFIX}/tokens/alice@example.com"
    before = broker.secret(token_secret)
    versions = broker.versions(token_secret)
    make_due(broker, "alice@example.com")
    broker.events()
    lock_broker_key()
    exchanges = broker.webex.calls["access_token"]

    run = broker.refresh()

    assert run["outcomes"] == {"denied": 1}, "never transient: retrying will not grant the permission"
    assert run["denied"] == {"secretsmanager:GetSecretValue": 1}
    assert broker.webex.calls["access_token"] == exchanges, "nothing asked of Webex without the refresh token"
    row = broker.connection("alice@example.com")
    assert (row["status"], row["last_error_class"], row["last_error"]) == (
        "active",
        "denied",
        "secretsmanager:GetSecretValue",
    )
    assert broker.secret(token_secret) == before
    assert broker.versions(token_secret) == versions
    [event] = [e for e in broker.events() if e["detail-type"] == "AWS Access Denied"]
    assert event["detail"]["connection"] == "alice@example.com"
    assert event["detail"]["action"] == "secretsmanager:GetSecretValue"
    assert event["detail"]["resource"] == f"{PREFIX}/refresh/alice@example.com"
    assert emf_values(capsys.readouterr().out, "AwsAccessDenied") == [1.0], "its own alarm"


def test_the_same_refusal_for_most_of_a_run_stops_it_with_one_error(broker, monkeypatch, capsys):
    broker.webex.access_token_ttl = 3600  # due at every run
    names = connect(broker, 8)
    monkeypatch.setenv("REFRESH_CONCURRENCY", "1")  # one at a time, so the breaker stops what is left
    reset_broker_caches()
    lock_broker_key()

    run = broker.refresh()

    assert run["denials_stopped_run"]
    assert run["stopped_early"]
    assert run["outcomes"] == {"denied": 5}, "stopped at five, before the other three"
    stopped = [e["detail"] for e in broker.events() if e["detail-type"] == "Refresh Run Stopped"]
    assert stopped == [{"action": "secretsmanager:GetSecretValue", "denied": 5, "reason": "aws_access_denied"}]
    assert {broker.connection(n)["status"] for n in names} == {"active"}, "no status changed"
    assert emf_values(capsys.readouterr().out, "RunsStoppedByDenials") == [1.0]


def test_the_on_demand_route_answers_a_refusal_as_the_operators_to_fix(broker, capsys):
    from refresh_connection import handler

    assert broker.login()["statusCode"] == 200
    lock_broker_key()
    event = broker.event("refresh_connection")
    event["pathParameters"] = {"name": "alice@example.com"}
    answer = handler(event, LambdaContext())
    body = json.loads(answer["body"])
    assert (answer["statusCode"], body["outcome"]) == (502, "denied")
    assert "its operator must act" in body["message"]
    assert emf_values(capsys.readouterr().out, "AwsAccessDenied") == [1.0]


def test_a_login_aws_refuses_shows_a_clear_page_and_stores_no_connection(broker, capsys):
    lock_broker_key()
    page = broker.login()
    assert page["statusCode"] == 500
    assert "not set up correctly" in page["body"]
    assert emf_values(capsys.readouterr().out, "AwsAccessDenied") == [1.0], "the callback's refusal is alarmed too"
    assert broker.connection("alice@example.com") is None
    assert f"{PREFIX}/tokens/alice@example.com" not in broker.secret_names()


def test_the_admin_function_names_what_aws_refused(broker):
    from admin import handler

    lock_broker_key()
    request = {"action": "set_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    answer = handler(request, LambdaContext(function_name="AdminFunction"))
    assert (answer["ok"], answer["error"]) == (False, "failed"), "Webex accepted them; AWS refused storing them"
    assert answer["message"].startswith("AWS refused secretsmanager:UpdateSecret on ")
    assert CLIENT_SECRET not in json.dumps(answer)


@pytest.mark.parametrize("deleted", ["scheduled", "forced"])
def test_a_token_secret_deleted_under_an_active_connection_comes_back_at_the_next_refresh(broker, deleted):
    """The refresher's own role restores or re-creates it: a path it takes is a path it may take."""
    broker.webex.access_token_ttl = 3600
    broker.webex.same_token_window = 0
    assert broker.login()["statusCode"] == 200
    name = f"{PREFIX}/tokens/alice@example.com"
    sm = boto3.client("secretsmanager", **OPERATOR)
    if deleted == "forced":
        sm.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
    else:
        sm.delete_secret(SecretId=name, RecoveryWindowInDays=7)
    make_due(broker, "alice@example.com")

    run = broker.refresh()

    assert run["outcomes"] == {"refreshed": 1}
    assert broker.secret(name)["access_token"]
    assert "DeletedDate" not in sm.describe_secret(SecretId=name)


@pytest.mark.parametrize("function", ["CallbackFunction", "AdminFunction"])
def test_no_function_can_delete_a_token_for_good(broker, function):
    """The public callback (and the admin function) may delete only with a recovery window: a bug in
    either leaves at worst a secret that restore-secret brings back within a week."""
    from botocore.exceptions import ClientError

    from devstack import function_roles

    assert broker.login()["statusCode"] == 200
    name = f"{PREFIX}/tokens/alice@example.com"
    sm = boto3.client("secretsmanager")
    with function_roles.signing_as(function):
        with pytest.raises(ClientError, match="AccessDeniedException"):
            sm.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
        with pytest.raises(ClientError, match="AccessDeniedException"):
            sm.delete_secret(SecretId=name)  # no window given: AWS's default, not one the role names
        sm.delete_secret(SecretId=name, RecoveryWindowInDays=7)
    assert "DeletedDate" in sm.describe_secret(SecretId=name)
    sm.restore_secret(SecretId=name)
