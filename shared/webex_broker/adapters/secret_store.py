"""A connection's secrets in Secrets Manager: created on first write, new versions afterwards.

Every write carries a ClientRequestToken derived from the secret's name and content, so retrying
the same write after a crash or a timeout is a no-op instead of a second version or an error.
Token secrets are also shared as the stack says (core/sharing.py): created under the token key with
their replicas and resource policy, and brought to a changed sharing by `converge_sharing`. Refresh
material is only ever written under the broker key: a refresh secret under any other key (made before
the broker key, or moved by someone with secretsmanager:UpdateSecret) is moved back by the same call
that writes, and `seal` moves one that is not being written, with a new version under the key.
"""

import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from webex_broker.adapters import aws
from webex_broker.core.errors import MissingRefreshSecret, ReplicationFailed, StatementRefused
from webex_broker.core.sharing import ORGANIZATION_SID, TokenSharing
from webex_broker.core.token_documents import RefreshMaterial, TokenRecord

_TOKEN_NAMESPACE = uuid.UUID("6f1c1f0e-3a4b-4d0a-9a57-2b7f4a3c9e10")
AWS_MANAGED_KEY = "alias/aws/secretsmanager"
ROTATION_DAYS = 30  # Security Hub's SecretsManager.4 fails a secret not rotated within 90 days


class SecretNames:
    """The names of a connection's two secrets under the stack's prefix: workloads read the token
    secret, only the broker the refresh secret."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def token_secret(self, connection: str) -> str:
        return f"{self.prefix}/tokens/{connection}"

    def refresh_secret(self, connection: str) -> str:
        return f"{self.prefix}/refresh/{connection}"

    def connection_of(self, name: str) -> tuple[str, str] | None:
        """(kind, connection) of one of this prefix's secrets, kind "tokens" or "refresh"; None for any other."""
        for kind in ("tokens", "refresh"):
            connection = name.removeprefix(f"{self.prefix}/{kind}/")
            if connection != name and connection:
                return kind, connection
        return None


@dataclass(frozen=True)
class PendingVersion:
    """A rotation's new version of a token secret: written under Secrets Manager's ClientRequestToken as
    AWSPENDING, and made current only by finishSecret, once testSecret proved it with Webex."""

    secret: str
    token: str


def request_token(name: str, secret_string: str) -> str:
    return str(uuid.uuid5(_TOKEN_NAMESPACE, f"{name}\n{secret_string}"))


def put_secret(
    name: str,
    document: dict,
    *,
    description: str,
    tags: dict[str, str],
    key: str = "",
    replicas: tuple[str, ...] = (),
    rotation: str = "",
) -> str:
    """Write a new current version, creating (or restoring a deleted) secret where needed; returns its
    ARN. A new secret is created under `key` (empty: the AWS managed key) with its `replicas`, in the
    one create call, then rotation is turned on with the `rotation` function; a token secret's resource
    policy is the flows' to converge (token_sharing), which never fails a write."""
    secret_string = _serialized(document)
    token = request_token(name, secret_string)
    sm = aws.client("secretsmanager")
    try:
        return sm.put_secret_value(SecretId=name, SecretString=secret_string, ClientRequestToken=token)["ARN"]
    except ClientError as exc:
        code = aws.error_code(exc)
        if code == "ResourceNotFoundException":
            return _create(name, secret_string, token, description, tags, key, replicas, rotation)
        if scheduled_for_deletion(exc):
            sm.restore_secret(SecretId=name)
            if regions := _replica_regions(replicas):  # AWS deletes a secret only once its replicas are gone
                sm.replicate_secret_to_regions(SecretId=name, AddReplicaRegions=[{"Region": r} for r in regions])
            return sm.put_secret_value(SecretId=name, SecretString=secret_string, ClientRequestToken=token)["ARN"]
        raise


def _serialized(document: dict) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def scheduled_for_deletion(exc: ClientError) -> bool:
    """AWS answers a secret in its recovery window with InvalidRequestException "…marked for deletion"
    (moto: "…marked deleted"); nothing else tells it apart from other invalid requests."""
    message = str(exc).lower()
    marked = "marked for deletion" in message or "marked deleted" in message
    return aws.error_code(exc) == "InvalidRequestException" and marked


def secret_names(prefix: str) -> set[str]:
    """Every secret whose name starts with `prefix`, except those scheduled for deletion."""
    return set(secret_keys(prefix))


def secret_keys(prefix: str) -> dict[str, str]:
    """Every secret whose name starts with `prefix` (except those scheduled for deletion) → the key it
    is under, as ListSecrets says ('' for the AWS managed key); reading this needs no decrypt."""
    pages = (
        aws.client("secretsmanager")
        .get_paginator("list_secrets")
        .paginate(Filters=[{"Key": "name", "Values": [prefix]}])
    )
    return {s["Name"]: s.get("KmsKeyId", "") for page in pages for s in page["SecretList"] if "DeletedDate" not in s}


def _create(
    name: str,
    secret_string: str,
    token: str,
    description: str,
    tags: dict[str, str],
    key: str,
    replicas: Iterable[str],
    rotation: str,
) -> str:
    sm = aws.client("secretsmanager")
    options: dict[str, Any] = {}
    if key:
        options["KmsKeyId"] = key
    if regions := _replica_regions(replicas):
        options["AddReplicaRegions"] = [{"Region": region} for region in regions]
    try:
        arn = sm.create_secret(
            Name=name,
            SecretString=secret_string,
            ClientRequestToken=token,
            Description=description,
            Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
            **options,
        )["ARN"]
    except ClientError as exc:
        if aws.error_code(exc) != "ResourceExistsException":
            raise
        return sm.put_secret_value(SecretId=name, SecretString=secret_string, ClientRequestToken=token)["ARN"]
    if rotation:
        turn_on_rotation(name, rotation)
    return arn


def turn_on_rotation(name: str, function_arn: str) -> None:
    """Secrets Manager's rotation on, with the broker's rotation function and schedule, without rotating
    now (AWS runs only the function's testSecret). A crash before this leaves a secret without rotation,
    which the connection's next convergence turns on (its row's fingerprint is not yet the stack's)."""
    aws.client("secretsmanager").rotate_secret(
        SecretId=name,
        RotationLambdaARN=function_arn,
        RotationRules={"AutomaticallyAfterDays": ROTATION_DAYS},
        RotateImmediately=False,
    )


def rotates_with(described: Mapping[str, Any], function_arn: str) -> bool:
    """Whether DescribeSecret's answer says the secret rotates with `function_arn` on the broker's schedule."""
    return (
        bool(described.get("RotationEnabled"))
        and described.get("RotationLambdaARN") == function_arn
        and described.get("RotationRules", {}).get("AutomaticallyAfterDays") == ROTATION_DAYS
    )


def converge_sharing(name: str, sharing: TokenSharing) -> None:
    """Bring an existing token secret to the stack's sharing, each step only if it differs. The key
    first: Secrets Manager re-encrypts the current versions and keeps their copies under the old key,
    so whoever could read before still can; then replicas (which copy the resource policy), then the
    policy, then rotation. Idempotent: after a crash, running it again finishes the job."""
    sm = aws.client("secretsmanager")
    described = sm.describe_secret(SecretId=name)
    _converge_rotation(name, described, sharing.rotation_function_arn)
    if not same_key(described.get("KmsKeyId", ""), sharing.kms_key_id):
        sm.update_secret(SecretId=name, KmsKeyId=sharing.kms_key_id or AWS_MANAGED_KEY)
    replicated = {r["Region"]: r for r in described.get("ReplicationStatus", [])}
    wanted = set(_replica_regions(sharing.replica_regions))
    if missing := sorted(wanted - set(replicated)):
        answer = sm.replicate_secret_to_regions(SecretId=name, AddReplicaRegions=[{"Region": r} for r in missing])
        replicated |= {r["Region"]: r for r in answer.get("ReplicationStatus", [])}
    if failed := sorted(r for r in wanted if replicated.get(r, {}).get("Status") == "Failed"):
        # e.g. a secret of that name already exists there: never overwritten on the broker's own say-so
        raise ReplicationFailed(name, {r: replicated[r].get("StatusMessage", "") for r in failed})
    if extra := sorted(set(replicated) - wanted):
        sm.remove_regions_from_replication(SecretId=name, RemoveReplicaRegions=extra)
    try:
        _put_policy(name, sharing.resource_policy())
    except ClientError as exc:
        if aws.error_code(exc) != "PublicPolicyException" or not sharing.reader_organization_id:
            raise
        # AWS judged the organization's statement public: the reader accounts still get theirs.
        _put_policy(name, sharing.resource_policy(organization=False))
        raise StatementRefused(name, ORGANIZATION_SID, "PublicPolicyException") from None


def _converge_rotation(name: str, described: Mapping[str, Any], function_arn: str) -> None:
    if function_arn and not rotates_with(described, function_arn):
        turn_on_rotation(name, function_arn)


def _put_policy(name: str, policy: dict | None) -> None:
    sm = aws.client("secretsmanager")
    if policy:
        sm.put_resource_policy(SecretId=name, ResourcePolicy=json.dumps(policy), BlockPublicPolicy=True)
    elif sm.get_resource_policy(SecretId=name).get("ResourcePolicy"):
        sm.delete_resource_policy(SecretId=name)


def resource_policy_sids(name: str) -> set[str]:
    """The statements a secret's resource policy holds now (doctor's comparison with the stack's)."""
    text = aws.client("secretsmanager").get_resource_policy(SecretId=name).get("ResourcePolicy")
    return {statement.get("Sid", "") for statement in json.loads(text)["Statement"]} if text else set()


def seal(name: str, key: str, rotation: str = "") -> None:
    """Bring a refresh secret under the broker key, with a new current version encrypted under it:
    re-keying alone leaves the existing versions readable with the old key (AWS keeps their copies), so
    the value is written again. The version before stays readable with the old key as AWSPREVIOUS, then
    as a deprecated version until Secrets Manager removes it (docs/security.md). And rotation on, with
    the `rotation` function. Idempotent."""
    if not key and not rotation:
        return
    sm = aws.client("secretsmanager")
    described = sm.describe_secret(SecretId=name)
    if key and not same_key(described.get("KmsKeyId", ""), key):
        _write_under_key(name, sm.get_secret_value(SecretId=name)["SecretString"], key)
    _converge_rotation(name, described, rotation)


def _write_under_key(name: str, secret_string: str, key: str) -> str:
    """A new current version encrypted under `key`, and the secret under it from now on, in one call;
    the request token is derived from the value and the key, so a retry is a no-op."""
    token = request_token(name, f"{secret_string}\n{key}")
    return aws.client("secretsmanager").update_secret(
        SecretId=name, SecretString=secret_string, KmsKeyId=key, ClientRequestToken=token
    )["ARN"]


def under_key(name: str, key: str) -> bool | None:
    """Whether the secret is under `key` now; None if there is no such secret (or it is being deleted)."""
    described = _described(name)
    if described is None or "DeletedDate" in described:
        return None
    return same_key(described.get("KmsKeyId", ""), key)


def _described(name: str) -> dict | None:
    """DescribeSecret's answer; None when there is no such secret (one being deleted is described)."""
    try:
        return dict(aws.client("secretsmanager").describe_secret(SecretId=name))
    except ClientError as exc:
        if aws.error_code(exc) == "ResourceNotFoundException":
            return None
        raise


def _replica_regions(regions: Iterable[str]) -> list[str]:
    """The stack's own region is where the primary lives, never a replica."""
    own = aws.client("secretsmanager").meta.region_name
    return [region for region in regions if region != own]


def same_key(a: str, b: str) -> bool:
    """Key ids, ARNs and aliases compared: DescribeSecret may answer an ARN where the stack gave an id,
    and says nothing (empty) for the AWS managed key."""
    return _key_id(a or AWS_MANAGED_KEY) == _key_id(b or AWS_MANAGED_KEY)


def _key_id(key: str) -> str:
    return key.rsplit("/", 1)[-1] if ":key/" in key or key.startswith("key/") else key


def delete_secret(name: str, *, recovery_days: int) -> bool:
    """Schedule deletion (restorable for recovery_days); False if there was no such secret. AWS refuses
    to delete a replicated secret, so its replicas go first (at once: replicas have no recovery window)."""
    sm = aws.client("secretsmanager")
    try:
        if regions := [r["Region"] for r in sm.describe_secret(SecretId=name).get("ReplicationStatus", [])]:
            sm.remove_regions_from_replication(SecretId=name, RemoveReplicaRegions=regions)
        sm.delete_secret(SecretId=name, RecoveryWindowInDays=recovery_days)
    except ClientError as exc:
        if aws.error_code(exc) == "ResourceNotFoundException":
            return False
        raise
    return True


def secret_exists(name: str) -> bool:
    """A secret that holds a value now: not one scheduled for deletion (a write restores that one)."""
    described = _described(name)
    return described is not None and "DeletedDate" not in described


def secret_arn(name: str) -> str | None:
    described = _described(name)
    return described["ARN"] if described else None


def get_secret_document(name: str) -> dict:
    return json.loads(aws.client("secretsmanager").get_secret_value(SecretId=name)["SecretString"])


def get_refresh_material(name: str) -> RefreshMaterial:
    """A connection's refresh material; MissingRefreshSecret when the secret does not exist or is
    being deleted (retrying will not bring it back: not an outage)."""
    try:
        return RefreshMaterial.from_document(get_secret_document(name))
    except ClientError as exc:
        if aws.error_code(exc) == "ResourceNotFoundException" or scheduled_for_deletion(exc):
            raise MissingRefreshSecret(name) from None
        raise


def write_refresh_material(
    material: RefreshMaterial, names: SecretNames, *, now: datetime, key: str = "", rotation: str = ""
) -> str:
    """Step one of `write_tokens`, under the broker `key` only: checked before each write, because
    whoever may UpdateSecret can point the secret at a key any administrator uses, and nothing else
    would notice. A secret under another key is moved back by the write itself (UpdateSecret with the
    value and the key: the new version is encrypted under the broker key alone)."""
    name = names.refresh_secret(material.connection)
    document = material.document(updated_at=now)
    if key and under_key(name, key) is False:
        return _write_under_key(name, _serialized(document), key)
    return put_secret(
        name,
        document,
        description=f"Webex refresh material for {material.connection}; read only by the token broker.",
        tags={"webex-token-broker:connection": material.connection, "webex-token-broker:kind": "refresh"},
        key=key,
        rotation=rotation,
    )


def write_tokens(
    record: TokenRecord,
    names: SecretNames,
    *,
    refresh_token_changed: bool = True,
    access_token_changed: bool = True,
    pace: Callable[[], None] = lambda: None,
    starting: Callable[[str], None] = lambda name: None,
    sharing: TokenSharing | None = None,
    pending: PendingVersion | None = None,
) -> str | None:
    """The write order of every path (login and refresh): refresh material, then the token secret;
    the caller writes the row after. The refresh token is stored before anything that depends on it,
    so a crash between the steps never loses it. Each secret is written only when its token changed;
    `pace` runs before each write (the refresher's rate limit), `starting` names the secret before its
    write begins (a write can land and still fail). Returns the token secret's ARN if written."""
    if refresh_token_changed:
        pace()
        starting(names.refresh_secret(record.connection))
        key, rotation = (sharing.broker_key_id, sharing.rotation_function_arn) if sharing else ("", "")
        write_refresh_material(record.refresh_material(), names, now=record.updated_at, key=key, rotation=rotation)
    if not access_token_changed:
        return None
    pace()
    starting(names.token_secret(record.connection))
    if pending and pending.secret == names.token_secret(record.connection):
        return write_pending(pending, record.token_document())
    return write_token_secret(record, names, sharing)


def write_token_secret(record: TokenRecord, names: SecretNames, sharing: TokenSharing | None = None) -> str:
    """A new token secret is created shared as `sharing` says; refresh secrets are never shared."""
    return put_secret(
        names.token_secret(record.connection),
        record.token_document(),
        description=f"Webex access token for {record.connection}, kept fresh by the token broker.",
        tags={"webex-token-broker:connection": record.connection, "webex-token-broker:kind": "access-token"},
        key=sharing.kms_key_id if sharing else "",
        replicas=sharing.replica_regions if sharing else (),
        rotation=sharing.rotation_function_arn if sharing else "",
    )


def write_pending(pending: PendingVersion, document: dict) -> str:
    """The rotation's version, into the AWSPENDING version Secrets Manager opened: a retry with the same
    token and value is a no-op."""
    return aws.client("secretsmanager").put_secret_value(
        SecretId=pending.secret,
        SecretString=_serialized(document),
        ClientRequestToken=pending.token,
        VersionStages=["AWSPENDING"],
    )["ARN"]


def version_document(name: str, version_id: str, stage: str) -> dict | None:
    """One version's value; None for a version without one (Secrets Manager opens a rotation's empty)."""
    try:
        answer = aws.client("secretsmanager").get_secret_value(SecretId=name, VersionId=version_id, VersionStage=stage)
    except ClientError as exc:
        if aws.error_code(exc) == "ResourceNotFoundException":
            return None
        raise
    return json.loads(answer["SecretString"])


def rotation_state(name: str) -> dict:
    """DescribeSecret's answer: the name, whether rotation is on, and each version's staging labels."""
    return dict(aws.client("secretsmanager").describe_secret(SecretId=name))


def move_stage(name: str, stage: str, *, to: str | None, away_from: str | None) -> None:
    options = {"MoveToVersionId": to} if to else {}
    if away_from:
        options["RemoveFromVersionId"] = away_from
    aws.client("secretsmanager").update_secret_version_stage(SecretId=name, VersionStage=stage, **options)
