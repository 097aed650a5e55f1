"""Each function signs its AWS calls as its own role, as on Lambda, so that the local AWS holds every call
to what that role's statements in the template allow (devstack/iam.py).

The roles are those SAM generates for the functions (`<Fn>Role`, on the stack's RolePath), named as
CloudFormation names them. Their statements are resolved from the environment the functions run with,
read at each call, so a test that changes SECRET_PREFIX or a table's name meets the policy a deploy
with those values would give. The managed AWSLambdaBasicExecutionRole is left out: it allows only
CloudWatch Logs, which nothing local calls.

Locally every function shares one process, and boto3's clients are cached process-wide
(webex_broker.adapters.aws), so the role is chosen where a request is signed: while a handler runs, a
context variable holds its role's credentials and botocore signs with them. Work a handler hands to a
thread pool keeps them, as every thread of a Lambda process has the function's credentials.
"""

import contextvars
import hashlib
import os
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path

from botocore.credentials import Credentials
from botocore.signers import RequestSigner

from devstack import iam
from devstack.policy import Principal
from devstack.template import LocalResolver, load_template, table_definitions, template_path, translated_template

ACCOUNT = "123456789012"
REGION = "us-east-1"
ROLE_NAME_MAX = 64  # IAM's limit, to which CloudFormation shortens the names it makes
SUFFIX_LENGTH = 12


@dataclass(frozen=True)
class FunctionRole:
    stack: str
    function: str  # the function's logical id, which also names its role session
    logical_id: str  # the role's
    arn: str

    @property
    def credentials(self) -> Credentials:
        return Credentials(f"local-{self.logical_id}", "local-role-secret", "local-role-session")


_signing: contextvars.ContextVar[Credentials | None] = contextvars.ContextVar("function_role", default=None)
_stack: str | None = None  # the stack whose roles the functions sign as, once installed


def install(stack: str) -> None:
    """From now on each handler signs as its role in `stack`, and the local AWS knows every role."""
    global _stack
    _stack = stack
    for role in roles(stack).values():
        identity = iam.Identity(
            Principal(role.arn, ACCOUNT), session=role.function, policy=lambda role=role: statements(role, os.environ)
        )
        iam.register(role.credentials.access_key, identity)
    _sign_with_function_roles()


@contextmanager
def signing_as(function: str) -> Iterator[None]:
    """Calls made meanwhile (and by work handed to thread pools) are signed as the function's role;
    as before if no stack is installed."""
    role = roles(_stack).get(function) if _stack else None
    token = _signing.set(role.credentials if role else None)
    try:
        yield
    finally:
        _signing.reset(token)


def roles(stack: str) -> dict[str, FunctionRole]:
    """Function logical id → its role, as SAM generates it for this template."""
    return _roles(template_path(), stack)


def arn_values(stack: str) -> dict[str, str]:
    """`<Fn>Role.Arn` of every function role, for a LocalResolver."""
    return {f"{role.logical_id}.Arn": role.arn for role in roles(stack).values()}


def register_setup_role(access_key: str, stack: str, name: str) -> None:
    """Requests signed with access_key come from role `name` on the stack's role path, which the broker
    key trusts and IAM does not check: the identity the tests and the runner set the stack up with."""
    path = LocalResolver(parameters={}, resources={}, stack_name=stack).resolve(
        load_template()["Globals"]["Function"].get("RolePath", "/")
    )
    iam.register(access_key, iam.Identity(Principal(_role_arn(path, name), ACCOUNT)))


def statements(role: FunctionRole, environ: Mapping[str, str]) -> list[dict]:
    """The role's statements, resolved for the environment its function runs with."""
    parameters = {
        "SecretPrefix": environ.get("SECRET_PREFIX", ""),
        "ExistingClientSecretArn": environ.get("CLIENT_SECRET_ARN", ""),
    }
    resources = {"ClientSecret": environ.get("CLIENT_SECRET_ARN", ""), "TokenKey": environ.get("TOKEN_KMS_KEY_ID", "")}
    path = template_path()
    for variable, table in _table_variables(path).items():
        name = environ.get(variable, "")
        resources |= {table: name, f"{table}.Arn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"}
    resolved = _resolved(path, role.stack, tuple(parameters.items()), tuple(sorted(resources.items())))
    return resolved[role.logical_id]


@cache
def _roles(path: Path, stack: str) -> dict[str, FunctionRole]:
    """`path`, the template's, keys the cache: a test may point WEBEX_BROKER_TEMPLATE at another."""
    resources = translated_template()["Resources"]
    resolver = LocalResolver(parameters={}, resources={}, stack_name=stack)
    made = {}
    for function, resource in resources.items():
        if resource["Type"] == "AWS::Lambda::Function":
            role = resource["Properties"]["Role"]["Fn::GetAtt"][0]
            role_path = resolver.resolve(resources[role]["Properties"].get("Path", "/"))
            name = f"{stack}-{role}"[: ROLE_NAME_MAX - SUFFIX_LENGTH - 1] + "-" + _suffix(f"{stack}/{role}")
            made[function] = FunctionRole(stack, function, role, _role_arn(role_path, name))
    return made


@lru_cache(maxsize=64)
def _resolved(path: Path, stack: str, parameters: tuple, resources: tuple) -> dict[str, list[dict]]:
    """Every function role's statements, resolved once per set of values."""
    template_resources = translated_template()["Resources"]
    values = dict(resources) | arn_values(stack)
    resolver = LocalResolver(parameters=dict(parameters), resources=values, stack_name=stack)
    resolved = {}
    for role in _roles(path, stack).values():
        documents = [
            policy["PolicyDocument"] for policy in template_resources[role.logical_id]["Properties"]["Policies"]
        ]
        statements = [resolver.resolve(document)["Statement"] for document in documents]
        resolved[role.logical_id] = [
            statement
            for found in statements
            for statement in (found if isinstance(found, list) else [found])
            if statement  # Fn::If → AWS::NoValue
        ]
    return resolved


@cache
def _table_variables(path: Path) -> dict[str, str]:
    """The functions' environment variables that name a table (`STATE_TABLE: !Ref StateTable`); `path`
    keys the cache."""
    variables = load_template()["Globals"]["Function"]["Environment"]["Variables"]
    tables = table_definitions()
    return {
        name: value["Ref"]
        for name, value in variables.items()
        if isinstance(value, dict) and value.get("Ref") in tables
    }


def _role_arn(path: str, name: str) -> str:
    return f"arn:aws:iam::{ACCOUNT}:role{path}{name}"


def _suffix(seed: str) -> str:
    """CloudFormation's random suffix, here the same on every run."""
    return hashlib.sha256(seed.encode()).hexdigest()[:SUFFIX_LENGTH].upper()


def _sign_with_function_roles() -> None:
    """Patch botocore's signer and the thread pool, once."""
    if getattr(RequestSigner.get_auth_instance, "function_roles", False):
        return
    get_auth_instance = RequestSigner.get_auth_instance
    submit = ThreadPoolExecutor.submit

    def signed_as_function(self, signing_name, region_name, signature_version=None, request_credentials=None, **kw):
        credentials = request_credentials or _signing.get()
        return get_auth_instance(self, signing_name, region_name, signature_version, credentials, **kw)

    def submit_in_context(self, fn, /, *args, **kwargs):
        return submit(self, contextvars.copy_context().run, fn, *args, **kwargs)

    signed_as_function.function_roles = True
    RequestSigner.get_auth_instance = signed_as_function
    ThreadPoolExecutor.submit = submit_in_context
