"""Refresh runs as the integration tests start them, and what they read back."""

import json

from devstack.lambda_runtime import LambdaContext
from tests.support.broker import PREFIX
from tests.support.people import ALICE


def tokens(broker, who: str) -> dict:
    return broker.secret(f"{PREFIX}/tokens/{who}")


def material(broker, who: str) -> dict:
    return broker.secret(f"{PREFIX}/refresh/{who}")


def make_due(broker, who: str) -> None:
    broker.dynamodb.update_item(
        TableName="ConnectionsTable",
        Key={"connection": {"S": who}},
        UpdateExpression="SET next_refresh_at = :now",
        ExpressionAttributeValues={":now": {"N": "0"}},
    )


def refreshed_a_day_ago(broker, who: str) -> None:
    """Its last refresh a day back: a rotation asks Webex again instead of keeping a token refreshed
    moments ago."""
    broker.dynamodb.update_item(
        TableName="ConnectionsTable",
        Key={"connection": {"S": who}},
        UpdateExpression="SET refreshed_at = refreshed_at - :day",
        ExpressionAttributeValues={":day": {"N": "86400"}},
    )


def refresher(**kwargs):
    from webex_broker.flows.refresh import Refresher

    return Refresher(**kwargs)


def run(instance, remaining_ms=lambda: 900_000):
    return instance.run(remaining_ms=remaining_ms)


def emf_values(output: str, name: str) -> list[float]:
    values = []
    for line in output.splitlines():
        if '"_aws"' in line and f'"{name}"' in line:
            value = json.loads(line)[name]
            values += value if isinstance(value, list) else [value]
    return values


def refresh_now() -> dict:
    from webex_broker.flows.refresh import Refresher

    return Refresher().run(remaining_ms=lambda: 900_000).summary().as_dict()


def connect(broker, count: int) -> list[str]:
    """`count` connections, each with its own grant (Alice's, through invitations), all due at once."""
    names = [f"team-{i}" for i in range(count)]
    for name in names:
        assert broker.login(ALICE, invite=broker.invite(name))["statusCode"] == 200
    broker.events()
    return names


def invitations(broker) -> int:
    return broker.dynamodb.scan(TableName="InvitationsTable")["Count"]


def refresh_route(broker, name: str) -> tuple[int, dict]:
    from refresh_connection import handler

    event = broker.event("refresh_connection")
    event["pathParameters"] = {"name": name}
    response = handler(event, LambdaContext(function_name="refresh-connection", timeout_seconds=29))
    assert response["headers"]["Content-Type"] == "application/json"
    assert response["headers"]["Cache-Control"] == "no-store"
    return response["statusCode"], json.loads(response["body"])
