"""The local stack is as strict as AWS where the broker depends on it: Lambda's Invoke API on the local
gateway answers (and refuses) as Lambda does, and moto enforces KMS key policies for Secrets Manager,
so an account administrator cannot read what the broker key protects (tests/unit/test_policy.py: the rules
those policies are judged by)."""

import json
import threading

import boto3
import pytest
from botocore.exceptions import ClientError
from werkzeug.serving import make_server

from devstack import iam
from devstack.gateway import LocalGateway
from devstack.policy import Principal

ACCOUNT = "123456789012"
REGION = "us-east-1"
VIA_SECRETS_MANAGER = {"kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com"}
ROLE = f"arn:aws:iam::{ACCOUNT}:role/webex-token-broker/stack/stack-AdminFunctionRole-X"
ROLE_KEY = "broker-fn-key"
ROLE_PATH = f"arn:aws:iam::{ACCOUNT}:role/webex-token-broker/stack/*"
ADMIN_KEY = "AKIAADMINISTRATOR001"  # not registered: the IAM user arn:aws:iam::123456789012:user/AKIA…
VALUE = "refresh-token-value-never-shown"
DENIED = "Access to KMS is not allowed"


def key_policy(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


ADMINISTER = {
    "Sid": "AccountAdministersTheKey",
    "Effect": "Allow",
    "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
    "Action": ["kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*", "kms:Update*", "kms:Get*"],
    "Resource": "*",
}
BROKER_USES = {
    "Sid": "BrokerFunctionsUseIt",
    "Effect": "Allow",
    "Principal": {"AWS": [ROLE]},
    "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey*"],
    "Resource": "*",
    "Condition": {"StringEquals": VIA_SECRETS_MANAGER},
}
BROKER_KEY = key_policy(ADMINISTER, BROKER_USES)


def account_uses(**condition: str) -> dict:
    """The token key's statement: any principal, on conditions."""
    return {
        "Effect": "Allow",
        "Principal": {"AWS": "*"},
        "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"],
        "Resource": "*",
        "Condition": {"StringEquals": {**condition, **VIA_SECRETS_MANAGER}},
    }


def client(service: str, access_key: str, endpoint_url: str | None = None):
    return boto3.client(
        service,
        region_name=REGION,
        aws_access_key_id=access_key,
        aws_secret_access_key="x",
        endpoint_url=endpoint_url,
    )


def code(exc: pytest.ExceptionInfo) -> str:
    return exc.value.response["Error"]["Code"]


def register(access_key: str, arn: str) -> None:
    iam.register(access_key, iam.Identity(Principal(arn, arn.split(":")[4])))


@pytest.fixture
def principals(monkeypatch):
    """The identity registry, empty for the test and forgotten after it."""
    monkeypatch.setattr(iam, "identities", {})
    register(ROLE_KEY, ROLE)
    return iam.identities


@pytest.fixture
def aws(monkeypatch, principals, moto_credentials):
    """moto in-process. Every client names its own access key: the environment's is moto's own
    (FOOBARKEY), as a plain mock_aws() sets it."""
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "MOTO_ACCOUNT_ID"):
        monkeypatch.delenv(name, raising=False)


def new_key(policy: str) -> str:
    return client("kms", ADMIN_KEY).create_key(Policy=policy)["KeyMetadata"]["KeyId"]


# --- KMS key policies for Secrets Manager ---------------------------------------------------------


def test_the_broker_role_creates_reads_writes_and_rekeys_under_the_broker_key(aws):
    key, other_key = new_key(BROKER_KEY), new_key(BROKER_KEY)
    role = client("secretsmanager", ROLE_KEY)
    role.create_secret(Name="refresh/alice", SecretString=VALUE, KmsKeyId=key)
    assert role.get_secret_value(SecretId="refresh/alice")["SecretString"] == VALUE
    role.put_secret_value(SecretId="refresh/alice", SecretString="second")
    role.update_secret(SecretId="refresh/alice", SecretString="third")
    role.update_secret(SecretId="refresh/alice", KmsKeyId=other_key)
    assert role.describe_secret(SecretId="refresh/alice")["KmsKeyId"] == other_key
    assert role.get_secret_value(SecretId="refresh/alice")["SecretString"] == "third"


def test_an_administrator_cannot_touch_the_value_under_the_broker_key(aws):
    key = new_key(BROKER_KEY)
    arn = client("secretsmanager", ROLE_KEY).create_secret(Name="refresh/alice", SecretString=VALUE, KmsKeyId=key)[
        "ARN"
    ]
    admin, managed = client("secretsmanager", ADMIN_KEY), "alias/aws/secretsmanager"
    attempts = {
        "GetSecretValue": lambda: admin.get_secret_value(SecretId=arn),
        "PutSecretValue": lambda: admin.put_secret_value(SecretId="refresh/alice", SecretString="mine"),
        "UpdateSecret with a value": lambda: admin.update_secret(SecretId="refresh/alice", SecretString="mine"),
        "UpdateSecret to another key": lambda: admin.update_secret(SecretId="refresh/alice", KmsKeyId=managed),
        "CreateSecret under the key": lambda: admin.create_secret(Name="mine", SecretString="v", KmsKeyId=key),
    }
    for attempt, call in attempts.items():
        with pytest.raises(ClientError) as refused:
            call()
        assert (code(refused), refused.value.response["Error"]["Message"]) == ("AccessDeniedException", DENIED), attempt
        assert VALUE not in str(refused.value)
    assert admin.describe_secret(SecretId="refresh/alice")["KmsKeyId"] == key
    assert [s["Name"] for s in admin.list_secrets()["SecretList"]] == ["refresh/alice"]
    assert client("secretsmanager", ROLE_KEY).get_secret_value(SecretId=arn)["SecretString"] == VALUE  # unchanged
    admin.delete_secret(SecretId="refresh/alice", ForceDeleteWithoutRecovery=True)
    assert admin.list_secrets()["SecretList"] == []


def test_the_key_may_be_named_by_arn_alias_or_alias_arn(aws):
    kms = client("kms", ADMIN_KEY)
    key = kms.describe_key(KeyId=new_key(BROKER_KEY))["KeyMetadata"]
    kms.create_alias(AliasName="alias/broker", TargetKeyId=key["KeyId"])
    alias_arn = key["Arn"].replace(f"key/{key['KeyId']}", "alias/broker")
    role, admin = client("secretsmanager", ROLE_KEY), client("secretsmanager", ADMIN_KEY)
    for name, key_id in (("by-arn", key["Arn"]), ("by-alias", "alias/broker"), ("by-alias-arn", alias_arn)):
        role.create_secret(Name=name, SecretString=VALUE, KmsKeyId=key_id)
        assert role.get_secret_value(SecretId=name)["SecretString"] == VALUE
        with pytest.raises(ClientError) as refused:
            admin.get_secret_value(SecretId=name)
        assert code(refused) == "AccessDeniedException", name


def test_a_batch_lists_the_refused_secret_among_its_errors(aws):
    role, admin = client("secretsmanager", ROLE_KEY), client("secretsmanager", ADMIN_KEY)
    role.create_secret(Name="refresh/alice", SecretString=VALUE, KmsKeyId=new_key(BROKER_KEY))
    admin.create_secret(Name="client", SecretString="open")
    answer = admin.batch_get_secret_value(SecretIdList=["refresh/alice", "client"])
    assert [s["Name"] for s in answer["SecretValues"]] == ["client"]
    assert [(e["SecretId"], e["ErrorCode"]) for e in answer["Errors"]] == [("refresh/alice", "AccessDeniedException")]
    assert VALUE not in json.dumps(answer["Errors"])


def test_the_aws_managed_key_is_anyones(aws):
    role, admin = client("secretsmanager", ROLE_KEY), client("secretsmanager", ADMIN_KEY)
    role.create_secret(Name="default", SecretString=VALUE)
    role.create_secret(Name="named", SecretString=VALUE, KmsKeyId="alias/aws/secretsmanager")
    for name in ("default", "named"):
        assert admin.get_secret_value(SecretId=name)["SecretString"] == VALUE
        admin.put_secret_value(SecretId=name, SecretString="admin's")


def test_the_token_key_lets_in_every_principal_of_the_account_and_no_other(aws, principals):
    register("stranger", "arn:aws:iam::111122223333:role/reader")
    key = new_key(key_policy(ADMINISTER, account_uses(**{"kms:CallerAccount": ACCOUNT})))
    client("secretsmanager", ROLE_KEY).create_secret(Name="token", SecretString=VALUE, KmsKeyId=key)
    admin = client("secretsmanager", ADMIN_KEY)
    assert admin.get_secret_value(SecretId="token")["SecretString"] == VALUE
    admin.put_secret_value(SecretId="token", SecretString="admin's")
    with pytest.raises(ClientError) as refused:
        client("secretsmanager", "stranger").get_secret_value(SecretId="token")
    assert code(refused) == "AccessDeniedException"


def test_an_organization_condition_never_holds_locally(aws):
    key = new_key(key_policy(ADMINISTER, BROKER_USES, account_uses(**{"aws:PrincipalOrgID": "o-a1b2c3d4e5"})))
    client("secretsmanager", ROLE_KEY).create_secret(Name="token", SecretString=VALUE, KmsKeyId=key)
    with pytest.raises(ClientError) as refused:
        client("secretsmanager", ADMIN_KEY).get_secret_value(SecretId="token")
    assert code(refused) == "AccessDeniedException"


def test_an_explicit_deny_wins(aws):
    deny = {"Effect": "Deny", "Principal": {"AWS": ROLE}, "Action": "kms:Decrypt", "Resource": "*"}
    role = client("secretsmanager", ROLE_KEY)
    role.create_secret(Name="refresh/alice", SecretString=VALUE, KmsKeyId=new_key(key_policy(BROKER_USES, deny)))
    role.put_secret_value(SecretId="refresh/alice", SecretString="writes still allowed")
    with pytest.raises(ClientError) as refused:
        role.get_secret_value(SecretId="refresh/alice")
    assert code(refused) == "AccessDeniedException"


def arn_like_users(*actions: str) -> dict:
    """The broker key's own statement: the roles on a stack's path, through Secrets Manager."""
    return {
        "Sid": "BrokerFunctionsUseItThroughSecretsManager",
        "Effect": "Allow",
        "Principal": {"AWS": "*"},
        "Action": list(actions),
        "Resource": "*",
        "Condition": {"StringEquals": VIA_SECRETS_MANAGER, "ArnLike": {"aws:PrincipalArn": ROLE_PATH}},
    }


def test_a_role_on_the_stacks_path_uses_the_key_and_one_off_it_does_not(aws):
    key = new_key(key_policy(ADMINISTER, arn_like_users("kms:Decrypt", "kms:GenerateDataKey*")))
    client("secretsmanager", ROLE_KEY).create_secret(Name="refresh/alice", SecretString=VALUE, KmsKeyId=key)
    register("other-stack", f"arn:aws:iam::{ACCOUNT}:role/webex-token-broker/other/other-AdminFunctionRole-X")
    register("off-path", f"arn:aws:iam::{ACCOUNT}:role/stack-AdminFunctionRole-X")
    for stranger in ("other-stack", "off-path", ADMIN_KEY):
        with pytest.raises(ClientError) as refused:
            client("secretsmanager", stranger).get_secret_value(SecretId="refresh/alice")
        assert (code(refused), refused.value.response["Error"]["Message"]) == ("AccessDeniedException", DENIED)
    assert client("secretsmanager", ROLE_KEY).get_secret_value(SecretId="refresh/alice")["SecretString"] == VALUE


def test_an_allow_with_not_action_lets_the_account_decrypt(aws):
    """What an edited key policy might grant: everything but deleting the key is also every use of it."""
    anything_but_deletion = {k: v for k, v in ADMINISTER.items() if k != "Action"} | {
        "NotAction": ["kms:ScheduleKeyDeletion"]
    }
    key = new_key(key_policy(anything_but_deletion, arn_like_users("kms:Decrypt", "kms:GenerateDataKey*")))
    client("secretsmanager", ROLE_KEY).create_secret(Name="refresh/alice", SecretString=VALUE, KmsKeyId=key)
    assert client("secretsmanager", ADMIN_KEY).get_secret_value(SecretId="refresh/alice")["SecretString"] == VALUE


def test_a_deny_with_not_action_refuses_everything_else(aws):
    only_reads = {"Effect": "Deny", "Principal": "*", "NotAction": ["kms:Decrypt", "kms:Describe*"], "Resource": "*"}
    key = new_key(key_policy(ADMINISTER, arn_like_users("kms:Decrypt", "kms:GenerateDataKey*")))
    role = client("secretsmanager", ROLE_KEY)
    role.create_secret(Name="refresh/alice", SecretString=VALUE, KmsKeyId=key)
    client("kms", ADMIN_KEY).put_key_policy(
        KeyId=key,
        PolicyName="default",
        Policy=key_policy(ADMINISTER, arn_like_users("kms:Decrypt", "kms:GenerateDataKey*"), only_reads),
    )
    assert role.get_secret_value(SecretId="refresh/alice")["SecretString"] == VALUE
    with pytest.raises(ClientError) as refused:
        role.put_secret_value(SecretId="refresh/alice", SecretString="second")
    assert code(refused) == "AccessDeniedException"


def test_the_same_refusal_from_the_moto_server(principals, moto_server):
    key = client("kms", ADMIN_KEY, moto_server).create_key(Policy=BROKER_KEY)["KeyMetadata"]["KeyId"]
    role = client("secretsmanager", ROLE_KEY, moto_server)
    role.create_secret(Name="refresh/server", SecretString=VALUE, KmsKeyId=key)
    assert role.get_secret_value(SecretId="refresh/server")["SecretString"] == VALUE
    with pytest.raises(ClientError) as refused:
        client("secretsmanager", ADMIN_KEY, moto_server).get_secret_value(SecretId="refresh/server")
    assert (code(refused), refused.value.response["Error"]["Message"]) == ("AccessDeniedException", DENIED)


# --- Lambda's Invoke API on the local gateway -------------------------------------------------------


class Echo:
    def invoke(self, event: dict) -> dict:
        return {"got": event}


class Failing:
    def invoke(self, event: dict) -> dict:
        raise ValueError("the function failed")


CREDENTIALS = ("LOCALGATEWAYKEY", "local-gateway-secret")


@pytest.fixture
def gateway():
    """A LocalGateway served on loopback, its functions set after construction as devstack/runner.py does;
    every Invoke it answers is recorded."""
    calls = []
    app = LocalGateway([], credentials=CREDENTIALS, on_request=lambda *call: calls.append(call))
    app.functions = {"Echo": Echo(), "Failing": Failing()}
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    app.url = f"http://127.0.0.1:{server.server_port}"
    app.calls = calls
    yield app
    server.shutdown()
    server.server_close()


def lambda_client(gateway, credentials=CREDENTIALS):
    access_key, secret_key = credentials
    return boto3.client(
        "lambda",
        region_name=REGION,
        endpoint_url=gateway.url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
    )


def test_invoke_answers_with_the_functions_result(gateway):
    lam = lambda_client(gateway)
    for name in ("Echo", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:Echo", f"{ACCOUNT}:function:Echo:$LATEST"):
        answer = lam.invoke(FunctionName=name, Payload=json.dumps({"connection": "alice"}).encode())
        assert answer["StatusCode"] == 200
        assert "FunctionError" not in answer
        assert json.loads(answer["Payload"].read()) == {"got": {"connection": "alice"}}
    assert json.loads(lam.invoke(FunctionName="Echo")["Payload"].read()) == {"got": {}}
    assert [call[:3] for call in gateway.calls] == [("POST", "/2015-03-31/functions/Echo/invocations", 200)] * 4


def test_a_failing_function_is_reported_as_lambda_does(gateway):
    answer = lambda_client(gateway).invoke(FunctionName="Failing", Payload=b"{}")
    assert (answer["StatusCode"], answer["FunctionError"]) == (200, "Unhandled")
    assert json.loads(answer["Payload"].read()) == {"errorMessage": "the function failed", "errorType": "ValueError"}


def test_an_unknown_function_is_not_found(gateway):
    with pytest.raises(ClientError) as refused:
        lambda_client(gateway).invoke(FunctionName="Nobody", Payload=b"{}")
    assert code(refused) == "ResourceNotFoundException"
    assert refused.value.response["Error"]["Message"] == "Function not found: Nobody"
    assert gateway.calls[0][:3] == ("POST", "/2015-03-31/functions/Nobody/invocations", 404)


@pytest.mark.parametrize("credentials", [("SOMEONEELSE", "x"), (CREDENTIALS[0], "wrong-secret")])
def test_only_the_stacks_credentials_may_invoke(gateway, credentials):
    with pytest.raises(ClientError) as refused:
        lambda_client(gateway, credentials).invoke(FunctionName="Echo", Payload=b"{}")
    assert code(refused) == "UnrecognizedClientException"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_of_eight_callers_racing_for_one_conditional_write_exactly_one_wins(moto):
    """DynamoDB applies a conditional write atomically: two refreshers racing for a lease, one gets it."""
    import sys

    from tests.support.broker import table_keyed_by_k

    dynamodb = table_keyed_by_k("Leases")
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # threads switch often, as on a busy host
    try:
        winners = []
        for trial in range(20):
            dynamodb.put_item(TableName="Leases", Item={"k": {"S": str(trial)}})
            won: list[int] = []
            start = threading.Barrier(8)

            def take(caller: int, trial: int = trial, won: list[int] = won, start=start) -> None:
                start.wait()
                try:
                    dynamodb.update_item(
                        TableName="Leases",
                        Key={"k": {"S": str(trial)}},
                        UpdateExpression="SET lease_owner = :me",
                        ConditionExpression="attribute_not_exists(lease_owner)",
                        ExpressionAttributeValues={":me": {"S": str(caller)}},
                    )
                    won.append(caller)
                except dynamodb.exceptions.ConditionalCheckFailedException:
                    pass

            callers = [threading.Thread(target=take, args=(caller,)) for caller in range(8)]
            for thread in callers:
                thread.start()
            for thread in callers:
                thread.join()
            winners.append(len(won))
    finally:
        sys.setswitchinterval(interval)
    assert winners == [1] * 20
