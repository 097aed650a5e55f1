"""Token secrets readable from other accounts and regions: created under the token key with the
stack's replicas and resource policy, brought to a changed sharing at the next refresh (or at once),
never at the cost of a refresh or of a reader that could read before. Refresh secrets are never shared.

moto does not enforce resource or key policies, so those are checked as documents here; AWS alone
decides who they let in."""

import json
import os

import boto3
import pytest
from botocore.exceptions import ClientError

from devstack.template import LocalResolver, load_template
from tests.support.broker import PREFIX, count_aws_calls, reset_broker_caches
from tests.support.operator import ACCOUNTS, ORGANIZATION, REGIONS, share
from tests.support.people import ALICE
from tests.support.refresh import make_due, refresh_now
from webex_broker.adapters.aws import AwsCallFailed
from webex_broker.core.errors import ConfigurationError

TOKEN = f"{PREFIX}/tokens/{ALICE}"
REFRESH = f"{PREFIX}/refresh/{ALICE}"
SHARING_ACTIONS = {
    "DescribeSecret",
    "UpdateSecret",
    "GetResourcePolicy",
    "PutResourcePolicy",
    "DeleteResourcePolicy",
    "ReplicateSecretToRegions",
    "RemoveRegionsFromReplication",
}


def described(broker, name: str = TOKEN) -> dict:
    return broker.secrets.describe_secret(SecretId=name)


def replicas(broker, name: str = TOKEN) -> set[str]:
    return {r["Region"] for r in described(broker, name).get("ReplicationStatus", [])}


def policy(broker, name: str = TOKEN) -> dict | None:
    text = broker.secrets.get_resource_policy(SecretId=name).get("ResourcePolicy")
    return json.loads(text) if text else None


def replica_value(broker, region: str, name: str = TOKEN) -> dict:
    arn = described(broker, name)["ARN"].replace(":us-east-1:", f":{region}:")
    return json.loads(boto3.client("secretsmanager", region_name=region).get_secret_value(SecretId=arn)["SecretString"])


EXPECTED_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "ReaderAccounts",
            "Effect": "Allow",
            "Principal": {"AWS": ["111122223333", "444455556666"]},
            "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
            "Resource": "*",
        },
        {
            "Sid": "ReaderOrganization",
            "Effect": "Allow",
            "Principal": "*",
            "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
            "Resource": "*",
            "Condition": {
                "StringEquals": {"aws:PrincipalOrgID": ORGANIZATION},
                "StringNotEquals": {"aws:PrincipalAccount": "123456789012"},
            },
        },
    ],
}


def test_a_new_token_secret_is_shared_as_the_stack_says_and_its_refresh_secret_is_sealed(broker, monkeypatch):
    key = share(monkeypatch)
    assert broker.login(ALICE)["statusCode"] == 200
    token = described(broker)
    assert token["KmsKeyId"].endswith(key)
    assert replicas(broker) == {"eu-west-1", "ap-southeast-2"}
    assert policy(broker) == EXPECTED_POLICY
    for region in ("eu-west-1", "ap-southeast-2"):
        assert replica_value(broker, region) == broker.secret(TOKEN), f"workloads in {region} read the same token"
    refresh = described(broker, REFRESH)
    assert refresh["KmsKeyId"] == os.environ["BROKER_KMS_KEY_ID"], "sealed under the broker key, never shared"
    assert "ReplicationStatus" not in refresh
    assert policy(broker, REFRESH) is None
    from webex_broker.flows.broker import current

    assert broker.connection(ALICE)["sharing"] == current().settings.sharing.fingerprint()


def test_every_refresh_reaches_the_replicas(broker, monkeypatch):
    share(monkeypatch)
    broker.webex.access_token_ttl = 3600
    broker.webex.same_token_window = 0
    assert broker.login(ALICE)["statusCode"] == 200
    first = broker.secret(TOKEN)["access_token"]
    make_due(broker, ALICE)
    assert refresh_now()["outcomes"] == {"refreshed": 1}
    fresh = broker.secret(TOKEN)["access_token"]
    assert fresh != first
    assert replica_value(broker, "eu-west-1")["access_token"] == fresh


def test_a_token_secret_deleted_by_hand_comes_back_with_its_replicas(broker, monkeypatch):
    """AWS deletes a replicated secret only after its replicas are removed; restoring it must put them
    back, because the row's sharing fingerprint says nothing changed."""
    share(monkeypatch)
    broker.webex.access_token_ttl = 3600
    broker.webex.same_token_window = 0
    assert broker.login(ALICE)["statusCode"] == 200
    from webex_broker.adapters.secret_store import delete_secret

    assert delete_secret(TOKEN, recovery_days=7)
    make_due(broker, ALICE)
    assert refresh_now()["outcomes"] == {"refreshed": 1}
    assert replicas(broker) == {"eu-west-1", "ap-southeast-2"}
    assert replica_value(broker, "eu-west-1") == broker.secret(TOKEN)


def test_an_old_stack_updated_to_share_converges_at_the_next_refresh_without_a_failed_read(broker, monkeypatch):
    broker.webex.access_token_ttl = 3600
    assert broker.login(ALICE)["statusCode"] == 200  # before: no token key, no readers, no replicas
    assert "KmsKeyId" not in described(broker)
    before = broker.secret(TOKEN)
    key = share(monkeypatch)  # the stack update; nothing has touched the secret yet
    assert broker.secret(TOKEN) == before, "readers allowed before still read, until and after it converges"
    make_due(broker, ALICE)
    aws_calls = count_aws_calls()
    assert refresh_now()["succeeded"] == 1  # a new token or the same again: both converge
    assert aws_calls["UpdateSecret"] == 1  # the key: Secrets Manager re-encrypts, keeping old-key copies
    assert described(broker)["KmsKeyId"].endswith(key)
    assert replicas(broker) == {"eu-west-1", "ap-southeast-2"}
    assert policy(broker) == EXPECTED_POLICY
    assert broker.secret(TOKEN)["access_token"]
    make_due(broker, ALICE)
    aws_calls.clear()
    assert refresh_now()["succeeded"] == 1  # a new token or the same again: both converge
    assert not SHARING_ACTIONS & set(aws_calls), "a converged secret costs a refresh nothing more"


def test_converge_now_applies_every_change_and_removes_what_is_no_longer_wanted(broker, monkeypatch):
    from webex_broker.flows import token_sharing
    from webex_broker.flows.broker import current

    assert broker.login(ALICE)["statusCode"] == 200
    assert broker.login("bob@example.com")["statusCode"] == 200
    share(monkeypatch)
    calls = broker.webex.calls["access_token"]
    assert token_sharing.converge_all(current()) == {ALICE: "converged", "bob@example.com": "converged"}
    assert broker.webex.calls["access_token"] == calls, "no refresh needed"
    assert policy(broker) == EXPECTED_POLICY
    assert token_sharing.converge_all(current()) == {ALICE: "unchanged", "bob@example.com": "unchanged"}

    share(monkeypatch, accounts="", regions="eu-west-1")  # narrower: the organization only, one region
    assert token_sharing.converge_all(current())[ALICE] == "converged"
    assert replicas(broker) == {"eu-west-1"}
    assert policy(broker) == {"Version": "2012-10-17", "Statement": [EXPECTED_POLICY["Statement"][1]]}
    share(monkeypatch, accounts="", organization="", regions="")
    assert token_sharing.converge_all(current())[ALICE] == "converged"
    assert replicas(broker) == set()
    assert policy(broker) is None
    assert broker.secret(TOKEN)["access_token"]


def test_a_share_aws_refuses_never_fails_the_refresh_and_is_tried_again(broker, monkeypatch):
    from webex_broker.flows import token_sharing

    broker.webex.access_token_ttl = 3600
    assert broker.login(ALICE)["statusCode"] == 200
    before = broker.connection(ALICE)["sharing"]
    share(monkeypatch)
    real = token_sharing.converge_sharing

    def refused(*args, **kwargs):
        raise AwsCallFailed({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "PutResourcePolicy")

    monkeypatch.setattr(token_sharing, "converge_sharing", refused)
    make_due(broker, ALICE)
    assert refresh_now()["succeeded"] == 1  # a new token or the same again: both converge, "the token is what matters"
    assert broker.connection(ALICE)["sharing"] == before, "the row still says: not shared yet"
    monkeypatch.setattr(token_sharing, "converge_sharing", real)
    make_due(broker, ALICE)
    assert refresh_now()["succeeded"] == 1  # a new token or the same again: both converge
    assert policy(broker) == EXPECTED_POLICY


def test_a_replicated_secret_loses_its_replicas_before_it_is_deleted(broker, monkeypatch):
    from webex_broker.adapters.secret_store import delete_secret

    share(monkeypatch)
    assert broker.login(ALICE)["statusCode"] == 200
    assert delete_secret(TOKEN, recovery_days=7)  # AWS (and moto) refuse to delete a replicated secret
    assert "DeletedDate" in broker.secrets.describe_secret(SecretId=TOKEN)
    with pytest.raises(ClientError):
        boto3.client("secretsmanager", region_name="eu-west-1").describe_secret(
            SecretId=described(broker)["ARN"].replace(":us-east-1:", ":eu-west-1:")
        )


@pytest.mark.parametrize(
    ("variable", "value"),
    [("READER_ACCOUNT_IDS", "12345"), ("READER_ORGANIZATION_ID", "org-1"), ("REPLICA_REGIONS", "Europe")],
)
def test_a_sharing_setting_aws_would_refuse_stops_the_broker_before_it_writes(broker, monkeypatch, variable, value):
    from webex_broker.core.errors import ConfigurationError
    from webex_broker.core.settings import Settings

    share(monkeypatch)
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError):
        Settings.from_environment(dict(__import__("os").environ))


# --- the template's documents ------------------------------------------------------------------------


def key_policy(**parameters: str) -> list[dict]:
    resolver = LocalResolver(parameters=parameters, resources={}, stack_name="broker")
    statements = resolver.resolve(load_template()["Resources"]["TokenKey"]["Properties"]["KeyPolicy"])["Statement"]
    return [s for s in statements if s]


def test_the_token_key_lets_the_account_use_it_only_through_secrets_manager_and_readers_only_decrypt():
    via = {"kms:ViaService": "secretsmanager.us-east-1.amazonaws.com"}
    default = key_policy()
    assert [s["Sid"] for s in default] == ["AccountAdministersTheKey", "AccountUsesItThroughSecretsManager"]
    assert default[1]["Principal"] == {"AWS": "*"}
    assert default[1]["Condition"] == {"StringEquals": {"kms:CallerAccount": "123456789012", **via}}
    shared = key_policy(ReaderAccountIds=ACCOUNTS, ReaderOrganizationId=ORGANIZATION)
    accounts, organization = shared[2], shared[3]
    assert accounts["Principal"] == {"AWS": ["111122223333", "444455556666"]}
    assert accounts["Action"] == ["kms:Decrypt", "kms:DescribeKey"]
    assert accounts["Condition"] == {"StringEquals": via}
    assert organization["Principal"] == {"AWS": "*"}
    assert organization["Action"] == ["kms:Decrypt", "kms:DescribeKey"]
    assert organization["Condition"] == {"StringEquals": {"aws:PrincipalOrgID": ORGANIZATION, **via}}


def test_the_stack_outputs_a_policy_for_reader_roles_in_other_accounts():
    resolver = LocalResolver(parameters={}, resources={}, stack_name="broker")
    resolver.values["TokenKey.Arn"] = "arn:aws:kms:us-east-1:123456789012:key/k"
    document = json.loads(resolver.resolve(load_template()["Outputs"]["CrossAccountReaderPolicy"]["Value"]))
    read, decrypt = document["Statement"]
    assert read["Action"] == ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    assert read["Resource"] == "arn:aws:secretsmanager:us-east-1:123456789012:secret:broker/tokens/*"
    assert decrypt["Action"] == "kms:Decrypt"
    assert decrypt["Resource"] == "arn:aws:kms:us-east-1:123456789012:key/k"
    assert decrypt["Condition"] == {"StringEquals": {"kms:ViaService": "secretsmanager.us-east-1.amazonaws.com"}}


def test_a_replica_region_holding_a_secret_of_that_name_is_reported_and_never_overwritten(broker, monkeypatch):
    """Secrets Manager marks such a replica Failed; the broker leaves the other secret alone, keeps the
    primary and its other replicas, and tries again at the next refresh."""
    from webex_broker.flows import token_sharing
    from webex_broker.flows.broker import current

    assert broker.login(ALICE)["statusCode"] == 200
    before = broker.connection(ALICE)["sharing"]
    stranger = boto3.client("secretsmanager", region_name="eu-west-1")
    stranger.create_secret(Name=TOKEN, SecretString="someone else's")
    share(monkeypatch)
    assert token_sharing.converge_all(current()) == {ALICE: "failed"}
    assert stranger.get_secret_value(SecretId=TOKEN)["SecretString"] == "someone else's"
    assert "ap-southeast-2" in replicas(broker)
    assert broker.connection(ALICE)["sharing"] == before, "not recorded: the next refresh tries again"
    assert broker.secret(TOKEN)["access_token"]


def test_a_share_aws_refuses_never_fails_a_login(broker, monkeypatch):
    from webex_broker.flows import token_sharing

    share(monkeypatch)

    def refused(*args, **kwargs):
        raise AwsCallFailed({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "PutResourcePolicy")

    monkeypatch.setattr(token_sharing, "converge_sharing", refused)
    assert broker.login(ALICE)["statusCode"] == 200
    assert broker.secret(TOKEN)["access_token"]
    assert broker.connection(ALICE)["status"] == "active"
    assert "sharing" not in broker.connection(ALICE), "the next refresh brings it to the stack's sharing"


# --- readers in every region and account get exactly what the docs promise (issue 22) -----------------

WORKLOAD_KEY = "AKIAWORKLOADREADER01"


def reader_policy_statements(**parameters: str) -> list[dict]:
    """The stack's ReaderPolicy, as CloudFormation would create it with these parameters."""
    resolver = LocalResolver(parameters={"SecretPrefix": PREFIX, **parameters}, resources={}, stack_name="test-broker")
    return resolver.resolve(load_template()["Resources"]["ReaderPolicy"]["Properties"]["PolicyDocument"])["Statement"]


def workload(region: str, statements: list[dict]):
    """A workload role of the broker's account holding exactly `statements`, calling from `region`."""
    from devstack import iam
    from devstack.policy import Principal

    role = "arn:aws:iam::123456789012:role/reports-job"
    iam.register(WORKLOAD_KEY, iam.Identity(Principal(role, "123456789012"), "reports-job", lambda: statements))
    return boto3.client("secretsmanager", region_name=region, aws_access_key_id=WORKLOAD_KEY, aws_secret_access_key="x")


def refused(call) -> bool:
    try:
        call()
    except ClientError as exc:
        return exc.response["Error"]["Code"] == "AccessDeniedException"
    return False


def test_a_workload_in_a_replica_region_reads_its_replica_with_exactly_the_stacks_reader_policy(broker, monkeypatch):
    share(monkeypatch)
    assert broker.login(ALICE)["statusCode"] == 200
    statements = reader_policy_statements(ReplicaRegions=REGIONS)
    arn = described(broker)["ARN"]

    for region in ("us-east-1", "eu-west-1", "ap-southeast-2"):
        here = arn.replace(":us-east-1:", f":{region}:")
        value = json.loads(workload(region, statements).get_secret_value(SecretId=here)["SecretString"])
        assert value["access_token"] == broker.secret(TOKEN)["access_token"], region
    elsewhere = boto3.client("secretsmanager", region_name="sa-east-1")
    stray = elsewhere.create_secret(Name=f"{PREFIX}/tokens/not-ours", SecretString="{}")["ARN"]
    assert refused(lambda: workload("sa-east-1", statements).get_secret_value(SecretId=stray)), "no other region"
    assert refused(lambda: workload("us-east-1", statements).get_secret_value(SecretId=REFRESH)), "no refresh secret"


def test_without_replicas_the_reader_policy_is_the_stacks_region_alone():
    [statement] = reader_policy_statements()
    assert statement["Condition"] == {"StringEquals": {"aws:RequestedRegion": "us-east-1"}}
    [statement] = reader_policy_statements(ReplicaRegions=REGIONS)
    assert statement["Condition"] == {
        "StringEquals": {"aws:RequestedRegion": ["us-east-1", "eu-west-1", "ap-southeast-2"]}
    }


def test_reader_policy_for_one_connection_names_its_replicas_too():
    from webex_broker_admin.cli import replica_arns

    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:p/tokens/alice@example.com-AbCdEf"
    assert replica_arns(arn, ()) == arn
    assert replica_arns(arn, ("eu-west-1",)) == [arn, arn.replace("us-east-1", "eu-west-1")]


def evaluate_resource_policy(document: dict, account: str, org: str | None) -> bool:
    from devstack.policy import Principal, Request, evaluate

    principal = Principal(f"arn:aws:iam::{account}:role/anyone", account)
    context = {"aws:PrincipalAccount": account, "aws:PrincipalOrgID": org}
    request = Request("secretsmanager:GetSecretValue", "*", principal, context)
    return evaluate(document["Statement"], request).allowed


def test_the_organization_statement_gives_the_brokers_own_account_nothing():
    from webex_broker.core.sharing import TokenSharing

    sharing = TokenSharing(kms_key_id="k", reader_organization_id=ORGANIZATION, own_account="123456789012")
    document = sharing.resource_policy()
    assert not evaluate_resource_policy(document, "123456789012", ORGANIZATION), "the broker's own account"
    assert evaluate_resource_policy(document, "111122223333", ORGANIZATION), "another account of the organization"
    assert not evaluate_resource_policy(document, "999988887777", "o-someoneelse"), "outside the organization"


def test_a_stack_with_an_organization_but_no_account_of_its_own_stops_before_it_writes(broker, monkeypatch):
    share(monkeypatch)
    monkeypatch.setenv("CLIENT_SECRET_ARN", "not-an-arn")
    reset_broker_caches()
    from webex_broker.core.settings import load_settings

    with pytest.raises(ConfigurationError, match="own account"):
        load_settings()


def refusing_organization_statements(monkeypatch):
    """AWS judging the organization's statement public under BlockPublicPolicy, as it may."""
    from webex_broker.adapters import aws

    real = aws.client

    def client(service: str):
        made = real(service)
        if service == "secretsmanager" and not getattr(made, "_refuses_org", False):

            def put(**kwargs):
                if "aws:PrincipalOrgID" in kwargs["ResourcePolicy"]:
                    raise AwsCallFailed(
                        {"Error": {"Code": "PublicPolicyException", "Message": "broad access"}}, "PutResourcePolicy"
                    )
                return made.__class__.put_resource_policy(made, **kwargs)

            made.put_resource_policy = put
            made._refuses_org = True
        return made

    monkeypatch.setattr(aws, "client", client)


def test_a_refused_organization_statement_never_withholds_the_reader_accounts(broker, monkeypatch, capsys):
    share(monkeypatch)
    refusing_organization_statements(monkeypatch)
    assert broker.login(ALICE)["statusCode"] == 200

    [accounts] = policy(broker)["Statement"]
    assert accounts["Sid"] == "ReaderAccounts", "the reader accounts have theirs"
    assert "ReaderOrganization" not in json.dumps(policy(broker))
    assert '"ReaderStatementsRefused"' in capsys.readouterr().out, "counted, for its alarm"
    from webex_broker.flows.broker import current

    wanted = current().settings.sharing.fingerprint()
    assert broker.connection(ALICE).get("sharing") != wanted, "not recorded as converged: the next refresh tries again"

    from webex_broker_admin.doctor import FAIL, _refused_statements

    [check] = _refused_statements(current(), [ALICE])
    assert (check.name, check.result) == ("reader statements", FAIL)
    assert TOKEN in check.detail
    assert "ReaderOrganization" in check.detail
    assert "ReaderAccountIds" in check.fix


def test_the_refusal_raises_an_alarm():
    alarm = load_template()["Resources"]["ReaderStatementsRefusedAlarm"]
    assert alarm["Condition"] == "HasReaderOrganization"
    assert alarm["Properties"]["MetricName"] == "ReaderStatementsRefused"
    assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}]
