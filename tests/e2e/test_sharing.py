"""Readers in other accounts and regions against `make run`: the local stack deployed with
ReaderAccountIds, ReaderOrganizationId and ReplicaRegions (moto keeps the replicas; it does not
enforce the policies, which tests/integration/test_sharing.py checks as documents)."""

import json
from collections.abc import Iterator

import boto3
import pytest

from tests.support.local_stack import PREFIX, Cli, RunningBroker, login, start_local_broker, stop_local_broker

SECRET = f"{PREFIX}/tokens/demo"


@pytest.fixture(scope="module")
def broker() -> Iterator[RunningBroker]:
    running = start_local_broker(
        REFRESH_INTERVAL_SECONDS="3600",
        READER_ACCOUNT_IDS="111122223333",
        READER_ORGANIZATION_ID="o-a1b2c3d4e5",
        REPLICA_REGIONS="eu-west-1",
    )
    try:
        assert login(running.login_url, "alice@example.com").status_code == 200
        yield running
    finally:
        assert stop_local_broker(running) == 0


def test_a_workload_in_the_replica_region_reads_the_same_token_by_full_arn(broker):
    primary = broker.boto3("secretsmanager")
    described = primary.describe_secret(SecretId=SECRET)
    assert [r["Region"] for r in described["ReplicationStatus"]] == ["eu-west-1"]
    assert json.loads(primary.get_resource_policy(SecretId=SECRET)["ResourcePolicy"])["Statement"][0]["Principal"] == {
        "AWS": ["111122223333"]
    }
    # As the README shows: the replica's ARN is the primary's with the region swapped.
    replica = boto3.client(
        "secretsmanager",
        endpoint_url=broker.aws_endpoint,
        region_name="eu-west-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    arn = described["ARN"].replace(":us-east-1:", ":eu-west-1:")
    value = json.loads(replica.get_secret_value(SecretId=arn)["SecretString"])
    assert value == json.loads(primary.get_secret_value(SecretId=SECRET)["SecretString"])


def test_converge_and_doctor_see_every_token_secret_shared(broker):
    cli = Cli(broker)
    assert cli.json("converge") == {"demo": "unchanged"}
    broker.wait_for_line(r"^POST /2015-03-31/functions/AdminFunction/invocations -> 200", 5)
    checks = cli("doctor", expect=None).stdout
    assert "token key: " in checks
    assert "readers in other accounts: 111122223333, o-a1b2c3d4e5; replicas: eu-west-1" in checks
    assert "sharing:" not in checks, "nothing left to converge"
