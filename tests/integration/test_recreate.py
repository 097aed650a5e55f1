"""A stack deleted and created again under the same name: new roles (CloudFormation names them
`<stack>-<LogicalId>-<random>`), new keys and a new connections table, the same secrets. `adopt`, then
the scheduled refresh works with no key policy edited by hand, because the retained broker key trusts
the stack's role path, not the old roles' ARNs. A stack deployed before the role path gets there by an
update; one deleted without it is found by doctor, which says what to do."""

import json
import os

import boto3
import pytest

from devstack import function_roles, iam
from devstack.lambda_runtime import LambdaContext
from devstack.policy import Principal
from devstack.template import create_tables
from tests.support.broker import CLIENT_ID, CLIENT_SECRET, OPERATOR, PREFIX, create_broker_key, reset_broker_caches
from tests.support.operator import LocalAdmin
from tests.support.people import ALICE
from webex_broker.adapters.secret_store import same_key

ACCOUNT = "123456789012"


def key_policy(key: str) -> dict:
    return json.loads(boto3.client("kms", **OPERATOR).get_key_policy(KeyId=key, PolicyName="default")["Policy"])


def put_key_policy(key: str, policy: dict) -> None:
    boto3.client("kms", **OPERATOR).put_key_policy(KeyId=key, PolicyName="default", Policy=json.dumps(policy))


def naming_each_role(policy: dict) -> dict:
    """The broker key's policy as the template wrote it before the role path: each function's role by
    its ARN (`!GetAtt <Fn>Role.Arn`), the roles not yet on a path."""
    functions = next(s for s in policy["Statement"] if s["Sid"] == "BrokerFunctionsUseItThroughSecretsManager")
    arns = sorted(role.arn for role in function_roles.roles(PREFIX).values())
    del functions["Condition"]["ArnLike"]
    functions["Condition"]["StringEquals"]["aws:PrincipalArn"] = arns
    return policy


@pytest.fixture
def new_roles():
    """From now on the functions sign as the roles a re-created stack gets: the same path, new names."""

    def recreate() -> None:
        for role in function_roles.roles(PREFIX).values():
            arn = role.arn.rsplit("-", 1)[0] + "-R3CR3AT3D0A1"
            policy = lambda role=role: function_roles.statements(role, os.environ)  # noqa: E731
            iam.register(role.credentials.access_key, iam.Identity(Principal(arn, ACCOUNT), role.function, policy))

    yield recreate
    function_roles.install(PREFIX)  # the first stack's roles again, for the tests after this one


def recreate_stack(monkeypatch, new_roles) -> str:
    """`sam delete` then `sam deploy` under the same name: the keys, the connections table and every
    secret outlive the first stack; the second has new roles, new keys and a new, empty table. The
    client secret is the operator's own (ExistingClientSecretArn), sealed by the first stack."""
    old_key = os.environ["BROKER_KMS_KEY_ID"]
    new_roles()
    create_tables(boto3.client("dynamodb"), names={"ConnectionsTable": "ConnectionsTable2"})
    monkeypatch.setenv("CONNECTIONS_TABLE", "ConnectionsTable2")
    monkeypatch.setenv("BROKER_KMS_KEY_ID", create_broker_key())
    reset_broker_caches()
    return old_key


def adopt_and_refresh(broker) -> dict:
    """What the operator runs after the re-create, then the next scheduled run."""
    from refresher import handler
    from webex_broker.flows.adoption import adopt, orphans
    from webex_broker.flows.broker import current

    this = current()
    assert orphans(this.names, this.connections) == [ALICE]
    assert adopt(ALICE, this.names, this.connections, login_base_url="https://broker.example", now=0)
    return handler(broker.event("refresher"), LambdaContext(function_name="RefresherFunction", timeout_seconds=900))


def sealed_under(name: str) -> str:
    return boto3.client("secretsmanager").describe_secret(SecretId=name)["KmsKeyId"]


@pytest.fixture
def connected(broker):
    """The first stack, its client secret sealed by set-credentials, and Alice connected through it."""
    from admin import handler

    request = {"action": "set_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    assert handler(request, LambdaContext(function_name="AdminFunction"))["ok"]
    broker.webex.same_token_window = 0
    assert broker.login(ALICE)["statusCode"] == 200
    return broker


def test_a_recreated_stack_adopts_and_refreshes_with_no_key_policy_edit(connected, monkeypatch, new_roles):
    old_key = recreate_stack(monkeypatch, new_roles)

    run = adopt_and_refresh(connected)

    assert run["outcomes"] == {"refreshed": 1}, "the retained key trusts the new roles, by their path"
    refresh_secret = f"{PREFIX}/refresh/{ALICE}"
    assert same_key(sealed_under(refresh_secret), os.environ["BROKER_KMS_KEY_ID"]), "sealed under the new key"
    assert same_key(sealed_under(os.environ["CLIENT_SECRET_ARN"]), old_key), "your own client secret still works"
    assert connected.connection(ALICE)["status"] == "active"


def test_a_stack_deployed_before_the_role_path_and_updated_first_survives_a_recreate(connected, monkeypatch, new_roles):
    key = os.environ["BROKER_KMS_KEY_ID"]
    current = key_policy(key)
    put_key_policy(key, naming_each_role(key_policy(key)))  # as deployed before the role path
    put_key_policy(key, current)  # `sam deploy` of this template: CloudFormation puts the new policy

    recreate_stack(monkeypatch, new_roles)

    assert adopt_and_refresh(connected)["outcomes"] == {"refreshed": 1}


def test_a_stack_deleted_before_the_update_is_found_by_doctor_and_mended_as_the_docs_say(
    connected, monkeypatch, new_roles
):
    from webex_broker.flows.broker import current
    from webex_broker_admin.doctor import _sealed_secrets

    old_key = os.environ["BROKER_KMS_KEY_ID"]
    template_policy = key_policy(old_key)
    put_key_policy(old_key, naming_each_role(key_policy(old_key)))
    recreate_stack(monkeypatch, new_roles)

    run = adopt_and_refresh(connected)
    assert run["outcomes"] == {"denied": 1}, "a refusal, named: never an outage retried forever"
    reset_broker_caches()
    checks = {c.name: c for c in _sealed_secrets(LocalAdmin(), current())}
    assert checks["sealed secrets"].result == "FAIL", "still under the old key"
    assert checks["decryptable"].result == "FAIL"
    assert checks["decryptable"].detail.endswith(f"{PREFIX}/refresh/{ALICE}")
    assert old_key in checks["decryptable"].fix

    # docs/deploying.md: put the template's statement for this stack into the old key's policy, then converge
    statement = next(s for s in template_policy["Statement"] if s["Sid"] == "BrokerFunctionsUseItThroughSecretsManager")
    mended = key_policy(old_key)
    mended["Statement"] = [s for s in mended["Statement"] if s["Sid"] != statement["Sid"]] + [statement]
    put_key_policy(old_key, mended)
    converge = LocalAdmin().invoke("AdminFunction", {"action": "converge"})
    assert converge["results"] == {ALICE: "converged"}
    reset_broker_caches()
    assert [c.result for c in _sealed_secrets(LocalAdmin(), current())] == ["ok"]
