"""Secrets Manager's rotation is on for every secret the broker makes (issue 25.2): turned on right
after CreateSecret, with the stack's rotation function and schedule, without rotating then; brought to
secrets made before (or pointing elsewhere) by the same convergence as sharing, at no further cost
once converged; a crash between CreateSecret and RotateSecret leaves a secret convergence fixes."""

import pytest
import requests

from devstack.rotation import STEPS
from tests.support.broker import PREFIX, count_aws_calls, rotation_function
from tests.support.crash import SimulatedCrash, crashing_after
from tests.support.operator import share
from tests.support.people import ALICE
from tests.support.refresh import make_due, refresh_now, refreshed_a_day_ago

SECRETS = (f"{PREFIX}/tokens/{ALICE}", f"{PREFIX}/refresh/{ALICE}")


def rotation(broker, name: str) -> tuple[bool, str, int]:
    described = broker.secrets.describe_secret(SecretId=name)
    return (
        described.get("RotationEnabled", False),
        described.get("RotationLambdaARN", ""),
        described.get("RotationRules", {}).get("AutomaticallyAfterDays", 0),
    )


def stacks_function(key: str) -> str:
    return f"arn:aws:lambda:us-east-1:123456789012:function:webex-broker-rotation-{key}"


def test_a_login_creates_both_secrets_rotating_with_the_stacks_function(broker, monkeypatch):
    key = share(monkeypatch)
    assert broker.login(ALICE)["statusCode"] == 200
    assert [rotation(broker, name) for name in SECRETS] == [(True, stacks_function(key), 30)] * 2
    for name in SECRETS:  # RotateImmediately=false: AWS ran only testSecret, nothing was rotated
        assert "LastRotatedDate" not in broker.secrets.describe_secret(SecretId=name)


def test_secrets_made_before_converge_at_the_next_refresh_then_cost_nothing_more(broker, monkeypatch):
    broker.webex.access_token_ttl = 3600
    assert broker.login(ALICE)["statusCode"] == 200  # a stack without a rotation function
    assert [rotation(broker, name)[0] for name in SECRETS] == [False, False]
    for _ in range(2):  # the update that adds it, then one whose token key (so function) is another
        key = share(monkeypatch)
        make_due(broker, ALICE)
        calls = count_aws_calls()
        assert refresh_now()["succeeded"] == 1
        assert calls["RotateSecret"] == 2
        assert [rotation(broker, name) for name in SECRETS] == [(True, stacks_function(key), 30)] * 2
    make_due(broker, ALICE)
    calls.clear()
    assert refresh_now()["succeeded"] == 1
    assert not {"RotateSecret", "DescribeSecret"} & set(calls), "a converged secret costs a refresh nothing more"


def test_a_crash_between_create_and_rotate_leaves_a_secret_the_next_login_turns_rotation_on_for(broker, monkeypatch):
    from webex_broker.adapters import secret_store

    key = share(monkeypatch)
    with monkeypatch.context() as dying:
        dying.setattr(secret_store, "turn_on_rotation", lambda *a: (_ for _ in ()).throw(SimulatedCrash("create")))
        assert broker.login(ALICE)["statusCode"] == 500, "the login dies right after CreateSecret"
    assert broker.login(ALICE)["statusCode"] == 200, "the person tries again"
    assert [rotation(broker, name) for name in SECRETS] == [(True, stacks_function(key), 30)] * 2


@pytest.mark.parametrize(
    ("owner", "step"),
    [("secret_store", "write_pending"), ("connections", "record_current_token")],
)
def test_a_rotation_that_dies_after_a_step_is_finished_by_secrets_managers_retry(broker, monkeypatch, owner, step):
    """createSecret dies after writing AWSPENDING, or finishSecret after moving AWSCURRENT: AWSCURRENT
    works throughout, and Secrets Manager's retry of the same rotation (its ClientRequestToken) finishes
    it, with the row following AWSCURRENT."""
    from webex_broker.core.token_documents import fingerprint

    share(monkeypatch)
    broker.webex.same_token_window = 0
    assert broker.login(ALICE)["statusCode"] == 200
    refreshed_a_day_ago(broker, ALICE)
    with crashing_after(monkeypatch, owner, step, step):
        broker.secrets.rotate_secret(SecretId=SECRETS[0])
    current = broker.secret(SECRETS[0])["access_token"]
    assert works(broker, current)
    [pending] = [version for version, stages in versions(broker).items() if "AWSPENDING" in stages]
    for each in STEPS:  # Secrets Manager's retry
        rotation_function("", {"Step": each, "SecretId": SECRETS[0], "ClientRequestToken": pending})
    assert all("AWSCURRENT" in s for s in versions(broker).values() if "AWSPENDING" in s), "finished"
    current = broker.secret(SECRETS[0])["access_token"]
    assert works(broker, current)
    assert broker.connection(ALICE)["access_token_id"] == fingerprint(current)


def versions(broker) -> dict[str, list[str]]:
    return broker.secrets.describe_secret(SecretId=SECRETS[0])["VersionIdsToStages"]


def works(broker, access_token: str) -> bool:
    me = requests.get(f"{broker.webex.url}/people/me", headers={"Authorization": f"Bearer {access_token}"}, timeout=5)
    return me.status_code == 200
