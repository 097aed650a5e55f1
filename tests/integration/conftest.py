"""The integration tier: the handlers through moto (tables from template.yaml) and the Webex simulator
on loopback. Both doubles are made once per worker and reset before each test, which therefore starts
as a fresh Lambda container in a fresh account would."""

import functools
import gc
import io
import json
import logging

import boto3
import botocore.session
import pytest
import requests
from moto import mock_aws
from moto.core.base_backend import BackendDict
from moto.core.model_instances import reset_model_data
from moto.core.models import botocore_stubber
from moto.server import ThreadedMotoServer

from devstack import aws_fidelity, aws_limits, function_roles, rotation
from devstack.lambda_runtime import sign_handlers_as_roles
from devstack.template import create_tables
from devstack.webex_simulator import WebexSimulator, serve_wsgi
from tests.support import botocore_speed, moto_speed
from tests.support.aws_snapshot import Snapshot
from tests.support.broker import (
    BROKER_ENV,
    CALLBACK_URL,
    CLIENT_ID,
    CLIENT_SECRET,
    PREFIX,
    Broker,
    count_aws_calls,
    create_broker_key,
    reset_broker_caches,
    rotation_function,
    route_events_to_queue,
    setup_client,
)
from tests.support.clock import Clock
from tests.support.people import HOUR

aws_fidelity.apply()
# moto and botocore answer as before, without the work they repeated unchanged on every call or session.
moto_speed.apply()
botocore_speed.apply()
# Every test starts cold (new boto3 clients, as a new Lambda container would), but the service models
# those clients read never change: one loader for the whole run parses each of them once.
botocore.session.create_loader = functools.cache(botocore.session.create_loader)
# Each handler signs as its function's role, which the local AWS holds to its statements in the template.
function_roles.install(PREFIX)
function_roles.register_setup_role("testing", PREFIX, f"{PREFIX}-tests")
aws_limits.install()  # every AWS call is refused where AWS would refuse it, not only where moto does


def pytest_collection_finish(session: pytest.Session) -> None:
    """Everything imported so far (boto3, moto, the broker) lives for the whole run: the collector need
    not walk it again, and collects less often, since a test's garbage is mostly short-lived dicts."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


@pytest.fixture(scope="session")
def moto_session():
    """moto's mock, started once per worker (calls signed as "testing", or a function's role); it
    answers only while a test holds the `moto` fixture."""
    mock = mock_aws(config={"core": {"mock_credentials": False}})
    mock.start()
    botocore_stubber.enabled = False
    yield
    botocore_stubber.enabled = True
    mock.stop()


@pytest.fixture
def moto(moto_session, monkeypatch):
    """moto for one test, as `with mock_aws()` gave it: empty backends and a new default boto3
    session; emptied again afterwards, so nothing a test made reaches the next."""
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    botocore_stubber.enabled = True
    yield
    botocore_stubber.enabled = False
    BackendDict.reset()
    reset_model_data()


@pytest.fixture
def moto_credentials(monkeypatch, moto):
    """moto as a plain `mock_aws()` gives it: the environment's credentials swapped for its own."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "FOOBARKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "FOOBARSECRET")


class CurrentSimulator:
    """The worker's one loopback server hands each request to the current test's simulator."""

    simulator: WebexSimulator | None = None

    def __call__(self, environ, start_response):
        assert self.simulator is not None, "a request to the Webex simulator between tests"
        return self.simulator.app(environ, start_response)


@pytest.fixture(scope="session")
def webex_server():
    current = CurrentSimulator()
    with serve_wsgi(current) as server:
        yield current, server.url


@pytest.fixture
def webex_clock():
    return Clock()


@pytest.fixture
def webex(webex_server, webex_clock):
    """A new Webex simulator (no registrations, grants, faults, latency or calls; its own clock), served
    on the worker's loopback port, with the broker's integration registered."""
    current, url = webex_server
    sim = WebexSimulator(clock=webex_clock)
    sim.register_client(
        CLIENT_ID, CLIENT_SECRET, [CALLBACK_URL], scopes=["spark:kms", "spark:people_read", "spark:all"]
    )
    sim.url = url
    current.simulator = sim
    yield sim
    current.simulator = None


def _new_stack() -> dict[str, str]:
    """What a deployed stack holds before anyone logs in: the template's tables, the client secret, the
    broker key, and (for the tests) a queue the stack's events reach. The settings that name them."""
    create_tables(setup_client("dynamodb"))
    from webex_broker.adapters.client_credentials import CLIENT_ID_TAG

    arn = setup_client("secretsmanager").create_secret(
        Name="test-broker-client",
        SecretString=json.dumps({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}),
        Tags=[{"Key": CLIENT_ID_TAG, "Value": CLIENT_ID}],
    )["ARN"]
    return {"CLIENT_SECRET_ARN": arn, "BROKER_KMS_KEY_ID": create_broker_key(), "event_queue": route_events_to_queue()}


@pytest.fixture(scope="session")
def new_stack():
    """A new stack for each test: made by AWS calls in the worker's first test, copied back in the others."""
    snapshot: Snapshot | None = None
    names: dict[str, str] = {}

    def new() -> dict[str, str]:
        nonlocal snapshot, names
        if snapshot is None:
            names = _new_stack()
            snapshot = Snapshot()
        else:
            snapshot.restore()
        return names

    return new


@pytest.fixture
def broker(monkeypatch, moto, webex, new_stack):
    """A fresh broker environment: moto AWS with the template's tables and the client secret."""
    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in BROKER_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("WEBEX_API_BASE_URL", webex.url)
    stack = new_stack()
    monkeypatch.setenv("CLIENT_SECRET_ARN", stack["CLIENT_SECRET_ARN"])
    monkeypatch.setenv("BROKER_KMS_KEY_ID", stack["BROKER_KMS_KEY_ID"])
    reset_broker_caches()
    sign_handlers_as_roles()  # imported with the broker's environment, as a Lambda imports them
    rotation.install(rotation_function)  # a stack with a token key turns rotation on with its function
    yield Broker(webex, stack["event_queue"])
    reset_broker_caches()


def _access_mode(broker, monkeypatch, mode: str):
    """The broker in `mode`, without the suite's blanket opening to any Webex account."""
    monkeypatch.setenv("ACCESS_MODE", mode)
    monkeypatch.delenv("OPEN_TO_ANY_WEBEX_ACCOUNT")
    reset_broker_caches()
    return broker


@pytest.fixture
def invite_mode(broker, monkeypatch):
    """The broker in its default access mode: invitation links only."""
    return _access_mode(broker, monkeypatch, "invite")


@pytest.fixture
def open_mode(broker, monkeypatch):
    """Open mode, with no allowlist yet: each test sets the one it checks."""
    return _access_mode(broker, monkeypatch, "open")


@pytest.fixture
def short_lived(broker):
    """Webex deployments that issue 1-hour tokens: due at every run, 24 h rule or not."""
    broker.webex.access_token_ttl = HOUR
    return broker


@pytest.fixture
def no_sleep(monkeypatch):
    """The run's backoff waits are not slept."""
    from webex_broker.flows.refresh import Refresher

    real_init = Refresher.__init__
    monkeypatch.setattr(
        Refresher, "__init__", lambda self, *args, **kw: real_init(self, *args, **{"sleep": lambda _: None, **kw})
    )


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
