"""IAM for the local AWS: who signed each request, and the functions' roles held to their statements.

moto enforces no IAM policy, so on moto alone a function may call what its role in template.yaml does
not allow, and the tests pass where the deployed function is refused. `enforce()` hooks
BaseResponse.call_action, through which every service moto serves answers a request (S3 aside, which
dispatches its own way and which no function calls). It names the request's signer from the access
key it is signed with (`current`, which aws_fidelity's key policies read too), and refuses a call its
signer's identity-based statements do not allow, with AWS's own error, before moto serves it.

Only identities registered with a policy are checked: the functions' roles (devstack/function_roles.py).
Any other signer (the operator, an account administrator; the tests' and the runner's own setup
identities) is let through, as IAM lets an administrator through.
"""

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from xml.sax.saxutils import escape

from moto.core.responses import BaseResponse
from moto.core.utils import get_service_model
from moto.kms.models import Key, kms_backends
from moto.secretsmanager.exceptions import InvalidRequestException
from moto.secretsmanager.models import SecretsManagerBackend, secretsmanager_backends

from devstack.policy import ANONYMOUS, Decision, Principal, Request, evaluate

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")
# Secrets Manager's condition keys that carry a request parameter (Service Authorization Reference,
# "Actions, resources, and condition keys for AWS Secrets Manager"): a request without it lacks the key.
_SECRETS_MANAGER_KEYS = {
    "secretsmanager:Name": "Name",
    "secretsmanager:KmsKeyId": "KmsKeyId",
    "secretsmanager:RecoveryWindowInDays": "RecoveryWindowInDays",
    "secretsmanager:ForceDeleteWithoutRecovery": "ForceDeleteWithoutRecovery",
}


@dataclass(frozen=True)
class Identity:
    """Whoever signs with an access key: the principal policies see, the role session AWS's refusals
    name (the function), and the identity-based statements it is held to (read at each call; None: it
    is not checked)."""

    principal: Principal
    session: str = ""
    policy: Callable[[], list[dict]] | None = None


@dataclass(frozen=True)
class Check:
    """One authorization: who asked for which action on which resource, and the answer."""

    identity: Identity
    action: str
    resource: str
    decision: Decision


identities: dict[str, Identity] = {}  # access key id → its identity; any other key is an IAM user of the account
current: ContextVar[Identity | None] = ContextVar("aws_signer", default=None)  # the signer of the request served
_batch: ContextVar[Identity | None] = ContextVar("batch_get_secret_value", default=None)
_recorders: list[list[Check]] = []
_enforced = False


class SecretAccessDenied(InvalidRequestException):
    """Secrets Manager's AccessDeniedException, an InvalidRequestException to moto only so that
    BatchGetSecretValue lists it among its errors, per secret, as AWS does."""

    def __init__(self, message: str) -> None:
        super(InvalidRequestException, self).__init__("AccessDeniedException", message)


def register(access_key: str, identity: Identity) -> None:
    """Requests signed with access_key are made by identity."""
    identities[access_key] = identity


def signer(authorization: str, account: str) -> Identity:
    """Whoever's access key signed the request: a registered identity, else an IAM user of the account."""
    found = _CREDENTIAL.search(authorization)
    if found is None:
        return Identity(ANONYMOUS)
    key = found.group(1)
    return identities.get(key) or Identity(Principal(f"arn:aws:iam::{account}:user/{key}", account))


def principal_context(principal: Principal) -> dict[str, str | None]:
    """The global condition keys every request carries locally."""
    return {
        "aws:PrincipalArn": principal.arn,
        "aws:PrincipalAccount": principal.account,
        "aws:PrincipalOrgID": None,  # the local account is in no organization
    }


@contextmanager
def recording() -> Iterator[list[Check]]:
    """Every check made meanwhile, in order: what a test reads to find statements no call needed."""
    checks: list[Check] = []
    _recorders.append(checks)
    try:
        yield checks
    finally:
        _recorders.remove(checks)


def enforce() -> None:
    """Hook moto, once: name every request's signer, and hold each registered role to its statements."""
    global _enforced
    if _enforced:
        return
    _enforced = True
    serve = BaseResponse.call_action
    get_secret_value = SecretsManagerBackend.get_secret_value

    def call_action(self):
        identity = signer(self.headers.get("Authorization") or "", self.current_account)
        action = self._get_action()
        caller = current.set(identity)
        batch = _batch.set(identity if action == "BatchGetSecretValue" else None)
        try:
            if identity.policy is not None:
                service, parameters = get_service_model(self.boto3_service_name).signing_name, _parameters(self)
                context = principal_context(identity.principal) | _service_context(service, parameters)
                context["aws:RequestedRegion"] = self.region
                for wanted, resource in _authorizations(service, action, parameters, self):
                    if refusal := _refusal(identity, wanted, resource, context):
                        return _access_denied(self, refusal)
            return serve(self)
        finally:
            _batch.reset(batch)
            current.reset(caller)

    def batch_checked_get_secret_value(self, secret_id: str, *args, **kwargs):
        """AWS authorizes GetSecretValue on each secret of a batch, and lists a refused one in its errors."""
        identity = _batch.get()
        if identity is not None and identity.policy is not None:
            resource = _secret_arn(self, secret_id)
            context = principal_context(identity.principal) | _service_context("secretsmanager", {})
            context["aws:RequestedRegion"] = self.region_name
            if refusal := _refusal(identity, "secretsmanager:GetSecretValue", resource, context):
                raise SecretAccessDenied(refusal)
        return get_secret_value(self, secret_id, *args, **kwargs)

    BaseResponse.call_action = call_action
    SecretsManagerBackend.get_secret_value = batch_checked_get_secret_value


def _refusal(identity: Identity, action: str, resource: str, context: dict) -> str:
    """AWS's refusal message if identity's statements do not allow action on resource, else ''."""
    decision = evaluate(identity.policy(), Request(action, resource, identity.principal, context))
    for recorder in _recorders:
        recorder.append(Check(identity, action, resource, decision))
    if decision.allowed:
        return ""
    role = identity.principal.arn.rsplit("/", 1)[-1]
    who = f"arn:aws:sts::{identity.principal.account}:assumed-role/{role}/{identity.session}"
    why = (
        "with an explicit deny in an identity-based policy"
        if decision.explicit_deny
        else f"because no identity-based policy allows the {action} action"
    )
    return f"User: {who} is not authorized to perform: {action} on resource: {resource} {why}"


def _access_denied(response: BaseResponse, message: str) -> tuple[int, dict, str]:
    """AWS's AccessDeniedException (HTTP 400) in the protocol of the service that refuses: JSON, or the
    query protocols' XML. (moto's own serializer warns of a code missing from the service's model.)"""
    if "json" in response.determine_response_protocol(get_service_model(response.boto3_service_name)):
        body = json.dumps({"__type": "AccessDeniedException", "Message": message})
        return 400, {"x-amzn-ErrorType": "AccessDeniedException", "Content-Type": "application/x-amz-json-1.1"}, body
    error = f"<Type>Sender</Type><Code>AccessDeniedException</Code><Message>{escape(message)}</Message>"
    return 400, {"Content-Type": "text/xml"}, f"<ErrorResponse><Error>{error}</Error></ErrorResponse>"


def _parameters(response: BaseResponse) -> dict:
    """The request's parameters: parsed by moto for the services it parses, else the JSON body."""
    if response.automated_parameter_parsing:
        return dict(response.params)
    try:
        parameters = json.loads(response.body or "{}")
    except (TypeError, ValueError):
        return {}
    return parameters if isinstance(parameters, dict) else {}


def _service_context(service: str, parameters: dict) -> dict[str, str | None]:
    if service != "secretsmanager":
        return {}
    return {key: _text(parameters.get(name)) for key, name in _SECRETS_MANAGER_KEYS.items()}


def _text(value) -> str | None:
    if value is None:
        return None
    return str(value).lower() if isinstance(value, bool) else str(value)


def _authorizations(service: str, action: str, parameters: dict, response: BaseResponse) -> list[tuple[str, str]]:
    """The (service:Action, resource) pairs AWS authorizes for one call, each of which must be allowed."""
    own = f"{service}:{action}"
    region, account = response.region, response.current_account
    if service == "dynamodb":
        return [(own, table) for table in _tables(action, parameters, f"arn:aws:dynamodb:{region}:{account}")]
    if service == "secretsmanager":
        return _secrets_manager(action, parameters, secretsmanager_backends[account][region])
    if service == "events" and action == "PutEvents":
        buses = sorted({entry.get("EventBusName") or "default" for entry in parameters.get("Entries", [])})
        return [
            (own, bus if bus.startswith("arn:") else f"arn:aws:events:{region}:{account}:event-bus/{bus}")
            for bus in buses
        ]
    if service == "kms" and parameters.get("KeyId"):
        key = find_key(account, region, parameters["KeyId"])
        return [(own, key.arn if key else f"arn:aws:kms:{region}:{account}:key/{parameters['KeyId']}")]
    return [(own, "*")]


def _tables(action: str, parameters: dict, prefix: str) -> list[str]:
    """The table (or index) a call names; a batch or transaction names each of its tables."""
    if "TableName" in parameters:
        names = [parameters["TableName"]]
    else:
        names = [*parameters.get("RequestItems", {})]
        names += [item[kind]["TableName"] for item in parameters.get("TransactItems", []) for kind in item]
    if not names:
        return ["*"]
    index = f"/index/{parameters['IndexName']}" if action in ("Query", "Scan") and "IndexName" in parameters else ""
    return sorted({(name if name.startswith("arn:") else f"{prefix}:table/{name}") + index for name in names})


def _secrets_manager(action: str, parameters: dict, backend: SecretsManagerBackend) -> list[tuple[str, str]]:
    """The secret a call names, with the actions AWS requires besides the call's own: the Secrets
    Manager API Reference's "Required permissions" for CreateSecret (tags: TagResource; replica
    Regions: ReplicateSecretToRegions), RotateSecret (with a rotation function: lambda:InvokeFunction on
    it) and BatchGetSecretValue (filters: ListSecrets; GetSecretValue per secret, checked as moto reads
    each)."""
    own = f"secretsmanager:{action}"
    if action == "BatchGetSecretValue":
        return [(own, "*")] + ([("secretsmanager:ListSecrets", "*")] if parameters.get("Filters") else [])
    secret = parameters.get("SecretId") or parameters.get("Name")
    if not secret:
        return [(own, "*")]
    actions = [own]
    if action == "CreateSecret":
        actions += ["secretsmanager:TagResource"] if parameters.get("Tags") else []
        actions += ["secretsmanager:ReplicateSecretToRegions"] if parameters.get("AddReplicaRegions") else []
    resource = _secret_arn(backend, secret)
    pairs = [(each, resource) for each in actions]
    if action == "RotateSecret" and parameters.get("RotationLambdaARN"):  # its caller invokes the function
        pairs.append(("lambda:InvokeFunction", parameters["RotationLambdaARN"]))
    return pairs


def _secret_arn(backend: SecretsManagerBackend, secret_id: str) -> str:
    """An existing secret's full ARN (with its six-character suffix); a name no secret has yet as the
    ARN it would have, without the suffix."""
    secret = backend.secrets.get(secret_id)
    if secret is not None:
        return secret.arn
    if secret_id.startswith("arn:"):
        return secret_id
    return f"arn:aws:secretsmanager:{backend.region_name}:{backend.account_id}:secret:{secret_id}"


def find_key(account: str, region: str, key_id: str) -> Key | None:
    """The KMS key a KeyId names (its id, ARN, alias or alias ARN), if there is one."""
    kms = kms_backends[account][region]
    name = kms.get_alias_name(key_id)
    raw_id = kms.get_key_id_from_alias(name) if name.startswith("alias/") else kms.get_key_id(name)
    return kms.keys.get(raw_id or "")
