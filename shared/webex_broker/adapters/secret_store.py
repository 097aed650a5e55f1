"""A connection's secrets in Secrets Manager: created on first write, new versions afterwards.

Every write carries a ClientRequestToken derived from the secret's name and content, so retrying
the same write after a crash or a timeout is a no-op instead of a second version or an error.
"""

import json
import uuid
from collections.abc import Callable
from datetime import datetime

from botocore.exceptions import ClientError

from webex_broker.adapters import aws
from webex_broker.core.token_documents import RefreshMaterial, TokenRecord

_TOKEN_NAMESPACE = uuid.UUID("6f1c1f0e-3a4b-4d0a-9a57-2b7f4a3c9e10")


class SecretNames:
    """The names of a connection's two secrets under the stack's prefix: workloads read the token
    secret, only the broker the refresh secret."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def token_secret(self, connection: str) -> str:
        return f"{self.prefix}/tokens/{connection}"

    def refresh_secret(self, connection: str) -> str:
        return f"{self.prefix}/refresh/{connection}"


def request_token(name: str, secret_string: str) -> str:
    return str(uuid.uuid5(_TOKEN_NAMESPACE, f"{name}\n{secret_string}"))


def put_secret(name: str, document: dict, *, description: str, tags: dict[str, str]) -> str:
    """Write a new current version, creating (or restoring a deleted) secret where needed; returns its ARN."""
    secret_string = json.dumps(document, sort_keys=True, separators=(",", ":"))
    token = request_token(name, secret_string)
    sm = aws.client("secretsmanager")
    try:
        return sm.put_secret_value(SecretId=name, SecretString=secret_string, ClientRequestToken=token)["ARN"]
    except ClientError as exc:
        code = aws.error_code(exc)
        if code == "ResourceNotFoundException":
            return _create(name, secret_string, token, description, tags)
        if scheduled_for_deletion(exc):
            sm.restore_secret(SecretId=name)
            return sm.put_secret_value(SecretId=name, SecretString=secret_string, ClientRequestToken=token)["ARN"]
        raise


def scheduled_for_deletion(exc: ClientError) -> bool:
    """AWS answers a secret in its recovery window with InvalidRequestException "…marked for deletion"
    (moto: "…marked deleted"); nothing else tells it apart from other invalid requests."""
    message = str(exc).lower()
    marked = "marked for deletion" in message or "marked deleted" in message
    return aws.error_code(exc) == "InvalidRequestException" and marked


def secret_names(prefix: str) -> set[str]:
    """Every secret whose name starts with `prefix`, except those scheduled for deletion."""
    pages = (
        aws.client("secretsmanager")
        .get_paginator("list_secrets")
        .paginate(Filters=[{"Key": "name", "Values": [prefix]}])
    )
    return {s["Name"] for page in pages for s in page["SecretList"] if "DeletedDate" not in s}


def _create(name: str, secret_string: str, token: str, description: str, tags: dict[str, str]) -> str:
    sm = aws.client("secretsmanager")
    try:
        return sm.create_secret(
            Name=name,
            SecretString=secret_string,
            ClientRequestToken=token,
            Description=description,
            Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
        )["ARN"]
    except ClientError as exc:
        if aws.error_code(exc) != "ResourceExistsException":
            raise
        return sm.put_secret_value(SecretId=name, SecretString=secret_string, ClientRequestToken=token)["ARN"]


def delete_secret(name: str, *, recovery_days: int) -> bool:
    """Schedule deletion (restorable for recovery_days); False if there was no such secret."""
    try:
        aws.client("secretsmanager").delete_secret(SecretId=name, RecoveryWindowInDays=recovery_days)
    except ClientError as exc:
        if aws.error_code(exc) == "ResourceNotFoundException":
            return False
        raise
    return True


def secret_arn(name: str) -> str | None:
    try:
        return aws.client("secretsmanager").describe_secret(SecretId=name)["ARN"]
    except ClientError as exc:
        if aws.error_code(exc) == "ResourceNotFoundException":
            return None
        raise


def get_secret_document(name: str) -> dict:
    return json.loads(aws.client("secretsmanager").get_secret_value(SecretId=name)["SecretString"])


def write_refresh_material(material: RefreshMaterial, names: SecretNames, *, now: datetime) -> str:
    """Step one of `write_tokens`."""
    return put_secret(
        names.refresh_secret(material.connection),
        material.document(updated_at=now),
        description=f"Webex refresh material for {material.connection}; read only by the token broker.",
        tags={"webex-token-broker:connection": material.connection, "webex-token-broker:kind": "refresh"},
    )


def write_tokens(
    record: TokenRecord,
    names: SecretNames,
    *,
    refresh_token_changed: bool = True,
    access_token_changed: bool = True,
    pace: Callable[[], None] = lambda: None,
    starting: Callable[[str], None] = lambda name: None,
) -> str | None:
    """The write order of every path (login and refresh): refresh material, then the consumer secret;
    the caller writes the row after. The refresh token is stored before anything that depends on it,
    so a crash between the steps never loses it. Each secret is written only when its token changed;
    `pace` runs before each write (the refresher's rate limit), `starting` names the secret before its
    write begins (a write can land and still fail). Returns the consumer secret's ARN if written."""
    if refresh_token_changed:
        pace()
        starting(names.refresh_secret(record.connection))
        write_refresh_material(record.refresh_material(), names, now=record.updated_at)
    if not access_token_changed:
        return None
    pace()
    starting(names.token_secret(record.connection))
    return write_consumer_secret(record, names)


def write_consumer_secret(record: TokenRecord, names: SecretNames) -> str:
    return put_secret(
        names.token_secret(record.connection),
        record.consumer_document(),
        description=f"Webex access token for {record.connection}, kept fresh by the token broker.",
        tags={"webex-token-broker:connection": record.connection, "webex-token-broker:kind": "access-token"},
    )
