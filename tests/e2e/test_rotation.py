"""`aws secretsmanager rotate-secret` against `make run` (issue 25.2): the local AWS runs the local
rotation function's four steps, which refresh the connection through the scheduled refresh's lease; a
workload reading AWSCURRENT all along (a reader polling while RotateSecret runs, so between every
step) always gets a token Webex takes; `describe-secret` then shows rotation on, the last rotation and
the next. Tokens are compared by fingerprint and never printed.

The background refresher is slowed to an hour, so only the rotations refresh, and the simulator mints a
new access token on every refresh, so each rotation makes a new token current."""

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
import requests

from tests.support.local_stack import PREFIX, RunningBroker, invite_many, login, start_local_broker, stop_local_broker
from webex_broker.core.token_documents import fingerprint

NAME = "rotated"
DAYS = 30  # the broker's schedule (secret_store.ROTATION_DAYS)


@pytest.fixture(scope="module")
def broker() -> Iterator[RunningBroker]:
    running = start_local_broker(
        REFRESH_INTERVAL_SECONDS="3600", WEBEX_SIM_SAME_TOKEN_SECONDS="0", POWERTOOLS_LOG_LEVEL="INFO"
    )
    assert login(invite_many(running, [NAME])[NAME], "alice@example.com").status_code == 200
    yield running
    assert stop_local_broker(running) == 0


class Reader:
    """A workload reading the token secret's AWSCURRENT over and over while a rotation runs."""

    def __init__(self, broker: RunningBroker):
        self.broker, self.seen, self.stop = broker, [], threading.Event()
        self.thread = threading.Thread(target=self.read)

    def read(self) -> None:
        while not self.stop.is_set():
            token = self.broker.secret(f"{PREFIX}/tokens/{NAME}")["access_token"]
            works = requests.get(
                f"{self.broker.webex_url}/people/me", headers={"Authorization": f"Bearer {token}"}, timeout=5
            )
            self.seen.append((fingerprint(token), works.status_code == 200))

    def __enter__(self) -> "Reader":
        self.thread.start()
        return self

    def __exit__(self, *_) -> None:
        self.stop.set()
        self.thread.join()


def a_day_later(broker: RunningBroker) -> None:
    """Its last refresh a day back: a rotation right after one keeps that token (no second Webex call)."""
    broker.boto3("dynamodb").update_item(
        TableName=f"{PREFIX}-connections",
        Key={"connection": {"S": NAME}},
        UpdateExpression="SET refreshed_at = refreshed_at - :day",
        ExpressionAttributeValues={":day": {"N": "86400"}},
    )


@pytest.mark.parametrize("kind", ["tokens", "refresh"])
def test_rotate_secret_refreshes_the_connection_and_awscurrent_works_throughout(broker, kind):
    sm = broker.boto3("secretsmanager")
    secret = f"{PREFIX}/{kind}/{NAME}"
    before = fingerprint(broker.secret(f"{PREFIX}/tokens/{NAME}")["access_token"])
    a_day_later(broker)
    steps = len(broker.lines)

    with Reader(broker) as reader:
        sm.rotate_secret(SecretId=secret)

    finished = [line for line in broker.lines[steps:] if "Rotation finished" in line]
    assert len(finished) == 1, "the four steps ran, the last one finished the rotation"
    assert reader.seen, "read while the rotation ran"
    assert all(works for _, works in reader.seen), "AWSCURRENT held a token Webex takes at every read"
    after = fingerprint(broker.secret(f"{PREFIX}/tokens/{NAME}")["access_token"])
    assert after != before, "the connection was refreshed: a new token is current"
    described = sm.describe_secret(SecretId=secret)
    assert described["RotationEnabled"]
    assert described["RotationRules"]["AutomaticallyAfterDays"] == DAYS
    assert described["NextRotationDate"] - described["LastRotatedDate"] == timedelta(days=DAYS)
    pending = [v for v, stages in described["VersionIdsToStages"].items() if "AWSCURRENT" not in stages]
    assert all("AWSPENDING" not in described["VersionIdsToStages"][v] for v in pending), "no rotation left open"


def test_every_secret_the_broker_made_rotates_with_its_function(broker):
    sm = broker.boto3("secretsmanager")
    for kind in ("tokens", "refresh"):
        described = sm.describe_secret(SecretId=f"{PREFIX}/{kind}/{NAME}")
        assert described["RotationEnabled"]
        assert described["RotationLambdaARN"].split(":function:")[1].startswith("webex-broker-rotation-")
