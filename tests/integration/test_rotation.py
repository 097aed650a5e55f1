"""Secrets Manager's rotation refreshes a connection (issue 25.2): `rotate-secret` on its token or refresh
secret runs the four steps through the same lease and refresh as the scheduler; AWSCURRENT holds a
working token at every moment; a failed rotation leaves it in place; a rotation and a scheduled refresh
at once make one Webex call between them. The local AWS runs the local rotation steps
(devstack/rotation.py), as AWS runs the deployed rotation function."""

import json
import threading

import pytest
import requests

from devstack import rotation
from devstack.lambda_runtime import LambdaContext
from tests.support.people import ALICE, DAY
from tests.support.refresh import make_due
from webex_broker.core.token_documents import fingerprint

ROTATION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:test-broker-RotationFunction"


@pytest.fixture
def rotating(broker):
    """RotateSecret invokes the rotation flow; `seen` holds AWSCURRENT's token around every step."""
    from webex_broker.flows.broker import current
    from webex_broker.flows.rotation import RotationStep
    from webex_broker.flows.rotation import rotate as rotation_step

    seen: list[tuple[str, str, str, bool]] = []

    def look(step: str, moment: str, secret_id: str) -> None:
        """A workload reading the token secret now: which token (its fingerprint), and does Webex take it."""
        name = broker.secrets.describe_secret(SecretId=secret_id)["Name"].replace("/refresh/", "/tokens/")
        token = current_token(broker, name)
        seen.append((step, moment, fingerprint(token), works(broker, token)))

    def invoke(arn: str, event: dict) -> None:
        assert arn == ROTATION_ARN
        look(event["Step"], "before", event["SecretId"])
        try:
            context = LambdaContext(function_name="rotation", timeout_seconds=60)
            rotation_step(current(), RotationStep.of(event), remaining_ms=context.get_remaining_time_in_millis)
        finally:
            look(event["Step"], "after", event["SecretId"])

    rotation.install(invoke)
    broker.seen = seen
    return broker


def current_token(broker, name: str) -> str:
    return json.loads(broker.secrets.get_secret_value(SecretId=name)["SecretString"])["access_token"]


def current_id(broker) -> str:
    """The fingerprint of the token a workload reads now: what the tests compare (and may print)."""
    return fingerprint(current_token(broker, f"test-broker/tokens/{ALICE}"))


def a_day_later(broker, webex_clock) -> None:
    """Webex's clock a day on, and the row's last refresh a day back: the broker's clock, in effect."""
    webex_clock.advance(DAY + 60)
    broker.dynamodb.update_item(
        TableName="ConnectionsTable",
        Key={"connection": {"S": ALICE}},
        UpdateExpression="SET refreshed_at = refreshed_at - :day, written_at = written_at - :day",
        ExpressionAttributeValues={":day": {"N": str(DAY + 60)}},
    )


def works(broker, access_token: str) -> bool:
    answer = requests.get(
        f"{broker.webex.url}/people/me", headers={"Authorization": f"Bearer {access_token}"}, timeout=5
    )
    return answer.status_code == 200


def rotate(broker, name: str) -> dict:
    broker.secrets.rotate_secret(
        SecretId=name, RotationLambdaARN=ROTATION_ARN, RotationRules={"AutomaticallyAfterDays": 30}
    )
    return broker.secrets.describe_secret(SecretId=name)


@pytest.mark.parametrize("kind", ["tokens", "refresh"])
def test_rotate_secret_refreshes_the_connection_and_awscurrent_always_works(rotating, webex_clock, kind):
    broker = rotating
    broker.login(ALICE)
    before = current_id(broker)
    a_day_later(broker, webex_clock)  # past Webex's same-token window: a new token
    calls = broker.webex.calls["access_token"]

    described = rotate(broker, f"test-broker/{kind}/{ALICE}")

    assert [step for step, moment, *_ in broker.seen if moment == "after"] == list(rotation.STEPS)
    assert all(ok for *_, ok in broker.seen), "AWSCURRENT worked at every step"
    after = current_id(broker)
    assert after != before
    assert broker.webex.calls["access_token"] == calls + 1, "one Webex refresh"
    if kind == "tokens":  # testSecret proves the new token before finishSecret makes it current
        assert {token for step, _, token, _ in broker.seen if step != "finishSecret"} == {before}
    assert described["RotationEnabled"]
    assert "LastRotatedDate" in described
    pending = [v for v, stages in described["VersionIdsToStages"].items() if stages == ["AWSPENDING"]]
    assert pending == [], "the rotation finished"
    assert broker.connection(ALICE)["access_token_id"] == after, "the row follows AWSCURRENT"


def test_a_rotation_within_24_hours_gets_the_same_token_and_still_finishes(rotating, webex_clock):
    broker = rotating
    broker.login(ALICE)
    before = current_id(broker)
    webex_clock.advance(3600)
    versions = broker.versions(f"test-broker/tokens/{ALICE}")

    described = rotate(broker, f"test-broker/tokens/{ALICE}")

    assert current_id(broker) == before
    assert "LastRotatedDate" in described
    assert broker.versions(f"test-broker/tokens/{ALICE}") == versions + 1, "only the version AWS opened"


def test_a_failed_rotation_leaves_awscurrent_and_is_reported_like_a_failed_refresh(rotating, webex_clock, monkeypatch):
    from webex_broker.adapters import webex
    from webex_broker.core.errors import FailureKind, WebexError

    broker = rotating
    broker.login(ALICE)
    before = current_id(broker)
    a_day_later(broker, webex_clock)

    def refused(self, access_token: str):
        raise WebexError("Webex refused the token", code="401", kind=FailureKind.REFUSED)

    with monkeypatch.context() as patched:
        patched.setattr(webex.WebexClient, "people_me", refused)  # Webex refuses the new token at testSecret
        described = rotate(broker, f"test-broker/tokens/{ALICE}")

    assert current_id(broker) == before
    assert works(broker, current_token(broker, f"test-broker/tokens/{ALICE}")) is True
    assert not described.get("LastRotatedDate")
    assert [s for s, moment, *_ in broker.seen if moment == "after"] == ["createSecret", "setSecret", "testSecret"]
    from webex_broker.core.observability import metrics

    assert metrics.metric_set["RotationsFailed"]["Value"]
    webex_clock.advance(600)
    make_due(broker, ALICE)
    broker.refresh()
    assert current_id(broker) != before, "the next refresh makes the new token current"
    assert works(broker, current_token(broker, f"test-broker/tokens/{ALICE}")) is True


def test_a_rotation_and_a_scheduled_refresh_at_once_make_one_webex_call(rotating, webex_clock):
    broker = rotating
    broker.login(ALICE)
    a_day_later(broker, webex_clock)
    make_due(broker, ALICE)
    calls = broker.webex.calls["access_token"]
    broker.webex.set_latency(0.5, "access_token")  # the refresh holds the lease while the rotation starts
    refresher = threading.Thread(target=broker.refresh)
    refresher.start()
    rotate(broker, f"test-broker/tokens/{ALICE}")
    refresher.join()

    assert broker.webex.calls["access_token"] == calls + 1, "one Webex call between them"
    assert works(broker, current_token(broker, f"test-broker/tokens/{ALICE}")) is True
    assert broker.connection(ALICE)["access_token_id"] == current_id(broker), "neither undid the other"
    described = broker.secrets.describe_secret(SecretId=f"test-broker/tokens/{ALICE}")
    assert "LastRotatedDate" in described
