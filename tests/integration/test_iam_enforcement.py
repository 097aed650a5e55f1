"""The local AWS holds a function's role to its own statements, as AWS does, for every service moto
serves: a call its role does not allow is refused with AWS's AccessDeniedException, and the operator (an
administrator) is not checked. Each handler signs as its function's role (devstack/function_roles.py)."""

import json
import os
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from botocore.exceptions import ClientError

from devstack import function_roles, iam
from devstack.policy import Principal
from tests.support.broker import PREFIX

ACCOUNT = "123456789012"
REGION = "us-east-1"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/webex-token-broker/stack/stack-RefresherFunctionRole-X"
SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/stack-RefresherFunctionRole-X/RefresherFunction"
ROLE_KEY, ADMIN_KEY = "refresher-role-key", "AKIAADMINISTRATOR001"
TABLES = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table"
SECRETS = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret"


def denied(action: str, resource: str, *, explicit: bool = False) -> str:
    why = (
        "with an explicit deny in an identity-based policy"
        if explicit
        else f"because no identity-based policy allows the {action} action"
    )
    return f"User: {SESSION} is not authorized to perform: {action} on resource: {resource} {why}"


def refused(call) -> dict:
    with pytest.raises(ClientError) as refusal:
        call()
    return refusal.value.response


def assert_refused(call, action: str, resource: str, *, explicit: bool = False) -> None:
    response = refused(call)
    assert response["Error"]["Code"] == "AccessDeniedException"
    assert response["Error"]["Message"] == denied(action, resource, explicit=explicit)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400


def client(service: str, access_key: str = ROLE_KEY, endpoint_url: str | None = None):
    return boto3.client(
        service, region_name=REGION, aws_access_key_id=access_key, aws_secret_access_key="x", endpoint_url=endpoint_url
    )


@pytest.fixture
def policy(monkeypatch) -> list[dict]:
    """The statements of a function's role, which each test writes; every other identity is forgotten
    meanwhile."""
    statements = []
    monkeypatch.setattr(iam, "identities", {})
    identity = iam.Identity(Principal(ROLE, ACCOUNT), session="RefresherFunction", policy=lambda: statements)
    iam.register(ROLE_KEY, identity)
    return statements


@pytest.fixture
def aws(monkeypatch, policy, moto_credentials):
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "MOTO_ACCOUNT_ID"):
        monkeypatch.delenv(name, raising=False)


def allow(actions, resources, **condition) -> dict:
    return {"Effect": "Allow", "Action": actions, "Resource": resources} | (
        {"Condition": condition} if condition else {}
    )


def test_dynamodb_tables_and_their_indexes(aws, policy):
    admin = client("dynamodb", ADMIN_KEY)
    for name in ("Connections", "State"):
        admin.create_table(
            TableName=name,
            AttributeDefinitions=[
                {"AttributeName": "k", "AttributeType": "S"},
                {"AttributeName": "s", "AttributeType": "S"},
            ],
            KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "BySchedule",
                    "KeySchema": [{"AttributeName": "s", "KeyType": "HASH"}],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                }
            ],
            BillingMode="PAY_PER_REQUEST",
        )
    policy += [
        allow("dynamodb:GetItem", f"{TABLES}/Connections"),
        allow("dynamodb:Query", f"{TABLES}/Connections/index/BySchedule"),
    ]
    db, key = client("dynamodb"), {"k": {"S": "alice"}}
    db.get_item(TableName="Connections", Key=key)
    db.query(
        TableName="Connections",
        IndexName="BySchedule",
        KeyConditionExpression="s = :s",
        ExpressionAttributeValues={":s": {"S": "x"}},
    )
    assert_refused(lambda: db.get_item(TableName="State", Key=key), "dynamodb:GetItem", f"{TABLES}/State")
    assert_refused(lambda: db.put_item(TableName="Connections", Item=key), "dynamodb:PutItem", f"{TABLES}/Connections")
    assert_refused(
        lambda: db.query(
            TableName="Connections", KeyConditionExpression="k = :k", ExpressionAttributeValues={":k": {"S": "a"}}
        ),
        "dynamodb:Query",
        f"{TABLES}/Connections",
    )
    policy.append(allow("dynamodb:BatchGetItem", f"{TABLES}/Connections"))
    batch = {"Connections": {"Keys": [key]}, "State": {"Keys": [key]}}
    assert_refused(lambda: db.batch_get_item(RequestItems=batch), "dynamodb:BatchGetItem", f"{TABLES}/State")
    admin.put_item(TableName="State", Item=key)  # the operator: not checked
    assert admin.batch_get_item(RequestItems=batch)["Responses"]["State"] == [key]


def test_secrets_manager_names_each_secret_by_its_full_arn(aws, policy):
    policy += [
        allow(["secretsmanager:CreateSecret", "secretsmanager:GetSecretValue"], f"{SECRETS}:stack/tokens/*"),
        allow(
            "secretsmanager:DeleteSecret",
            f"{SECRETS}:stack/tokens/*",
            NumericGreaterThanEquals={"secretsmanager:RecoveryWindowInDays": "7"},
        ),
    ]
    sm, admin = client("secretsmanager"), client("secretsmanager", ADMIN_KEY)
    arn = sm.create_secret(Name="stack/tokens/alice", SecretString="v")["ARN"]
    assert sm.get_secret_value(SecretId="stack/tokens/alice")["SecretString"] == "v"
    refresh = admin.create_secret(Name="stack/refresh/alice", SecretString="r")["ARN"]
    assert_refused(
        lambda: sm.get_secret_value(SecretId="stack/refresh/alice"), "secretsmanager:GetSecretValue", refresh
    )
    assert_refused(lambda: sm.put_secret_value(SecretId=arn, SecretString="w"), "secretsmanager:PutSecretValue", arn)
    assert_refused(
        lambda: sm.create_secret(Name="stack/refresh/bob", SecretString="r"),
        "secretsmanager:CreateSecret",
        f"{SECRETS}:stack/refresh/bob",
    )
    assert_refused(lambda: sm.list_secrets(), "secretsmanager:ListSecrets", "*")
    assert admin.get_secret_value(SecretId=refresh)["SecretString"] == "r", "the operator: not checked"


def test_creating_a_secret_with_tags_or_replicas_needs_their_actions_too(aws, policy):
    """Secrets Manager API Reference, CreateSecret, "Required permissions"."""
    policy.append(allow("secretsmanager:CreateSecret", f"{SECRETS}:stack/tokens/*"))
    sm = client("secretsmanager")
    tags = [{"Key": "webex-token-broker:connection", "Value": "alice"}]
    name = f"{SECRETS}:stack/tokens/alice"
    assert_refused(
        lambda: sm.create_secret(Name="stack/tokens/alice", SecretString="v", Tags=tags),
        "secretsmanager:TagResource",
        name,
    )
    replicas = [{"Region": "eu-west-1"}]
    assert_refused(
        lambda: sm.create_secret(Name="stack/tokens/alice", SecretString="v", AddReplicaRegions=replicas),
        "secretsmanager:ReplicateSecretToRegions",
        name,
    )
    policy.append(
        allow(["secretsmanager:TagResource", "secretsmanager:ReplicateSecretToRegions"], f"{SECRETS}:stack/tokens/*")
    )
    sm.create_secret(Name="stack/tokens/alice", SecretString="v", Tags=tags, AddReplicaRegions=replicas)


def test_deleting_a_secret_is_judged_on_its_recovery_window(aws, policy):
    policy += [
        allow(
            "secretsmanager:DeleteSecret",
            f"{SECRETS}:stack/tokens/*",
            NumericGreaterThanEquals={"secretsmanager:RecoveryWindowInDays": "7"},
        ),
        {
            "Sid": "NeverForced",
            "Effect": "Deny",
            "Action": "secretsmanager:DeleteSecret",
            "Resource": "*",
            "Condition": {"Bool": {"secretsmanager:ForceDeleteWithoutRecovery": "true"}},
        },
    ]
    admin, sm = client("secretsmanager", ADMIN_KEY), client("secretsmanager")
    arns = [admin.create_secret(Name=f"stack/tokens/{name}", SecretString="v")["ARN"] for name in ("a", "b", "c")]
    assert_refused(
        lambda: sm.delete_secret(SecretId=arns[0]), "secretsmanager:DeleteSecret", arns[0]
    )  # no window given
    assert_refused(
        lambda: sm.delete_secret(SecretId=arns[1], ForceDeleteWithoutRecovery=True),
        "secretsmanager:DeleteSecret",
        arns[1],
        explicit=True,
    )
    sm.delete_secret(SecretId=arns[2], RecoveryWindowInDays=7)


def test_a_batch_lists_each_secret_its_role_may_not_read_among_its_errors(aws, policy):
    admin, sm = client("secretsmanager", ADMIN_KEY), client("secretsmanager")
    admin.create_secret(Name="stack/tokens/alice", SecretString="v")
    refresh = admin.create_secret(Name="stack/refresh/alice", SecretString="r")["ARN"]
    assert_refused(
        lambda: sm.batch_get_secret_value(SecretIdList=["stack/tokens/alice"]),
        "secretsmanager:BatchGetSecretValue",
        "*",
    )
    policy += [
        allow("secretsmanager:BatchGetSecretValue", "*"),
        allow("secretsmanager:GetSecretValue", f"{SECRETS}:stack/tokens/*"),
    ]
    answer = sm.batch_get_secret_value(SecretIdList=["stack/tokens/alice", "stack/refresh/alice"])
    assert [s["Name"] for s in answer["SecretValues"]] == ["stack/tokens/alice"]
    [error] = answer["Errors"]
    assert (error["SecretId"], error["ErrorCode"]) == ("stack/refresh/alice", "AccessDeniedException")
    assert error["Message"] == denied("secretsmanager:GetSecretValue", refresh)


def test_eventbridge_puts_events_on_the_buses_its_role_names(aws, policy):
    policy.append(allow("events:PutEvents", f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default"))
    client("events", ADMIN_KEY).create_event_bus(Name="other")
    events, entry = client("events"), {"Source": "webex-token-broker.stack", "DetailType": "T", "Detail": "{}"}
    assert events.put_events(Entries=[entry])["FailedEntryCount"] == 0
    assert_refused(
        lambda: events.put_events(Entries=[entry, {**entry, "EventBusName": "other"}]),
        "events:PutEvents",
        f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/other",
    )
    assert client("events", ADMIN_KEY).put_events(Entries=[{**entry, "EventBusName": "other"}])["FailedEntryCount"] == 0


def test_kms_names_the_key_by_its_arn_whatever_the_call_calls_it(aws, policy):
    kms = client("kms", ADMIN_KEY)
    mine, other = (kms.create_key()["KeyMetadata"] for _ in range(2))
    kms.create_alias(AliasName="alias/mine", TargetKeyId=mine["KeyId"])
    policy.append(allow("kms:DescribeKey", mine["Arn"]))
    role = client("kms")
    for name in (mine["KeyId"], mine["Arn"], "alias/mine"):
        assert role.describe_key(KeyId=name)["KeyMetadata"]["Arn"] == mine["Arn"]
    assert_refused(lambda: role.describe_key(KeyId=other["KeyId"]), "kms:DescribeKey", other["Arn"])
    assert_refused(lambda: role.list_keys(), "kms:ListKeys", "*")


@pytest.mark.parametrize(
    ("service", "allowed", "listing", "refused_call", "refused_action"),
    [
        (
            "sqs",
            "sqs:ListQueues",
            lambda sqs: sqs.list_queues(),
            lambda sqs: sqs.create_queue(QueueName="q"),
            "sqs:CreateQueue",
        ),
        (
            "scheduler",
            "scheduler:ListSchedules",
            lambda scheduler: scheduler.list_schedules(),
            lambda scheduler: scheduler.list_schedule_groups(),
            "scheduler:ListScheduleGroups",
        ),
    ],
)
def test_any_other_service_on_every_resource(aws, policy, service, allowed, listing, refused_call, refused_action):
    policy.append(allow(allowed, "*"))
    listing(client(service))
    assert_refused(lambda: refused_call(client(service)), refused_action, "*")
    refused_call(client(service, ADMIN_KEY))


def test_the_same_refusal_from_the_moto_server(policy, moto_server):
    policy.append(allow("secretsmanager:GetSecretValue", f"{SECRETS}:stack/tokens/*"))
    admin, sm = client("secretsmanager", ADMIN_KEY, moto_server), client("secretsmanager", ROLE_KEY, moto_server)
    admin.create_secret(Name="stack/tokens/server", SecretString="v")
    arn = admin.create_secret(Name="stack/refresh/server", SecretString="r")["ARN"]
    assert sm.get_secret_value(SecretId="stack/tokens/server")["SecretString"] == "v"
    assert_refused(lambda: sm.get_secret_value(SecretId="stack/refresh/server"), "secretsmanager:GetSecretValue", arn)


# --- the functions sign as their roles -------------------------------------------------------------


def role_arn(function: str) -> str:
    return function_roles.roles(PREFIX)[function].arn


def test_each_handler_signs_as_its_functions_role(broker):
    from authorize import handler as authorize
    from refresher import handler as refresher

    assert (authorize.signs_as, refresher.signs_as) == ("AuthorizeFunction", "RefresherFunction")
    assert role_arn("RefresherFunction").startswith(
        f"arn:aws:iam::{ACCOUNT}:role/webex-token-broker/{PREFIX}/{PREFIX}-RefresherFunctionRole-"
    )
    with iam.recording() as checks:
        assert broker.login()["statusCode"] == 200
    assert {check.identity.session for check in checks} == {"AuthorizeFunction", "CallbackFunction"}
    assert all(check.decision.allowed for check in checks)


def test_a_function_is_refused_what_its_role_does_not_name_in_its_threads_too(broker):
    """Any client signs as the role while the function runs, the broker's cached ones included."""
    assert broker.login()["statusCode"] == 200
    refresh = f"{PREFIX}/refresh/alice@example.com"
    arn = broker.secrets.describe_secret(SecretId=refresh)["ARN"]
    sm = boto3.client("secretsmanager")
    with function_roles.signing_as("RefresherFunction"):
        assert json.loads(sm.get_secret_value(SecretId=refresh)["SecretString"])["refresh_token"]
    with function_roles.signing_as("AuthorizeFunction"), ThreadPoolExecutor(2) as pool:
        response = refused(lambda: pool.submit(sm.get_secret_value, SecretId=refresh).result())
    role = role_arn("AuthorizeFunction").rsplit("/", 1)[1]
    assert response["Error"]["Message"] == (
        f"User: arn:aws:sts::{ACCOUNT}:assumed-role/{role}/AuthorizeFunction is not authorized to perform: "
        f"secretsmanager:GetSecretValue on resource: {arn} because no identity-based policy allows the "
        "secretsmanager:GetSecretValue action"
    )
    assert json.loads(sm.get_secret_value(SecretId=refresh)["SecretString"]), "the tests' own identity: not checked"


def test_a_role_is_resolved_for_the_environment_its_function_runs_with(broker, monkeypatch):
    """The same role under another SECRET_PREFIX names that prefix's secrets, not these."""
    assert broker.login()["statusCode"] == 200
    token = f"{PREFIX}/tokens/alice@example.com"
    sm = boto3.client("secretsmanager")
    with function_roles.signing_as("RefresherFunction"):
        sm.get_secret_value(SecretId=token)
        monkeypatch.setenv("SECRET_PREFIX", "another-broker")
        response = refused(lambda: sm.get_secret_value(SecretId=token))
    assert response["Error"]["Code"] == "AccessDeniedException"
    assert os.environ["SECRET_PREFIX"] == "another-broker"
