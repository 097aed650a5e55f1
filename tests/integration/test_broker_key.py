"""Refresh tokens and the client secret are sealed under the broker key: only the broker's functions
(and an optional break-glass role) can decrypt them, an account administrator with secretsmanager:*
reads nothing, and the operator's tasks that need them go through the admin function.

The local AWS enforces the key policy for Secrets Manager (devstack/aws_fidelity.py); the policy's
exact principals, actions and conditions are checked here as a document, since AWS alone decides."""

import json
import os
import re

import boto3
import pytest
from botocore.exceptions import ClientError

from devstack import function_roles
from devstack.policy import Principal, Request, evaluate
from devstack.template import LocalResolver, load_template, translated_template
from devstack.template import key_policy as template_key_policy
from tests.support.broker import CLIENT_ID, CLIENT_SECRET, OPERATOR, PREFIX, create_broker_key, reset_broker_caches
from tests.support.operator import admin
from tests.support.people import ALICE
from tests.support.refresh import make_due, refresh_now

TOKEN, REFRESH = f"{PREFIX}/tokens/{ALICE}", f"{PREFIX}/refresh/{ALICE}"
FUNCTIONS = (
    "AuthorizeFunction",
    "CallbackFunction",
    "RefresherFunction",
    "RefreshConnectionFunction",
    "AdminFunction",
    "RotationFunction",
)
BREAK_GLASS = "arn:aws:iam::123456789012:role/webex-broker-break-glass"


def key_policy(**parameters: str) -> list[dict]:
    resolver = LocalResolver(parameters=parameters, resources={}, stack_name="stack")
    return template_key_policy(resolver, "BrokerKey")["Statement"]


def administrator():
    """An account administrator: allowed secretsmanager:* by IAM, not named by the broker key."""
    return boto3.client("secretsmanager", region_name="us-east-1", **OPERATOR)


# --- the key policy, as a document -------------------------------------------------------------------


def test_the_account_administers_the_key_but_cannot_use_it():
    [root] = [s for s in key_policy() if s["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}]
    using = ("kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:GenerateDataKey", "kms:CreateGrant")
    assert not [a for a in root["Action"] if any(a == u or (a.endswith("*") and u.startswith(a[:-1])) for u in using)]
    assert {"kms:PutKeyPolicy", "kms:ScheduleKeyDeletion", "kms:Describe*", "kms:Enable*"} <= set(root["Action"])


def test_only_the_functions_roles_use_it_and_only_through_secrets_manager():
    [users] = [s for s in key_policy() if s["Sid"] == "BrokerFunctionsUseItThroughSecretsManager"]
    assert users["Principal"] == {"AWS": "*"}
    actions = {"kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"}
    assert set(users["Action"]) == actions
    assert users["Condition"] == {
        "StringEquals": {
            "kms:CallerAccount": "123456789012",
            "kms:ViaService": "secretsmanager.us-east-1.amazonaws.com",
        },
        "ArnLike": {"aws:PrincipalArn": "arn:aws:iam::123456789012:role/webex-token-broker/stack/*"},
    }
    assert len(key_policy()) == 2, "no break-glass role unless the parameter names one"


def test_a_break_glass_role_is_added_only_when_given():
    [glass] = [s for s in key_policy(BreakGlassRoleArn=BREAK_GLASS) if "BreakGlass" in s["Sid"]]
    assert glass["Condition"]["StringEquals"]["aws:PrincipalArn"] == BREAK_GLASS
    assert glass["Condition"]["StringEquals"]["kms:ViaService"] == "secretsmanager.us-east-1.amazonaws.com"
    spec = load_template()["Parameters"]["BreakGlassRoleArn"]
    assert re.fullmatch(spec["AllowedPattern"], BREAK_GLASS)
    assert not re.fullmatch(spec["AllowedPattern"], "arn:aws:iam::123456789012:user/alice"), "a role, not a user"


@pytest.mark.parametrize("logical_id", ["BrokerKey", "TokenKey"])
def test_a_key_outlives_the_stack_like_the_secrets_it_seals_but_not_a_failed_first_create(logical_id):
    key = load_template()["Resources"][logical_id]
    assert (key["DeletionPolicy"], key["UpdateReplacePolicy"]) == ("RetainExceptOnCreate", "Retain")
    assert key["Properties"]["EnableKeyRotation"] is True


# --- sealed, in the local AWS ----------------------------------------------------------------------------


def test_an_administrator_reads_neither_refresh_tokens_nor_the_client_secret(broker):
    assert broker.login(ALICE)["statusCode"] == 200
    assert admin({"action": "set_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})["ok"]
    sm = administrator()
    for sealed in (REFRESH, os.environ["CLIENT_SECRET_ARN"]):
        with pytest.raises(ClientError, match="AccessDeniedException"):
            sm.get_secret_value(SecretId=sealed)
        with pytest.raises(ClientError, match="AccessDeniedException"):
            sm.put_secret_value(SecretId=sealed, SecretString="{}")
    assert json.loads(sm.get_secret_value(SecretId=TOKEN)["SecretString"])["access_token"], "workloads still read"
    assert sm.describe_secret(SecretId=REFRESH)["KmsKeyId"] == os.environ["BROKER_KMS_KEY_ID"]


def test_an_old_stack_updated_seals_every_refresh_secret_without_losing_a_token(broker, monkeypatch):
    """Before the broker key: the refresh secret is under the AWS managed key. The update sets the key;
    the next refresh brings the secret under it, and the refresh token is the same one, still working."""
    key = os.environ["BROKER_KMS_KEY_ID"]
    monkeypatch.delenv("BROKER_KMS_KEY_ID")
    reset_broker_caches()
    broker.webex.access_token_ttl = 3600
    broker.webex.same_token_window = 0  # every refresh a new access token
    assert broker.login(ALICE)["statusCode"] == 200
    assert "KmsKeyId" not in broker.secrets.describe_secret(SecretId=REFRESH), "the AWS managed key"
    before = broker.secret(REFRESH)
    assert administrator().get_secret_value(SecretId=REFRESH), "any administrator could read it then"

    monkeypatch.setenv("BROKER_KMS_KEY_ID", key)  # the stack update
    reset_broker_caches()
    make_due(broker, ALICE)
    assert refresh_now()["outcomes"] == {"refreshed": 1}
    assert broker.secrets.describe_secret(SecretId=REFRESH)["KmsKeyId"] == key
    assert broker.secret(REFRESH)["refresh_token"] == before["refresh_token"], "the same grant, nothing lost"
    with pytest.raises(ClientError, match="AccessDeniedException"):
        administrator().get_secret_value(SecretId=REFRESH)
    make_due(broker, ALICE)
    assert refresh_now()["outcomes"] == {"refreshed": 1}, "and it keeps refreshing under the new key"


def test_converge_seals_at_once_and_a_second_run_changes_nothing(broker, monkeypatch):
    key = os.environ["BROKER_KMS_KEY_ID"]
    monkeypatch.delenv("BROKER_KMS_KEY_ID")
    reset_broker_caches()
    assert broker.login(ALICE)["statusCode"] == 200
    monkeypatch.setenv("BROKER_KMS_KEY_ID", key)
    assert admin({"action": "converge"}) == {"ok": True, "results": {ALICE: "converged"}}
    assert broker.secrets.describe_secret(SecretId=REFRESH)["KmsKeyId"] == key
    assert admin({"action": "converge"}) == {"ok": True, "results": {ALICE: "unchanged"}}


def test_switching_broker_keys_keeps_the_refresh_token_readable(broker, monkeypatch):
    assert broker.login(ALICE)["statusCode"] == 200
    before = broker.secret(REFRESH)
    monkeypatch.setenv("BROKER_KMS_KEY_ID", create_broker_key())
    assert admin({"action": "converge"})["results"] == {ALICE: "converged"}
    assert broker.secrets.describe_secret(SecretId=REFRESH)["KmsKeyId"] == os.environ["BROKER_KMS_KEY_ID"]
    assert broker.secret(REFRESH) == before


# --- the admin function ------------------------------------------------------------------------------


def test_set_credentials_moves_the_client_secret_under_the_broker_key(broker):
    arn = os.environ["CLIENT_SECRET_ARN"]
    assert "KmsKeyId" not in broker.secrets.describe_secret(SecretId=arn), "as the stack created it"
    assert admin({"action": "check_credentials"})["result"] == "warn", "readable by an administrator: say so"
    answer = admin({"action": "set_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})
    assert answer["ok"]
    assert CLIENT_SECRET not in json.dumps(answer)
    assert broker.secrets.describe_secret(SecretId=arn)["KmsKeyId"] == os.environ["BROKER_KMS_KEY_ID"]
    assert admin({"action": "check_credentials"}) == {
        "ok": True,
        "result": "ok",
        "detail": f"Webex accepts client ID {CLIENT_ID[:8]}…; sealed under the broker key",
        "fix": "",
    }


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        ({"status": 401, "error": "invalid_client"}, "Webex refused this client ID and secret"),
        ({"status": 401, "shape": "webex", "message": "client secret invalid"}, "Webex refused this client ID"),
        ({"status": 503}, "Could not check them with Webex"),
        ({"status": 429, "retry_after": "1"}, "Could not check them with Webex"),
        ({"latency": 1.0}, "Could not check them with Webex (timeout)"),
    ],
)
def test_credentials_webex_does_not_accept_are_never_stored(broker, monkeypatch, fault, says):
    arn = os.environ["CLIENT_SECRET_ARN"]
    versions = broker.versions(arn)
    monkeypatch.setenv("WEBEX_TIMEOUT_SECONDS", "0.3")
    if "latency" in fault:
        broker.webex.set_latency(fault["latency"], "access_token")
    else:
        broker.webex.inject("access_token", **fault, times=3)
    answer = admin({"action": "set_credentials", "client_id": CLIENT_ID, "client_secret": "a-new-secret-value"})
    assert (answer["ok"], answer["error"]) == (False, "failed")
    assert answer["message"].startswith(says)
    assert "nothing was stored" in answer["message"]
    assert "a-new-secret-value" not in json.dumps(answer)
    assert broker.versions(arn) == versions, "nothing was stored"
    assert broker.secret(arn)["client_secret"] == CLIENT_SECRET


@pytest.mark.parametrize(
    ("event", "error"),
    [
        ({"action": "drop_tables"}, "usage"),
        ({}, "usage"),
        ({"action": "set_credentials", "client_id": CLIENT_ID}, "usage"),
        ({"action": "set_credentials", "client_id": CLIENT_ID, "client_secret": ["x"]}, "usage"),
        ({"action": "add_service_app", "connection": "bot", "org_id": "o", "app_id": "a"}, "usage"),
    ],
)
def test_a_malformed_request_is_refused_and_stores_nothing(broker, event, error):
    names = broker.secret_names()
    answer = admin(event)
    assert (answer["ok"], answer["error"]) == (False, error)
    assert broker.secret_names() == names


def test_a_service_app_through_a_connection_that_does_not_exist_is_not_found(broker):
    event = {"action": "add_service_app", "connection": "bot", "app_id": "Y2lzY29", "client_id": "C1", "org_id": "O1"}
    answer = admin({**event, "client_secret": "app-secret", "via": "nobody"})
    assert (answer["error"], answer["message"]) == ("not_found", "No connection named 'nobody' to mint through.")
    assert "app-secret" not in json.dumps(answer)


def test_every_functions_role_sam_creates_may_use_the_key_and_no_role_gets_kms_rights():
    """The key trusts the path of the roles SAM generates, whatever CloudFormation names them; no role
    gets a KMS statement (the key policy is the only grant, which also keeps the roles and the key free
    of a dependency cycle)."""
    resources = translated_template()["Resources"]
    functions = [n for n, r in resources.items() if r["Type"] == "AWS::Lambda::Function"]
    assert sorted(functions) == sorted(FUNCTIONS)
    roles = function_roles.roles("stack")
    context = {"kms:CallerAccount": "123456789012", "kms:ViaService": "secretsmanager.us-east-1.amazonaws.com"}

    def decrypts(arn: str) -> bool:
        request = Request("kms:Decrypt", "*", Principal(arn, "123456789012"), {**context, "aws:PrincipalArn": arn})
        return evaluate(key_policy(), request).allowed

    for function in FUNCTIONS:
        role = roles[function]
        assert role.arn.startswith("arn:aws:iam::123456789012:role/webex-token-broker/stack/stack-"), role.arn
        assert decrypts(role.arn), f"{function}'s role may use the key"
        assert "kms:" not in json.dumps(resources[role.logical_id]["Properties"]), f"{role.logical_id} needs no KMS"
    assert not decrypts("arn:aws:iam::123456789012:role/webex-token-broker/other-stack/other-stack-AdminFunctionRole-X")
    assert not decrypts("arn:aws:iam::123456789012:role/stack-AdminFunctionRole-X"), "the same name off the path"


# --- doctor reads the live key policy ------------------------------------------------------------------


@pytest.fixture
def doctor_check(broker, monkeypatch):
    """doctor's check of the broker key, for the tests' stack (the template sets POWERTOOLS_SERVICE_NAME
    to the stack's name; the tests' environment keeps the default name for their logs and events)."""
    from webex_broker.flows.broker import current
    from webex_broker_admin.doctor import _broker_key

    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", PREFIX)

    def check():
        reset_broker_caches()
        return _broker_key(current())

    return check


def test_doctor_names_the_roles_that_can_decrypt(doctor_check):
    check = doctor_check()
    assert check.result == "ok", check.detail
    assert check.detail.startswith(f"{os.environ['BROKER_KMS_KEY_ID']} enabled; only ")
    assert f"role/webex-token-broker/{PREFIX}/" in check.detail


def test_doctor_fails_a_policy_edited_to_let_anyone_else_decrypt(doctor_check):
    kms = boto3.client("kms")
    key = os.environ["BROKER_KMS_KEY_ID"]
    policy = json.loads(kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"])
    wide = {"Sid": "Convenience", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}}
    policy["Statement"].append({**wide, "Action": "kms:*", "Resource": "*"})
    kms.put_key_policy(KeyId=key, PolicyName="default", Policy=json.dumps(policy))
    check = doctor_check()
    assert (check.result, check.detail.rsplit(": ", 1)[-1]) == ("FAIL", "Convenience")
    assert "template.yaml" in check.fix


def test_doctor_warns_of_a_grant_and_fails_a_disabled_key(doctor_check):
    kms = boto3.client("kms")
    key = os.environ["BROKER_KMS_KEY_ID"]
    kms.create_grant(KeyId=key, GranteePrincipal="arn:aws:iam::123456789012:role/ci", Operations=["Decrypt"])
    check = doctor_check()
    assert (check.result, check.detail) == ("warn", "grants let these decrypt too: arn:aws:iam::123456789012:role/ci")
    kms.disable_key(KeyId=key)
    check = doctor_check()
    assert (check.result, check.detail) == ("FAIL", f"{key} is Disabled")


def test_doctor_warns_a_stack_without_the_broker_key(doctor_check, monkeypatch):
    monkeypatch.delenv("BROKER_KMS_KEY_ID")
    check = doctor_check()
    assert check.result == "warn"
    assert "AWS managed key" in check.detail


def test_a_translated_template_with_readers_regions_and_break_glass_has_both_keys():
    """What CloudFormation would create, resolved with every sharing parameter set."""
    template = translated_template()
    parameters = {
        "ReaderAccountIds": "111122223333,444455556666",
        "ReaderOrganizationId": "o-a1b2c3d4e5",
        "ReplicaRegions": "eu-west-1,ap-southeast-2",
        "BreakGlassRoleArn": BREAK_GLASS,
    }
    resolver = LocalResolver(parameters=parameters, resources={"TokenKey.Arn": "k"}, stack_name="stack")
    resources = template["Resources"]

    def sids(key: str) -> dict[str, dict]:
        statements = resolver.resolve(resources[key]["Properties"]["KeyPolicy"])["Statement"]
        return {s["Sid"]: s for s in statements if s}

    token, broker = sids("TokenKey"), sids("BrokerKey")
    assert token["ReaderAccountsDecryptThroughSecretsManager"]["Principal"] == {"AWS": ["111122223333", "444455556666"]}
    org = token["ReaderOrganizationDecryptsThroughSecretsManager"]["Condition"]["StringEquals"]
    assert org["aws:PrincipalOrgID"] == "o-a1b2c3d4e5"
    assert set(broker) == {
        "AccountAdministersButCannotUseTheKey",
        "BrokerFunctionsUseItThroughSecretsManager",
        "BreakGlassRoleUsesItThroughSecretsManager",
    }
    assert not any("111122223333" in json.dumps(s) for s in broker.values()), "readers never reach the broker key"
    refresher = resources["RefresherFunction"]["Properties"]["Environment"]["Variables"]
    assert {"TOKEN_KMS_KEY_ID", "BROKER_KMS_KEY_ID", "READER_ACCOUNT_IDS", "REPLICA_REGIONS"} <= set(refresher)
    reader_policy = json.loads(resolver.resolve(template["Outputs"]["CrossAccountReaderPolicy"]["Value"]))
    assert [s["Sid"] for s in reader_policy["Statement"]] == [
        "ReadWebexAccessTokens",
        "DecryptThemThroughSecretsManager",
    ]
