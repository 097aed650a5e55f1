"""The suite's moto checks an update expression once, at its root (tests/support/moto_speed.py): it must
accept and refuse exactly what moto's own nested checks do, with the same error."""

import pytest
from botocore.exceptions import ClientError
from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser
from moto.dynamodb.parsing.validators import ActionCountValidator, OverlappingPathsValidator

from tests.support.broker import setup_client

NAMES = {"#a": "a", "#b": "b", "#n": "n"}
MANY = ", ".join(f"#x{i} = :v" for i in range(40))

EXPRESSIONS = [
    "SET #a = :v, #b = :v",
    "SET #a = :v, #b = :v REMOVE #n",
    "SET #a = :v, #a = :v",  # the same path twice
    "SET a.b = :v, a = :v",  # overlapping paths
    "SET #a = :v, #b = :v REMOVE #a",  # the same path in two sections
    "SET #a = :v SET #b = :v",  # a section twice
    "REMOVE #a REMOVE #b",
    "ADD #n :one ADD #n :one",
    f"SET {MANY}",
    f"SET {MANY}, #x7 = :v",
]


def outcome(dynamodb, expression: str):
    names = {k: v for k, v in {**NAMES, **{f"#x{i}": f"x{i}" for i in range(40)}}.items() if k in expression}
    values = {k: v for k, v in {":v": {"S": "v"}, ":one": {"N": "1"}}.items() if k in expression}
    try:
        dynamodb.update_item(
            TableName="Speed",
            Key={"k": {"S": expression}},
            UpdateExpression=expression,
            **({"ExpressionAttributeNames": names} if names else {}),
            ExpressionAttributeValues=values,
        )
    except ClientError as refused:
        return refused.response["Error"]
    return dynamodb.get_item(TableName="Speed", Key={"k": {"S": expression}})["Item"]


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_an_update_expression_checked_at_its_root_gets_moto_s_own_answer(moto, monkeypatch, expression):
    dynamodb = setup_client("dynamodb")
    dynamodb.create_table(
        TableName="Speed",
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    ours = outcome(dynamodb, expression)
    dynamodb.delete_item(TableName="Speed", Key={"k": {"S": expression}})
    for checked_everywhere in (ActionCountValidator, OverlappingPathsValidator):
        monkeypatch.setattr(checked_everywhere, "traverse", DepthFirstTraverser.traverse)
    assert outcome(dynamodb, expression) == ours
