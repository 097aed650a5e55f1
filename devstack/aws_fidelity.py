"""Where moto is laxer than AWS in a way the broker depends on, make it as strict as AWS.

- PutSecretValue on a secret scheduled for deletion: AWS refuses ("You can't perform this operation
  on the secret because it was marked for deletion"), moto writes a version nobody can read. The
  broker restores such a secret before writing (`secret_store.put_secret`); without this, the local
  stack and the tests would never take that path.
- KMS key policies: moto stores them but never enforces them. AWS refuses any Secrets Manager call that
  needs the secret's customer managed key (GetSecretValue, BatchGetSecretValue, PutSecretValue,
  CreateSecret and UpdateSecret with a value or a new key) unless that key's policy lets the caller use
  it: that is what keeps an account administrator out of the refresh secrets under the broker key. The
  caller is whoever signed the request (devstack/iam.py: a function's role, a role on the stack's role
  path, else an IAM user of the account); the key policy is judged as AWS judges it (devstack/policy.py).

- DynamoDB applies each request atomically: a conditional write's check and its write are one step, so
  of two refreshers racing for one lease exactly one wins. moto checks and writes in the caller's
  thread, and concurrent callers (a run's pool, two runs at once, the threaded local server) could all
  pass the check (30 of 40 trials with eight callers), or crash copying an item another thread was
  changing. Here DynamoDB answers one request at a time.

`apply()` also has devstack/iam.py hold the functions' roles to their own statements, and gives a
symmetric KMS key no key pair: moto makes a 2048-bit RSA pair for every key (30-150 ms of CPU each, the
largest cost of a test's setup), which AWS has only for asymmetric keys; Sign, Verify and GetPublicKey on a
symmetric key are refused either way.
"""

import re
import threading

from moto.dynamodb.responses import DynamoHandler
from moto.kms import models as kms_models
from moto.kms.models import Key
from moto.secretsmanager.exceptions import InvalidRequestException
from moto.secretsmanager.models import FakeSecret, SecretsManagerBackend

from devstack import iam
from devstack.policy import Request, document_statements, evaluate

_DECRYPT = ("kms:Decrypt",)
_GENERATE = ("kms:GenerateDataKey",)
_REENCRYPT_TO = ("kms:GenerateDataKey", "kms:Encrypt")
KMS_DENIED = "Access to KMS is not allowed"  # what AWS answers when the key policy refuses; no secret value in it

_applied = False


def apply() -> None:
    global _applied
    if _applied:
        return
    _applied = True
    _refuse_writes_to_deleted_secrets()
    _current_follows_its_label()
    _enforce_key_policies()
    _no_key_pair_for_symmetric_keys()
    _one_dynamodb_request_at_a_time()
    iam.enforce()  # last: AWS checks the caller's IAM policy before the key's


def _one_dynamodb_request_at_a_time() -> None:
    lock = threading.RLock()
    concurrent = DynamoHandler.call_action

    def call_action(self):
        with lock:
            return concurrent(self)

    DynamoHandler.call_action = call_action


def _refuse_writes_to_deleted_secrets() -> None:
    lax = SecretsManagerBackend.put_secret_value

    def put_secret_value(self, secret_id: str, *args, **kwargs):
        secret = self.secrets.get(secret_id) if self._is_valid_identifier(secret_id) else None
        if secret is not None and secret.is_deleted():
            raise InvalidRequestException(
                "You can't perform this operation on the secret because it was marked for deletion."
            )
        return lax(self, secret_id, *args, **kwargs)

    SecretsManagerBackend.put_secret_value = put_secret_value


def _current_follows_its_label() -> None:
    """AWS reads whichever version AWSCURRENT is on; moto moves the label (a rotation's finishSecret)
    but keeps answering GetSecretValue from the version it had."""
    lax = SecretsManagerBackend.update_secret_version_stage

    def update_secret_version_stage(
        self, secret_id: str, version_stage: str, remove_from_version_id, move_to_version_id
    ):
        answer = lax(self, secret_id, version_stage, remove_from_version_id, move_to_version_id)
        if version_stage == "AWSCURRENT" and move_to_version_id:
            secret = self.secrets[secret_id]
            secret.default_version_id = move_to_version_id
            secret.secret_string = secret.versions[move_to_version_id].get("secret_string")
        return answer

    SecretsManagerBackend.update_secret_version_stage = update_secret_version_stage


def _no_key_pair_for_symmetric_keys() -> None:
    generate = kms_models.generate_private_key

    def key_pair(key_spec: str):
        return (
            None
            if key_spec in ("SYMMETRIC_DEFAULT", "HMAC_224", "HMAC_256", "HMAC_384", "HMAC_512")
            else generate(key_spec)
        )

    kms_models.generate_private_key = key_pair


def _enforce_key_policies() -> None:
    """The backend, which sees the secrets, checks each call against the rights on the keys of the
    caller devstack/iam.py names (BatchGetSecretValue goes through GetSecretValue once per secret)."""
    backend = SecretsManagerBackend
    get_secret_value = backend.get_secret_value
    put_secret_value = backend.put_secret_value
    create_secret = backend.create_secret
    update_secret = backend.update_secret

    def checked_get_secret_value(self, secret_id: str, *args, **kwargs):
        if secret := _live(self, secret_id):
            _require(self, _secret_key(secret), _DECRYPT)
        return get_secret_value(self, secret_id, *args, **kwargs)

    def checked_put_secret_value(self, secret_id: str, *args, **kwargs):
        if secret := _live(self, secret_id):
            _require(self, _secret_key(secret), _GENERATE)
        return put_secret_value(self, secret_id, *args, **kwargs)

    def checked_create_secret(self, name, secret_string, secret_binary, description, tags, kms_key_id, **kwargs):
        if secret_string is not None or secret_binary is not None:
            _require(self, kms_key_id, _GENERATE)
        return create_secret(self, name, secret_string, secret_binary, description, tags, kms_key_id, **kwargs)

    def checked_update_secret(
        self, secret_id, secret_string=None, secret_binary=None, client_request_token=None, kms_key_id=None, **kwargs
    ):
        secret = _live(self, secret_id)
        if isinstance(secret, FakeSecret) and iam.current.get() is not None:
            if kms_key_id is not None and _key(self, kms_key_id) is not _key(self, secret.kms_key_id):
                # Secrets Manager re-encrypts the current versions: read under the old key, written under the new
                _require(self, secret.kms_key_id, _DECRYPT)
                _require(self, kms_key_id, _REENCRYPT_TO)
            elif secret_string is not None or secret_binary is not None:
                _require(self, kms_key_id or secret.kms_key_id, _GENERATE)
        return update_secret(self, secret_id, secret_string, secret_binary, client_request_token, kms_key_id, **kwargs)

    backend.get_secret_value = checked_get_secret_value
    backend.put_secret_value = checked_put_secret_value
    backend.create_secret = checked_create_secret
    backend.update_secret = checked_update_secret


def _live(backend: SecretsManagerBackend, secret_id: str):
    """The secret, unless moto will refuse the call anyway (no such secret, or scheduled for deletion)."""
    secret = backend.secrets.get(secret_id)
    return None if secret is None or secret.is_deleted() else secret


def _secret_key(secret) -> str | None:
    """A replica is encrypted under its region's key, moto's AWS managed key."""
    return secret.kms_key_id if isinstance(secret, FakeSecret) else secret.config["KmsKeyId"]


def _key(backend: SecretsManagerBackend, key_id: str | None) -> Key | None:
    """The customer managed key key_id names (id, key ARN, alias or alias ARN) in the secret's account and
    region; None for Secrets Manager's AWS managed key, which every principal of the account may use."""
    if not key_id or re.match(r"(arn:[^:]+:kms:[^:]*:\d*:)?alias/aws/", key_id):
        return None
    key = iam.find_key(backend.account_id, backend.region_name, key_id)
    if key is None:
        raise iam.SecretAccessDenied(KMS_DENIED)  # no such key: nobody may use it
    return None if any(alias.startswith("alias/aws/") for alias in key.aliases) else key


def _require(backend: SecretsManagerBackend, key_id: str | None, actions: tuple[str, ...]) -> None:
    """Refuse, as AWS does, unless the caller may do one of actions with the key through Secrets Manager.
    Outside a request (moto's own calls, a test's direct backend use) there is no caller and no check."""
    caller = iam.current.get()
    key = _key(backend, key_id) if caller is not None else None
    if key is None:
        return
    context = iam.principal_context(caller.principal) | {
        "kms:ViaService": f"secretsmanager.{backend.region_name}.amazonaws.com",
        "kms:CallerAccount": caller.principal.account,
    }
    statements = document_statements(key.policy)
    if not any(evaluate(statements, Request(action, key.arn, caller.principal, context)).allowed for action in actions):
        raise iam.SecretAccessDenied(KMS_DENIED)
