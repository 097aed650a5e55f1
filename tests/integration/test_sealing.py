"""Refresh material is only ever written under the broker key, and sealing writes a new version:
re-keying alone leaves the current version under the old key, and a refresh secret pointed at a key
an administrator may use must not receive the next refresh token there."""

import os

import boto3
from botocore.exceptions import ClientError

from tests.support.broker import OPERATOR, PREFIX, reset_broker_caches
from tests.support.operator import LocalAdmin, lock_broker_key
from webex_broker.adapters.secret_store import same_key

REFRESH = f"{PREFIX}/refresh/alice@example.com"


def key_of(name: str) -> str:
    return boto3.client("secretsmanager").describe_secret(SecretId=name).get("KmsKeyId", "")


def current_version(name: str) -> str:
    versions = boto3.client("secretsmanager").list_secret_version_ids(SecretId=name)["Versions"]
    return next(v["VersionId"] for v in versions if "AWSCURRENT" in v["VersionStages"])


def administrator_reads(name: str) -> bool:
    try:
        boto3.client("secretsmanager", **OPERATOR).get_secret_value(SecretId=name)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "AccessDeniedException":
            raise
        return False
    return True


def test_sealing_an_old_refresh_secret_writes_a_new_version_under_the_broker_key(broker, monkeypatch):
    from webex_broker.flows import token_sharing
    from webex_broker.flows.broker import current

    key = os.environ["BROKER_KMS_KEY_ID"]
    monkeypatch.delenv("BROKER_KMS_KEY_ID")  # a stack from before the broker key
    reset_broker_caches()
    assert broker.login()["statusCode"] == 200
    assert administrator_reads(REFRESH), "under the AWS managed key, any administrator reads it"
    before = current_version(REFRESH)
    versions = broker.versions(REFRESH)
    value = broker.secret(REFRESH)

    monkeypatch.setenv("BROKER_KMS_KEY_ID", key)  # the stack updated
    reset_broker_caches()
    assert token_sharing.converge_all(current()) == {"alice@example.com": "converged"}

    assert same_key(key_of(REFRESH), key)
    assert current_version(REFRESH) != before, "a new current version, encrypted under the broker key"
    assert broker.versions(REFRESH) == versions + 1
    assert broker.secret(REFRESH) == value, "the same refresh material"
    assert not administrator_reads(REFRESH)
    assert token_sharing.converge_all(current()) == {"alice@example.com": "unchanged"}
    assert broker.versions(REFRESH) == versions + 1, "idempotent"


def test_a_refresh_secret_moved_off_the_broker_key_gets_the_next_refresh_token_under_it_again(broker):
    from webex_broker.flows.broker import current
    from webex_broker_admin.doctor import _sealed_secrets

    key = os.environ["BROKER_KMS_KEY_ID"]
    assert broker.login()["statusCode"] == 200
    # someone with secretsmanager:UpdateSecret points it at a key every administrator may use
    boto3.client("secretsmanager").update_secret(SecretId=REFRESH, KmsKeyId="alias/aws/secretsmanager")
    assert not same_key(key_of(REFRESH), key)
    reset_broker_caches()
    [sealed, decryptable] = _sealed_secrets(LocalAdmin(), current())
    assert (sealed.result, sealed.detail) == (
        "FAIL",
        f"not under the broker key (an administrator may read what is written to them): {REFRESH}",
    )
    assert decryptable.result == "ok"

    assert broker.login()["statusCode"] == 200, "the same person again: new refresh material is written"

    assert same_key(key_of(REFRESH), key), "moved back by the write itself"
    assert not administrator_reads(REFRESH)
    reset_broker_caches()
    assert [c.result for c in _sealed_secrets(LocalAdmin(), current())] == ["ok"]


def test_doctor_finds_refresh_secrets_the_functions_cannot_decrypt(broker):
    """A key whose policy no longer trusts this stack's roles (retained from a stack deployed before the
    role path, or edited): found by the functions' own read, before a refresh meets it."""
    from webex_broker.flows.broker import current
    from webex_broker_admin.doctor import _sealed_secrets

    assert broker.login()["statusCode"] == 200
    lock_broker_key()
    reset_broker_caches()
    [decryptable] = _sealed_secrets(LocalAdmin(), current())
    assert (decryptable.name, decryptable.result) == ("decryptable", "FAIL")
    assert decryptable.detail == f"the functions cannot decrypt (secretsmanager:GetSecretValue): {REFRESH}"
    assert f"role/webex-token-broker/{os.environ['POWERTOOLS_SERVICE_NAME']}/*" in decryptable.fix
