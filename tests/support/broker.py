"""The broker as the integration tier drives it: its stack's names, its environment, and a harness
that calls the handlers the way API Gateway and the scheduler would."""

import copy
import functools
import json
import os
import time
from urllib.parse import parse_qs, urlsplit

import boto3
import requests

from devstack import function_roles
from devstack.lambda_runtime import LambdaContext, cold_start
from devstack.template import LocalResolver, create_key
from devstack.webex_simulator import WebexSimulator
from tests.support.paths import ROOT

EVENTS = ROOT / "events"
CLIENT_ID = "C0ffee-test-client"
CLIENT_SECRET = "s3cr3t-client-value-never-shown"
API_DOMAIN = "abc123.execute-api.us-east-1.amazonaws.com"
CALLBACK_URL = f"https://{API_DOMAIN}/callback"
PREFIX = "test-broker"  # the stack's name, and its secrets' prefix
# The tests' own AWS identity ("testing": setup, and the tests that call flows directly) is a role on the
# stack's role path, which the broker key trusts and IAM does not check; OPERATOR is an account
# administrator, whom the broker key does not trust.
OPERATOR = {"aws_access_key_id": "operator", "aws_secret_access_key": "operator"}

BROKER_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "STATE_TABLE": "StateTable",
    "CONNECTIONS_TABLE": "ConnectionsTable",
    "INVITATIONS_TABLE": "InvitationsTable",
    # Most suites test the OAuth flow itself; tests/integration/test_access.py covers invite mode (the default).
    "ACCESS_MODE": "open",
    "OPEN_TO_ANY_WEBEX_ACCOUNT": "true",
    "SECRET_PREFIX": PREFIX,
    "WEBEX_SCOPES": "spark:kms spark:people_read",
    "PUBLIC_BASE_URL": "",
    "STATE_TTL_SECONDS": "600",
    "REFRESH_WINDOW_HOURS": "48",
    "WEBEX_TIMEOUT_SECONDS": "2",
    "POWERTOOLS_SERVICE_NAME": "webex-token-broker",
    "POWERTOOLS_DEV": "false",
    "ALLOW_DEVELOPMENT_WEBEX_URL": "true",  # the simulator on loopback stands in for Webex
    # Suites step Webex's clock, not the broker's, and count on 1-hour tokens being due at every (hourly)
    # run: tests/test_no_lapse.py runs the defaults (10-minute runs, AWS's write floor) on a moving clock.
    "REFRESH_INTERVAL_MINUTES": "60",
    "SECRET_WRITE_FLOOR_SECONDS": "0",
}


def rotation_function(arn: str, event: dict) -> object:
    """What the local AWS's RotateSecret invokes (devstack/rotation.py): the rotation function's handler."""
    from rotation import handler

    return handler(event, LambdaContext(function_name="RotationFunction", timeout_seconds=60))


def reset_broker_caches() -> None:
    """Settings, boto3 clients and the cached client secret live for a warm Lambda; tests start cold."""
    cold_start()


@functools.cache
def setup_client(service: str):
    """The harness's own client for a service, made once per worker: its setup calls need no cold
    start (the broker's clients, made by the handlers, stay new in every test)."""
    return boto3.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        aws_session_token="testing",
        region_name="us-east-1",
    ).client(service)


def table_keyed_by_k(name: str):
    """A table of the harness's own (key attribute `k`, a string) for tests of the local DynamoDB itself."""
    dynamodb = setup_client("dynamodb")
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return dynamodb


def create_broker_key() -> str:
    """The template's BrokerKey, trusting the roles on this stack's role path: the functions' and the tests'."""
    resolver = LocalResolver(parameters={}, resources=function_roles.arn_values(PREFIX), stack_name=PREFIX)
    return create_key(setup_client("kms"), resolver, "BrokerKey")


def route_events_to_queue() -> str:
    """A rule that sends every event the stack publishes on the default bus to a queue: the queue's URL."""
    sqs = setup_client("sqs")
    queue = sqs.create_queue(QueueName="broker-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events = setup_client("events")
    every_stack = {"source": [{"prefix": "webex-token-broker."}]}
    events.put_rule(Name="all-broker-events", EventPattern=json.dumps(every_stack))
    events.put_targets(Rule="all-broker-events", Targets=[{"Id": "queue", "Arn": queue_arn}])
    return queue


class Broker:
    """Drives the three handlers the way API Gateway and the scheduler would."""

    def __init__(self, webex: WebexSimulator, event_queue: str):
        self.webex = webex
        self.event_queue = event_queue  # where route_events_to_queue sends the stack's events
        self.browser: dict[str, str] = {}  # the cookies a browser would keep between authorize and callback
        self.secrets = setup_client("secretsmanager")
        self.dynamodb = setup_client("dynamodb")
        self.sqs = setup_client("sqs")

    def event(self, name: str, query: dict | None = None) -> dict:
        """A sample event from events/, carrying this browser's cookies (none if it has none)."""
        event = copy.deepcopy(json.loads((EVENTS / f"{name}.json").read_text()))
        event.pop("cookies", None)
        if self.browser:
            event["cookies"] = [f"{k}={v}" for k, v in self.browser.items()]
        if query is None:
            return event
        event["queryStringParameters"] = query
        event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in query.items())
        return event

    def keep_cookies(self, response: dict) -> dict:
        for cookie in response.get("cookies") or []:
            name, _, value = cookie.partition(";")[0].partition("=")
            self.browser[name] = value
        return response

    def authorize(self, invite: str | None = None) -> dict:
        from authorize import handler

        event = self.event("authorize", {"invite": invite} if invite else None)
        return self.keep_cookies(handler(event, LambdaContext()))

    def invite(self, connection: str, *, email: str | None = None, uses: int = 1, ttl: int = 7 * 86400) -> str:
        """What `webex-broker invite` does; returns the token the link carries."""
        from webex_broker.adapters.invitations import InvitationStore

        _, token = InvitationStore("InvitationsTable").create(
            connection, email=email, ttl_seconds=ttl, max_uses=uses, now=int(time.time())
        )
        return token

    def callback(self, query: dict, *, follow: bool = True) -> dict:
        """The callback; like a browser, follow its 303 to the result page unless told not to."""
        from callback import handler

        response = handler(self.event("callback", query), LambdaContext())
        if follow and response["statusCode"] == 303:
            return self.result_page(response["headers"]["Location"])
        return response

    def result_page(self, location: str) -> dict:
        from callback import handler

        assert location.startswith(f"https://{API_DOMAIN}/connected?r="), location
        event = self.event("connected", {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()})
        return handler(event, LambdaContext())

    def refresh(self) -> dict:
        from refresher import handler

        return handler(self.event("refresher"), LambdaContext(function_name="refresher", timeout_seconds=900))

    def consent(self, location: str, *, person: str = "alice@example.com", decision: str = "allow") -> dict:
        """Play the person on Webex's consent page; returns the query Webex redirects back with."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        page = requests.get(location, timeout=5)
        assert page.status_code == 200, page.text
        answer = requests.post(
            f"{self.webex.url}/authorize/decision",
            data={**query, "person": person, "decision": decision},
            allow_redirects=False,
            timeout=5,
        )
        assert answer.status_code == 302, answer.text
        back = answer.headers["Location"]
        assert back.startswith(query["redirect_uri"])
        return {k: v[0] for k, v in parse_qs(urlsplit(back).query).items()}

    def login(self, person: str = "alice@example.com", *, invite: str | None = None) -> dict:
        """authorize → consent → callback; returns the callback's response."""
        start = self.authorize(invite)
        assert start["statusCode"] == 302, start["body"]
        return self.callback(self.consent(start["headers"]["Location"], person=person))

    def secret(self, name: str) -> dict:
        return json.loads(self.secrets.get_secret_value(SecretId=name)["SecretString"])

    def versions(self, name: str) -> int:
        return len(self.secrets.list_secret_version_ids(SecretId=name, IncludeDeprecated=True)["Versions"])

    def connection(self, name: str) -> dict | None:
        """The row as stored (attribute names and all): what the tests check the store against."""
        from webex_broker.adapters import aws

        return aws.get_item(os.environ["CONNECTIONS_TABLE"], "connection", name)

    def events(self) -> list[dict]:
        """Events the broker published on the default bus (a rule routes them to a queue)."""
        messages = []
        while batch := self.sqs.receive_message(QueueUrl=self.event_queue, MaxNumberOfMessages=10).get("Messages"):
            messages += [json.loads(m["Body"]) for m in batch]
            self.sqs.delete_message_batch(
                QueueUrl=self.event_queue,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
            )
        return messages

    def secret_names(self) -> list[str]:
        return sorted(s["Name"] for s in self.secrets.list_secrets()["SecretList"])


def count_aws_calls():
    """Counts every AWS API call the broker's current clients make, by operation name (new clients,
    after a settings change, need a new count)."""
    from collections import Counter

    from webex_broker.adapters import aws

    calls = Counter()
    for service in ("dynamodb", "secretsmanager", "events"):
        aws.client(service).meta.events.register("before-call.*.*", lambda model, **_: calls.update([model.name]))
    return calls


def other_browser(broker) -> Broker:
    """Another person's browser: same broker, its own cookies."""
    other = Broker.__new__(Broker)
    other.__dict__.update(broker.__dict__)
    other.browser = {}
    return other
