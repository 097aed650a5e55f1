"""What an operator does to the stack around the broker: deploy it with sharing, lock its key, call
its admin function."""

import json
import os

import boto3

from devstack.lambda_runtime import LambdaContext
from devstack.template import LocalResolver, create_key
from tests.support.broker import OPERATOR, reset_broker_caches

ACCOUNTS = "111122223333,444455556666"
ORGANIZATION = "o-a1b2c3d4e5"
REGIONS = "eu-west-1,ap-southeast-2"


def share(monkeypatch, *, accounts: str = ACCOUNTS, organization: str = ORGANIZATION, regions: str = REGIONS) -> str:
    """The stack deployed (or updated) with these parameters: the functions' new environment."""
    resolver = LocalResolver(parameters={"ReaderAccountIds": accounts}, resources={}, stack_name="test-broker")
    key = create_key(boto3.client("kms"), resolver, "TokenKey")
    for name, value in (
        ("TOKEN_KMS_KEY_ID", key),
        ("READER_ACCOUNT_IDS", accounts),
        ("READER_ORGANIZATION_ID", organization),
        ("REPLICA_REGIONS", regions),
    ):
        monkeypatch.setenv(name, value)
    reset_broker_caches()
    return key


def admin(event: dict) -> dict:
    from admin import handler

    reset_broker_caches()
    return handler(event, LambdaContext(function_name="AdminFunction", timeout_seconds=900))


class LocalAdmin:
    """doctor's target, its admin function invoked in-process as the function's role would be."""

    def invoke(self, function: str, payload: dict) -> dict:
        from admin import handler

        assert function == "AdminFunction"
        return handler(payload, LambdaContext(function_name="AdminFunction"))


def lock_broker_key() -> None:
    """The broker key's policy as an administrator might leave it: only the account administers it,
    nobody may use it (what a retained key that trusts other roles looks like to these functions)."""
    kms = boto3.client("kms", **OPERATOR)
    key = os.environ["BROKER_KMS_KEY_ID"]
    policy = json.loads(kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"])
    policy["Statement"] = [s for s in policy["Statement"] if s["Sid"] == "AccountAdministersButCannotUseTheKey"]
    kms.put_key_policy(KeyId=key, PolicyName="default", Policy=json.dumps(policy))
