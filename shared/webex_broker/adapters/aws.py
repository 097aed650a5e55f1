"""boto3 clients, created on first use and reused across warm invocations.

boto3 honours AWS_ENDPOINT_URL, which is how the local stack points them at moto (the operator CLI
uses connect() instead, leaving its own environment alone). The low-level
DynamoDB client (not the resource API) keeps the cold start short.

Every client turns AWS's AccessDenied (IAM, or a KMS key policy behind Secrets Manager) into
AwsAccessDenied, naming the action and the resource, and counts it (metric AwsAccessDenied, alarmed):
a refusal is a configuration fault, and no `except ClientError` written for outages may catch it as one.
"""

import re
from collections.abc import Iterator
from functools import cache
from typing import TYPE_CHECKING, Any, Literal, cast, overload

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.model import OperationModel

from webex_broker.core.errors import AwsAccessDenied, AwsUnavailable
from webex_broker.core.observability import metrics

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_kms import KMSClient
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sns import SNSClient

# Enough pooled connections for the refresher's threads; "standard" retries back off on throttling.
_CONFIG = Config(max_pool_connections=64, retries={"mode": "standard", "max_attempts": 4})

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()
_endpoint_url: str | None = None  # None: boto3's own choice (AWS_ENDPOINT_URL, or AWS itself)
DENIED_CODES = frozenset({"AccessDeniedException", "AccessDenied", "KMSAccessDeniedException"})
_NAMED_RESOURCE = re.compile(r"on resource: (\S+)")
_RESOURCE_PARAMETERS = ("SecretId", "Name", "TableName", "KeyId", "FunctionName")


@overload
def client(service: Literal["dynamodb"]) -> "DynamoDBClient": ...
@overload
def client(service: Literal["secretsmanager"]) -> "SecretsManagerClient": ...
@overload
def client(service: Literal["events"]) -> "EventBridgeClient": ...
@overload
def client(service: Literal["kms"]) -> "KMSClient": ...
@overload
def client(service: Literal["sns"]) -> "SNSClient": ...
@overload
def client(service: Literal["lambda"]) -> "LambdaClient": ...
@overload
def client(service: Literal["cloudformation"]) -> "CloudFormationClient": ...
def client(service: str) -> Any:
    """Typed for the type checker by the mypy-boto3 stubs (a development dependency only)."""
    return _client(service)


@cache
def _client(service: str) -> Any:
    made = boto3.client(service, config=_CONFIG, endpoint_url=_endpoint_url)  # type: ignore[call-overload]
    made.meta.events.register("before-parameter-build", _note_resource)
    made.meta.events.register("after-call", _refuse_denied)
    made.meta.events.register("after-call-error", _unreachable)
    return made


def forget_clients() -> None:
    """A cold start (or the CLI aiming elsewhere): clients are made again at their next use."""
    _client.cache_clear()


def _note_resource(params: dict, context: dict, **_: object) -> None:
    """What the call is about, for a refusal that does not name it (a KMS key policy's)."""
    entries = params.get("Entries")
    named = next((params[p] for p in _RESOURCE_PARAMETERS if isinstance(params.get(p), str)), "")
    if not named and isinstance(entries, list) and entries:
        named = f"event-bus/{entries[0].get('EventBusName', 'default')}"
    context["broker_resource"] = named


def _refuse_denied(parsed: dict, model: OperationModel, context: dict, **_: object) -> None:
    """AWS's error answers as the broker's errors: a refusal is AwsAccessDenied, anything else
    AwsCallFailed (still a ClientError, for the adapters that tell codes apart)."""
    error = parsed.get("Error", {}) if isinstance(parsed, dict) else {}
    code = error.get("Code")
    if not code:
        return
    if code not in DENIED_CODES:
        raise AwsCallFailed(parsed, model.name)
    named = _NAMED_RESOURCE.search(error.get("Message", ""))
    action = f"{model.service_model.signing_name}:{model.name}"
    metrics.add_metric(name="AwsAccessDenied", unit="Count", value=1)
    raise AwsAccessDenied(action, named.group(1) if named else context.get("broker_resource", ""))


def _unreachable(exception: Exception, **_: object) -> None:
    """A call that got no answer at all (no connection, a read timeout): AwsUnreachable."""
    if isinstance(exception, BotoCoreError) and not isinstance(exception, AwsUnavailable):
        raise AwsUnreachable(type(exception).__name__) from exception


class AwsCallFailed(AwsUnavailable, ClientError):
    """An error answer from AWS: the broker's AwsUnavailable, and botocore's ClientError (its response,
    its code) for the adapters that act on particular codes."""

    def __init__(self, error_response: Any, operation_name: str):
        ClientError.__init__(self, error_response, operation_name)
        self.code = error_code(self)


class AwsUnreachable(AwsUnavailable):
    def __init__(self, name: str):
        super().__init__(f"AWS could not be reached ({name})", code=name)


def connect(*, region_name: str, endpoint_url: str | None = None, **credentials: str) -> None:
    """For the operator CLI, whose target (a deployed stack's region, or the local stack's endpoint
    and credentials) is not its own environment's: every client built from now on goes there."""
    global _endpoint_url
    boto3.setup_default_session(region_name=region_name, **credentials)  # type: ignore[arg-type]
    _endpoint_url = endpoint_url
    forget_clients()


def to_item(values: dict) -> dict:
    return {key: _serializer.serialize(value) for key, value in values.items() if value is not None}


def from_item(item: dict) -> dict:
    return {key: _deserializer.deserialize(value) for key, value in item.items()}


def old_item(exc: ClientError) -> dict:
    """The item a failed conditional write found (ReturnValuesOnConditionCheckFailure), as plain values."""
    return from_item(cast(dict, exc.response.get("Item") or {}))


def get_item(table: str, key: str, value: str) -> dict | None:
    """One item by its string key, read consistently, as plain Python values (None if absent)."""
    item = client("dynamodb").get_item(TableName=table, Key={key: {"S": value}}, ConsistentRead=True).get("Item")
    return from_item(item) if item else None


def scan(table: str) -> Iterator[dict]:
    """Every item, page by page, as plain Python values: for operators' listings, never a hot path."""
    for page in client("dynamodb").get_paginator("scan").paginate(TableName=table):
        for item in page.get("Items", []):
            yield from_item(item)


def error_code(exc: Exception) -> str:
    """The AWS error code of a botocore ClientError, or '' for anything else."""
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


def condition_failed(exc: Exception) -> bool:
    """A conditional write lost: someone else's state won, which callers turn into their own answer."""
    return error_code(exc) == "ConditionalCheckFailedException"
