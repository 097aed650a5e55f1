"""Each re-authorization request reaches the operator: the stack's two EventBridge rules match the
event the broker really publishes (EventBridge's pattern semantics, as moto evaluates them), and
their input transformers turn it into a readable message to the alarm topic: who, why, and the link
or the command that makes one, never a token."""

import json
import re

import boto3
import pytest

from devstack.template import LocalResolver, load_template
from tests.support.refresh import make_due
from webex_broker.core import observability

RESOURCES = load_template()["Resources"]
RULES = ("ReauthRequestMail", "ReauthRequestMailWithoutLink")
ARNS = {f"{rule}.Arn": f"arn:aws:events:us-east-1:123456789012:rule/{rule}" for rule in RULES}


def resolver(stack: str = observability.SERVICE) -> LocalResolver:
    return LocalResolver(parameters={}, resources={"AlarmTopic": "arn:topic", **ARNS}, stack_name=stack)


def rule(name: str) -> dict:
    return resolver().resolve(RESOURCES[name]["Properties"])


def message(transformer: dict, event: dict) -> str:
    """What EventBridge hands SNS: each variable's JSON path looked up in the event (a KeyError if it
    is not there), put into the template, whose lines are JSON strings."""
    values = {}
    for variable, path in transformer["InputPathsMap"].items():
        node = event
        for key in path.removeprefix("$.").split("."):
            node = node[key]
        values[variable] = node
    text = re.sub(r"<([A-Za-z0-9_-]+)>", lambda m: str(values[m.group(1)]), transformer["InputTemplate"])
    return "\n".join(json.loads(line) for line in text.strip().splitlines())


@pytest.fixture
def mailboxes(broker):
    """Each rule, with the template's pattern, delivering what it matches to a queue of its own."""
    sqs, events = boto3.client("sqs"), boto3.client("events")
    queues = {}
    for name in RULES:
        url = sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name=name, EventPattern=json.dumps(rule(name)["EventPattern"]))
        events.put_targets(Rule=name, Targets=[{"Id": "mail", "Arn": arn}])
        queues[name] = url

    def received(name: str) -> list[dict]:
        answer = sqs.receive_message(QueueUrl=queues[name], MaxNumberOfMessages=10)
        return [json.loads(m["Body"]) for m in answer.get("Messages", [])]

    return received


def dead_grant(broker, *, link: bool) -> dict:
    """Alice's grant dies at Webex; the next run marks her connection and publishes the request."""
    assert broker.login()["statusCode"] == 200
    if not link:  # a row whose login address is unknown: the broker can make no link for it
        broker.dynamodb.update_item(
            TableName="ConnectionsTable",
            Key={"connection": {"S": "alice@example.com"}},
            UpdateExpression="REMOVE login_base_url",
        )
    broker.webex.revoke_grant(person_email="alice@example.com")
    make_due(broker, "alice@example.com")
    assert broker.refresh()["outcomes"] == {"permanent": 1}
    return {
        "access": broker.secret("test-broker/tokens/alice@example.com")["access_token"],
        "refresh": broker.secret("test-broker/refresh/alice@example.com")["refresh_token"],
    }


def test_a_request_with_a_link_is_mailed_with_who_why_and_the_link(broker, mailboxes):
    tokens = dead_grant(broker, link=True)

    [event] = mailboxes("ReauthRequestMail")
    assert mailboxes("ReauthRequestMailWithoutLink") == []
    [target] = rule("ReauthRequestMail")["Targets"]
    text = message(target["InputTransformer"], event)
    detail = event["detail"]
    assert detail["login_url"].startswith("https://")
    assert detail["login_url"] in text.splitlines(), "the link on a line of its own"
    for said in ("Alice Anderson", "alice@example.com", "invalid_grant", f"{observability.SERVICE}:"):
        assert said in text
    assert not any(token in text for token in tokens.values()), "the link, never a token"


def test_a_request_without_a_link_says_how_to_make_one(broker, mailboxes):
    tokens = dead_grant(broker, link=False)

    [event] = mailboxes("ReauthRequestMailWithoutLink")
    assert mailboxes("ReauthRequestMail") == []
    assert "login_url" not in event["detail"]
    [target] = rule("ReauthRequestMailWithoutLink")["Targets"]
    text = message(target["InputTransformer"], event)
    command = f"webex-broker --stack {observability.SERVICE} --region us-east-1 invite alice@example.com"
    assert f"{command} --email alice@example.com" in text
    assert "invalid_grant" in text
    assert not any(token in text for token in tokens.values())


def test_no_other_event_and_no_other_stack_is_mailed(broker, mailboxes):
    own = f"webex-token-broker.{observability.SERVICE}"
    request = {"connection": "x", "login_url": "https://example.com/authorize?invite=x"}
    boto3.client("events").put_events(
        Entries=[
            {"Source": own, "DetailType": "Connection Recovered", "Detail": json.dumps(request)},
            {"Source": "webex-token-broker.other", "DetailType": "Connection Reauthorization Required", "Detail": "{}"},
        ]
    )
    assert mailboxes("ReauthRequestMail") == mailboxes("ReauthRequestMailWithoutLink") == []


def test_only_the_stacks_alarms_and_its_two_rules_may_publish_to_the_topic():
    policy = resolver().resolve(RESOURCES["AlarmTopicPolicy"]["Properties"])
    by_service = {s["Principal"]["Service"]: s for s in policy["PolicyDocument"]["Statement"]}
    assert set(by_service) == {"events.amazonaws.com", "cloudwatch.amazonaws.com"}
    assert sorted(by_service["events.amazonaws.com"]["Condition"]["ArnEquals"]["aws:SourceArn"]) == sorted(
        ARNS.values()
    )
    alarms = by_service["cloudwatch.amazonaws.com"]["Condition"]
    assert alarms["StringEquals"]["aws:SourceAccount"] == "123456789012", "the alarms keep their way to the topic"
    assert all(s["Action"] == "sns:Publish" and s["Resource"] == "arn:topic" for s in by_service.values())
    publishing = {n for n, r in RESOURCES.items() if r["Type"] == "AWS::Events::Rule" and "AlarmTopic" in str(r)}
    assert publishing == set(RULES), "every rule that targets the topic is allowed to, and no other"
