"""What a first deploy, a redeploy and a second stack meet, read from template.yaml itself."""

import re

import pytest

from devstack.template import LocalResolver, function_definitions, load_template
from webex_broker.core.settings import _events_source as events_source

TEMPLATE = load_template()
PARAMETERS = TEMPLATE["Parameters"]
RESOURCES = TEMPLATE["Resources"]
OWN_NAME = "POWERTOOLS_SERVICE_NAME"
HTTP_API_TIMEOUT_SECONDS = 30  # the most an HTTP API integration waits for a function


def resolver(stack: str = "broker-a", **parameters: str) -> LocalResolver:
    return LocalResolver(parameters=parameters, resources={}, stack_name=stack)


def allowed(name: str, value: str) -> bool:
    spec = PARAMETERS[name]
    return re.fullmatch(spec["AllowedPattern"], value) is not None and len(value) <= spec.get("MaxLength", 10**6)


def test_the_first_deploy_reserves_no_concurrency_unless_asked():
    """A reservation of 1 fails on accounts whose concurrency quota is 10."""
    props = RESOURCES["RefresherFunction"]["Properties"]
    assert resolver().resolve(props["ReservedConcurrentExecutions"]) is None
    assert resolver(RefresherReservedConcurrency="1").resolve(props["ReservedConcurrentExecutions"]) == "1"
    assert not allowed("RefresherReservedConcurrency", "0")


def test_a_failed_first_create_leaves_no_orphan_table_and_a_delete_keeps_the_connections():
    table = RESOURCES["ConnectionsTable"]
    assert (table["DeletionPolicy"], table["UpdateReplacePolicy"]) == ("RetainExceptOnCreate", "Retain")


def test_a_guided_deploy_asks_nothing_hidden_and_needs_no_placeholder():
    """SAM CLI asks NoEcho parameters with hidden input and repeats the question on an empty answer."""
    assert [n for n, p in PARAMETERS.items() if p.get("NoEcho")] == []
    assert [n for n, p in PARAMETERS.items() if "Default" not in p] == [], "Enter accepts every default"


def test_no_deploy_can_overwrite_a_client_secret_set_after_it():
    """The stack creates the secret empty, from a constant: CloudFormation never has a reason to write it again."""
    assert RESOURCES["ClientSecret"]["Properties"]["SecretString"] == "{}"
    assert "WebexClientSecret" not in PARAMETERS
    assert "WebexClientId" not in PARAMETERS


def test_two_stacks_in_one_account_keep_their_metrics_events_and_layers_apart():
    env = {}
    for stack in ("broker-a", "broker-b"):
        r = resolver(stack)
        globals_env = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
        service = r.resolve(globals_env["POWERTOOLS_SERVICE_NAME"])
        overridden = [f for f, p in function_definitions().items() if "Environment" in p and OWN_NAME in str(p)]
        assert not overridden, "every function has the stack's service name, and so its events' source"
        alarms = [
            r.resolve(res["Properties"]["Dimensions"])
            for res in RESOURCES.values()
            if res["Type"] == "AWS::CloudWatch::Alarm" and res["Properties"].get("Namespace") == "WebexTokenBroker"
        ]
        assert alarms, "the broker's own alarms"
        assert all(d == [{"Name": "service", "Value": service}] for d in alarms), "each alarm sees its stack only"
        source = events_source({OWN_NAME: service})
        env[stack] = (service, source, r.resolve(RESOURCES["SharedLayer"]["Properties"]["LayerName"]))
    a, b = env["broker-a"], env["broker-b"]
    assert all(x != y for x, y in zip(a, b, strict=True)), f"service, event source and layer differ: {a} {b}"
    assert a[1].startswith("webex-token-broker"), "one prefix rule matches every stack's events"


@pytest.mark.parametrize(
    ("value", "ok"),
    [("", True), ("broker", True), ("team/broker", True), ("/broker", False), ("broker/", False), ("a b", False)],
)
def test_a_secret_prefix_the_code_would_change_is_refused_at_deploy(value, ok):
    assert allowed("SecretPrefix", value) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("", True),
        ("arn:aws:secretsmanager:eu-west-1:123456789012:secret:webex/client-AbC123", True),
        ("arn:aws:secretsmanager:eu-west-1:123456789012:secret:webex/client", False),
        ("arn:aws:secretsmanager:eu-west-1:123456789012:secret:webex/client-AbC12", False),
    ],
)
def test_an_existing_client_secret_must_be_named_by_its_full_arn(value, ok):
    """Without the 6-character suffix IAM's Resource matches nothing and the read is denied."""
    assert allowed("ExistingClientSecretArn", value) is ok


def test_the_callback_has_time_for_two_slow_webex_calls_and_its_writes():
    """The person must always get a page, not API Gateway's raw error after the state was consumed."""
    from webex_broker.adapters.webex import WebexClient

    call = WebexClient("https://x", None, timeout=8.0).longest_call_seconds  # connecting included
    writes = 6  # state, claim, lease, two secrets, row, use, result: a few hundred ms each at worst
    timeout = RESOURCES["CallbackFunction"]["Properties"]["Timeout"]
    assert 2 * call + writes <= timeout < HTTP_API_TIMEOUT_SECONDS
