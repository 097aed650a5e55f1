"""What makes the integration tier fast must not change what it proves. Each test's stack is a copy
(tests/support/aws_snapshot.py), so nothing one test writes reaches another; and the suite's moto and
botocore do once what they repeat unchanged on every call or every new session (tests/support/moto_speed.py,
tests/support/botocore_speed.py), so each must answer exactly as its own code does."""

import json
import os

import boto3
import botocore.hooks
import pytest
from botocore.exceptions import ClientError

from tests.support import botocore_speed, moto_speed
from tests.support.broker import setup_client, table_keyed_by_k


def test_what_a_test_writes_never_reaches_the_next_tests_stack(broker, new_stack):
    from moto.core.base_backend import BackendDict

    client_secret = broker.secrets.get_secret_value(SecretId=os.environ["CLIENT_SECRET_ARN"])["SecretString"]
    broker.dynamodb.put_item(TableName="ConnectionsTable", Item={"connection": {"S": "left-behind"}})
    broker.secrets.put_secret_value(SecretId=os.environ["CLIENT_SECRET_ARN"], SecretString='{"changed": true}')
    broker.secrets.create_secret(Name="test-broker/left-behind", SecretString="{}")

    BackendDict.reset()  # what the `moto` fixture does after each test
    names = new_stack()  # the next test's stack

    assert names["CLIENT_SECRET_ARN"] == os.environ["CLIENT_SECRET_ARN"]
    assert broker.dynamodb.scan(TableName="ConnectionsTable")["Items"] == []
    assert broker.secrets.get_secret_value(SecretId=names["CLIENT_SECRET_ARN"])["SecretString"] == client_secret
    assert broker.secret_names() == ["test-broker-client"]
    assert broker.sqs.get_queue_url(QueueName="broker-events")["QueueUrl"] == broker.event_queue
    assert setup_client("kms").describe_key(KeyId=names["BROKER_KMS_KEY_ID"])["KeyMetadata"]["Enabled"]


NAMES = {"#a": "a", "#b": "b", "#n": "n", **{f"#x{i}": f"x{i}" for i in range(40)}}
MANY = ", ".join(f"#x{i} = :v" for i in range(40))

EXPRESSIONS = [
    "SET #a = :v, #b = :v",
    "SET #a = :v, #b = :v REMOVE #n",
    "SET #a = if_not_exists(#a, :v), #n = :one ADD #b :one",
    "SET #a = :v, #a = :v",  # the same path twice
    "SET a.b = :v, a = :v",  # overlapping paths
    "SET #a = :v, #b = :v REMOVE #a",  # the same path in two sections
    "SET #a = :v SET #b = :v",  # a section twice
    "REMOVE #a REMOVE #b",
    "ADD #n :one ADD #n :one",
    "SET #a = :v + :one",  # a type mismatch
    "SET #a = :missing",
    f"SET {MANY}",
    f"SET {MANY}, #x7 = :v",
]


@pytest.fixture
def motos_own(monkeypatch):
    """Put moto's own code back, for the rest of the test."""

    def restore():
        for (owner, name), original in moto_speed.ORIGINALS.items():
            monkeypatch.setattr(owner, name, original)

    return restore


def update(dynamodb, expression: str):
    names = {k: v for k, v in NAMES.items() if k in expression}
    values = {k: v for k, v in {":v": {"S": "v"}, ":one": {"N": "1"}}.items() if k in expression}
    try:
        dynamodb.update_item(
            TableName="Speed",
            Key={"k": {"S": "item"}},
            UpdateExpression=expression,
            **({"ExpressionAttributeNames": names} if names else {}),
            **({"ExpressionAttributeValues": values} if values else {}),
        )
    except ClientError as refused:
        return refused.response["Error"]
    return dynamodb.get_item(TableName="Speed", Key={"k": {"S": "item"}})["Item"]


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_an_update_expression_gets_moto_s_own_answer(moto, motos_own, expression):
    dynamodb = table_keyed_by_k("Speed")
    ours = [update(dynamodb, expression) for _ in range(2)]  # the second on an existing item, parsed before
    dynamodb.delete_item(TableName="Speed", Key={"k": {"S": "item"}})
    motos_own()
    assert [update(dynamodb, expression) for _ in range(2)] == ours


def test_an_event_reaches_a_queue_as_moto_s_own_code_delivers_it(moto, motos_own):
    sqs, events = setup_client("sqs"), setup_client("events")
    queue = sqs.create_queue(QueueName="speed")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="speed", EventPattern=json.dumps({"source": ["speed"]}))
    transformed = {
        "InputPathsMap": {"who": "$.detail.who", "kind": "$.detail-type"},
        "InputTemplate": '"<who>: <kind>"',
    }
    events.put_targets(
        Rule="speed",
        Targets=[{"Id": "whole", "Arn": arn}, {"Id": "transformed", "Arn": arn, "InputTransformer": transformed}],
    )

    def delivered() -> list:
        events.put_events(Entries=[{"Source": "speed", "DetailType": "Ran", "Detail": json.dumps({"who": "alice"})}])
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
        for message in messages:
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        bodies = [json.loads(m["Body"]) for m in messages]
        return sorted(
            (json.dumps({k: v for k, v in b.items() if k not in ("id", "time")}) if isinstance(b, dict) else b)
            for b in bodies
        )

    ours = delivered()
    assert len(ours) == 2
    assert "alice: Ran" in ours
    motos_own()
    assert delivered() == ours


def test_every_handler_of_a_new_session_and_client_is_checked_as_botocore_checks_it():
    session = boto3.Session(region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b")
    client = session.client("dynamodb")
    original = botocore_speed.ORIGINALS[(botocore.hooks, "accepts_kwargs")]
    handlers = [
        handler
        for emitter in (session._session._events._emitter, client.meta.events._emitter)
        for handler in _handlers_under(emitter._handlers._root)  # a prefix trie
    ]
    assert len(handlers) > 100
    assert [botocore.hooks.accepts_kwargs(h) for h in handlers] == [original(h) for h in handlers]

    def no_kwargs(model):
        return None

    with pytest.raises(ValueError, match="must accept keyword arguments"):
        client.meta.events.register("before-call.dynamodb.GetItem", no_kwargs)


def _handlers_under(node: dict) -> list:
    found = [*node["values"].first, *node["values"].middle, *node["values"].last] if node.get("values") else []
    for child in node.get("children", {}).values():
        found += _handlers_under(child)
    return found


def test_every_event_name_is_aliased_as_a_new_aliaser_of_botocore_s_own_aliases_it():
    boto3.Session(region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b").client("secretsmanager")
    names = list(botocore_speed._aliases)
    assert len(names) > 50
    fresh = botocore.hooks.EventAliaser.__new__(botocore.hooks.EventAliaser)
    botocore_speed.ORIGINALS[(botocore.hooks.EventAliaser, "__init__")](fresh, botocore.hooks.HierarchicalEmitter())
    assert [fresh._alias_event_name(n) for n in names] == [botocore_speed._aliases[n] for n in names]
