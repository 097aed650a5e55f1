"""Shared fixtures: moto for AWS (tables built from template.yaml), the Webex simulator on loopback."""

import copy
import functools
import io
import json
import logging
import os
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import botocore.session
import pytest
import requests
from moto import mock_aws
from moto.server import ThreadedMotoServer

from devstack import aws_fidelity, aws_limits, function_roles
from devstack.lambda_runtime import LambdaContext, cold_start, sign_handlers_as_roles
from devstack.template import LocalResolver, create_key, create_tables
from devstack.webex_simulator import WebexSimulator

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
CLIENT_ID = "C0ffee-test-client"
CLIENT_SECRET = "s3cr3t-client-value-never-shown"
API_DOMAIN = "abc123.execute-api.us-east-1.amazonaws.com"
CALLBACK_URL = f"https://{API_DOMAIN}/callback"
PREFIX = "test-broker"  # the stack's name, and its secrets' prefix

aws_fidelity.apply()
# Every test starts cold (new boto3 clients, as a new Lambda container would), but the service models
# those clients read never change: one loader for the whole run parses each of them once.
botocore.session.create_loader = functools.cache(botocore.session.create_loader)
# Each handler signs as its function's role, which the local AWS holds to its statements in the template.
# The tests' own AWS identity ("testing": setup, and the tests that call flows directly) is a role on the
# stack's role path, which the broker key trusts and IAM does not check; OPERATOR is an account
# administrator, whom the broker key does not trust.
function_roles.install(PREFIX)
function_roles.register_setup_role("testing", PREFIX, f"{PREFIX}-tests")
OPERATOR = {"aws_access_key_id": "operator", "aws_secret_access_key": "operator"}
aws_limits.install()  # every AWS call is refused where AWS would refuse it, not only where moto does

BROKER_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "STATE_TABLE": "StateTable",
    "CONNECTIONS_TABLE": "ConnectionsTable",
    "INVITATIONS_TABLE": "InvitationsTable",
    # Most suites test the OAuth flow itself; tests/test_access.py covers invite mode (the default).
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


def reset_broker_caches() -> None:
    """Settings, boto3 clients and the cached client secret live for a warm Lambda; tests start cold."""
    cold_start()


class Clock:
    """Webex's clock, which tests move forward to cross the 24-hour and expiry boundaries."""

    def __init__(self):
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def webex_clock():
    return Clock()


@pytest.fixture
def webex(webex_clock):
    """The Webex simulator, served on a free loopback port, with the broker's integration registered."""
    sim = WebexSimulator(clock=webex_clock)
    sim.register_client(
        CLIENT_ID, CLIENT_SECRET, [CALLBACK_URL], scopes=["spark:kms", "spark:people_read", "spark:all"]
    )
    with sim.serve() as server:
        sim.url = server.url
        yield sim


@pytest.fixture
def broker(monkeypatch, webex):
    """A fresh broker environment: moto AWS with the template's tables and the client secret."""
    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in BROKER_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("WEBEX_API_BASE_URL", webex.url)
    with mock_aws(config={"core": {"mock_credentials": False}}):  # calls signed as "testing", or a function's role
        create_tables(boto3.client("dynamodb"))
        from webex_broker.adapters.client_credentials import CLIENT_ID_TAG

        arn = boto3.client("secretsmanager").create_secret(
            Name="test-broker-client",
            SecretString=json.dumps({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}),
            Tags=[{"Key": CLIENT_ID_TAG, "Value": CLIENT_ID}],
        )["ARN"]
        monkeypatch.setenv("CLIENT_SECRET_ARN", arn)
        monkeypatch.setenv("BROKER_KMS_KEY_ID", create_broker_key())
        reset_broker_caches()
        sign_handlers_as_roles()  # imported with the broker's environment, as a Lambda imports them
        yield Broker(webex)
    reset_broker_caches()


@pytest.fixture
def moto_server():
    """moto as `make run` serves it, on a free loopback port: its URL. Its backends are this process's,
    reset afterwards."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    yield url
    requests.post(f"{url}/moto-api/reset", timeout=5)
    server.stop()


def create_broker_key() -> str:
    """The template's BrokerKey, trusting the roles on this stack's role path: the functions' and the tests'."""
    resolver = LocalResolver(parameters={}, resources=function_roles.arn_values(PREFIX), stack_name=PREFIX)
    return create_key(boto3.client("kms"), resolver, "BrokerKey")


class Broker:
    """Drives the three handlers the way API Gateway and the scheduler would."""

    def __init__(self, webex: WebexSimulator):
        self.webex = webex
        self.browser: dict[str, str] = {}  # the cookies a browser would keep between authorize and callback
        self.secrets = boto3.client("secretsmanager")
        self.dynamodb = boto3.client("dynamodb")
        self.sqs = boto3.client("sqs")
        self.event_queue = self.sqs.create_queue(QueueName="broker-events")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.event_queue, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        events = boto3.client("events")
        every_stack = {"source": [{"prefix": "webex-token-broker."}]}
        events.put_rule(Name="all-broker-events", EventPattern=json.dumps(every_stack))
        events.put_targets(Rule="all-broker-events", Targets=[{"Id": "queue", "Arn": queue_arn}])

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


@pytest.fixture
def aws_calls(broker):
    """Counts every AWS API call the broker makes, by operation name."""
    return count_aws_calls()


@pytest.fixture
def broker_log():
    """Every structured line the broker's logger writes, extra keys included, as Lambda would see it."""
    from webex_broker.core.observability import logger

    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logger.registered_formatter)
    std = logging.getLogger(logger.name)
    std.addHandler(handler)
    yield buffer
    std.removeHandler(handler)
