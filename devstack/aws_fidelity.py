"""Where moto is laxer than AWS in a way the broker depends on, make it as strict as AWS.

- PutSecretValue on a secret scheduled for deletion: AWS refuses ("You can't perform this operation
  on the secret because it was marked for deletion"), moto writes a version nobody can read. The
  broker restores such a secret before writing (`secret_store.put_secret`); without this, the local
  stack and the tests would never take that path.
- KMS key policies: moto stores them but never enforces them. AWS refuses any Secrets Manager call that
  needs the secret's customer managed key (GetSecretValue, BatchGetSecretValue, PutSecretValue,
  CreateSecret and UpdateSecret with a value or a new key) unless that key's policy lets the caller use
  it: that is what keeps an account administrator out of the refresh secrets under the broker key. The
  caller is the access key the request is signed with: a principal `register_principal` named (the
  functions' role), else an IAM user of the account.
"""

import json
import re
from contextvars import ContextVar
from dataclasses import dataclass

from moto.kms.models import Key, kms_backends
from moto.secretsmanager.exceptions import InvalidRequestException
from moto.secretsmanager.models import FakeSecret, SecretsManagerBackend
from moto.secretsmanager.responses import SecretsManagerResponse

principals: dict[str, str] = {}  # access key id → principal ARN; any other key is an IAM user of the account

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")
_ACCOUNT_ROOT = re.compile(r"arn:aws[\w-]*:iam::(\d{12}):root")
_DECRYPT = ("kms:Decrypt",)
_GENERATE = ("kms:GenerateDataKey",)
_REENCRYPT_TO = ("kms:GenerateDataKey", "kms:Encrypt")

_applied = False


@dataclass(frozen=True)
class Caller:
    """Who a key policy sees: the principal's ARN and its account."""

    arn: str
    account: str


ANONYMOUS = Caller("anonymous", "")  # an unsigned request: only a `Principal: "*"` without conditions lets it in


_caller: ContextVar[Caller | None] = ContextVar("secretsmanager_caller", default=None)


class KmsAccessDenied(InvalidRequestException):
    """What AWS answers when the key policy refuses the caller; no secret value in it. An
    InvalidRequestException to moto only so that BatchGetSecretValue lists it per secret, as AWS does."""

    def __init__(self) -> None:
        super(InvalidRequestException, self).__init__("AccessDeniedException", "Access to KMS is not allowed")


def register_principal(access_key: str, arn: str) -> None:
    """Requests signed with access_key are made by arn (a role's ARN, say), as key policies see them."""
    principals[access_key] = arn


def apply() -> None:
    global _applied
    if _applied:
        return
    _applied = True
    _refuse_writes_to_deleted_secrets()
    _enforce_key_policies()


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


def _enforce_key_policies() -> None:
    """The response sees the request's signature, so it names the caller; the backend, which sees the
    secrets, checks each call against the caller's rights on the keys (BatchGetSecretValue goes through
    GetSecretValue once per secret)."""
    backend = SecretsManagerBackend
    call_action = SecretsManagerResponse.call_action
    get_secret_value = backend.get_secret_value
    put_secret_value = backend.put_secret_value
    create_secret = backend.create_secret
    update_secret = backend.update_secret

    def named_call_action(self):
        token = _caller.set(_signer(self.headers.get("Authorization") or "", self.current_account))
        try:
            return call_action(self)
        finally:
            _caller.reset(token)

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
        if isinstance(secret, FakeSecret) and _caller.get() is not None:
            if kms_key_id is not None and _key(self, kms_key_id) is not _key(self, secret.kms_key_id):
                # Secrets Manager re-encrypts the current versions: read under the old key, written under the new
                _require(self, secret.kms_key_id, _DECRYPT)
                _require(self, kms_key_id, _REENCRYPT_TO)
            elif secret_string is not None or secret_binary is not None:
                _require(self, kms_key_id or secret.kms_key_id, _GENERATE)
        return update_secret(self, secret_id, secret_string, secret_binary, client_request_token, kms_key_id, **kwargs)

    SecretsManagerResponse.call_action = named_call_action
    backend.get_secret_value = checked_get_secret_value
    backend.put_secret_value = checked_put_secret_value
    backend.create_secret = checked_create_secret
    backend.update_secret = checked_update_secret


def _signer(authorization: str, account: str) -> Caller:
    """Whoever's access key signed the request: a registered principal, else an IAM user of the account."""
    found = _CREDENTIAL.search(authorization)
    if found is None:
        return ANONYMOUS
    arn = principals.get(found.group(1)) or f"arn:aws:iam::{account}:user/{found.group(1)}"
    return Caller(arn, arn.split(":")[4])


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
    kms = kms_backends[backend.account_id][backend.region_name]
    name = kms.get_alias_name(key_id)
    raw_id = kms.get_key_id_from_alias(name) if name.startswith("alias/") else kms.get_key_id(name)
    key = kms.keys.get(raw_id or "")
    if key is None:
        raise KmsAccessDenied()  # no such key: nobody may use it
    return None if any(alias.startswith("alias/aws/") for alias in key.aliases) else key


def _require(backend: SecretsManagerBackend, key_id: str | None, actions: tuple[str, ...]) -> None:
    """Refuse, as AWS does, unless the caller may do one of actions with the key through Secrets Manager.
    Outside a request (moto's own calls, a test's direct backend use) there is no caller and no check."""
    caller = _caller.get()
    key = _key(backend, key_id) if caller is not None else None
    if key is None:
        return
    context = {
        "kms:viaservice": f"secretsmanager.{backend.region_name}.amazonaws.com",
        "kms:calleraccount": caller.account,
        "aws:principalarn": caller.arn,
    }
    if not any(allows(key.policy, caller, action, context) for action in actions):
        raise KmsAccessDenied()


def allows(policy_text: str, caller: Caller, action: str, context: dict[str, str]) -> bool:
    """The key policy's answer, for what our key policies use: an explicit Deny wins, then any Allow.
    A condition this does not know never lets anyone in: it fails an Allow and holds for a Deny."""
    try:
        statements = json.loads(policy_text)["Statement"]
    except (TypeError, ValueError, KeyError):
        return False
    statements = [statements] if isinstance(statements, dict) else statements

    def applies(statement: dict, unknown: bool) -> bool:
        return (
            _any(statement.get("Action"), lambda pattern: _action_matches(pattern, action))
            and _principal_matches(statement.get("Principal"), caller)
            and _condition_holds(statement.get("Condition") or {}, context, unknown)
        )

    if any(s.get("Effect") == "Deny" and applies(s, unknown=True) for s in statements):
        return False
    return any(s.get("Effect") == "Allow" and applies(s, unknown=False) for s in statements)


def _any(values, test) -> bool:
    """A policy element is one string or a list of them."""
    return any(test(value) for value in ([values] if isinstance(values, str) else values or []))


def _action_matches(pattern: str, action: str) -> bool:
    return re.fullmatch(re.escape(pattern).replace(r"\*", ".*"), action, re.IGNORECASE) is not None


def _principal_matches(principal, caller: Caller) -> bool:
    """`*`, the caller's ARN, or the caller's account (its root ARN or bare id: IAM then decides, and
    locally every principal's IAM policy is taken to allow)."""
    if principal == "*":
        return True

    def matches(value: str) -> bool:
        root = _ACCOUNT_ROOT.fullmatch(value)
        return value in ("*", caller.arn, caller.account) or (root is not None and root.group(1) == caller.account)

    return isinstance(principal, dict) and _any(principal.get("AWS"), matches)


def _condition_holds(condition: dict, context: dict[str, str], unknown: bool) -> bool:
    """StringEquals on the keys in context (all must hold); aws:PrincipalOrgID never holds (no local
    principal is in an organization); any other operator or key counts as `unknown`."""
    results = []
    for operator, tests in condition.items():
        for name, wanted in tests.items():
            name = name.lower()
            if operator != "StringEquals" or (name not in context and name != "aws:principalorgid"):
                results.append(unknown)
            else:
                results.append(name in context and _any(wanted, lambda value, name=name: value == context[name]))
    return all(results)
