"""AWS's documented request limits, enforced on every boto3 call made in this process.

moto accepts much that AWS refuses (a 3,000-byte DynamoDB key, a secret name with a space, a 65-character
ClientRequestToken, an EventBridge Detail that is not a JSON object), so a suite on moto alone would pass
code that fails on its first real call. `install()` wraps `BaseClient._make_api_call`: every call of every
client is first checked here and refused with the error AWS itself answers.

- From the botocore service models: every `max` (length, entries, value) the model lists; botocore already
  checks `min` on the client side.
- From the AWS documentation: DynamoDB key and item sizes, empty keys and sets, table names; Secrets
  Manager names and secret size; EventBridge's 256 KB request and its per-entry refusals.
"""

import json
import re
from decimal import Decimal, InvalidOperation
from functools import cache

import botocore.session
from botocore.client import BaseClient
from botocore.exceptions import ClientError

# DynamoDB: https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html
HASH_KEY_MAX_BYTES = 2048
RANGE_KEY_MAX_BYTES = 1024
ITEM_MAX_BYTES = 400 * 1024
# Secrets Manager: https://docs.aws.amazon.com/secretsmanager/latest/userguide/reference_limits.html
SECRET_MAX_BYTES = 65536
# EventBridge: https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-putevent-size.html
PUT_EVENTS_MAX_BYTES = 256 * 1024

_TABLE_NAME = re.compile(r"[a-zA-Z0-9_.-]+")
_SECRET_NAME = re.compile(r"[A-Za-z0-9/_+=.@-]*")
_SECRET_ID = re.compile(r"[A-Za-z0-9/_+=.@!-]*")  # "!": names of AWS-managed secrets (rds!cluster-…)
_INVALID_SECRET_NAME = (
    "Invalid name. Must be a valid name containing alphanumeric characters, or any of the following: -/_+=.@!"
)
_SETS = {"SS": "string", "NS": "number", "BS": "binary"}

# Table name → (attribute → HASH/RANGE, index name → attribute → HASH/RANGE), learnt from CreateTable.
_key_schemas: dict[str, tuple[dict[str, str], dict[str, dict[str, str]]]] = {}


def refusal(code: str, message: str, operation: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 400}}, operation
    )


def check(service: str, operation: str, params: dict, *, service_model=None) -> None:
    """Raise the ClientError AWS would answer if `params` break a documented limit; else return.

    `service_model` is the calling client's (botocore's latest for the service if not given)."""
    model = service_model or _service_model(service)
    violations = _model_violations(model.operation_model(operation).input_shape, params, "")
    if service == "dynamodb":
        violations += _table_name_violations(params)
    if violations:
        count = f"{len(violations)} validation error{'s' if len(violations) > 1 else ''} detected: "
        raise refusal("ValidationException", count + "; ".join(violations), operation)
    by_service = {"dynamodb": _dynamodb, "secretsmanager": _secretsmanager, "events": _events}
    if service in by_service:
        by_service[service](operation, params)


def install() -> None:
    """Check every call of every boto3 client, whatever its session; idempotent."""
    original = BaseClient._make_api_call
    if getattr(original, "aws_limits", False):
        return

    def _make_api_call(self, operation_name, api_params):
        service = self.meta.service_model.service_name
        try:
            check(service, operation_name, api_params, service_model=self.meta.service_model)
        except ClientError as refused:
            # As AWS's own error answer: through the client's after-call handlers (the broker's turn
            # it into its own error), else as the client's modeled exception (`except client.exceptions.X`).
            service_id = self.meta.service_model.service_id.hyphenize()
            self.meta.events.emit(
                f"after-call.{service_id}.{operation_name}",
                http_response=None,
                parsed=refused.response,
                model=self.meta.service_model.operation_model(operation_name),
                context={},
            )
            raise self.exceptions.from_code(refused.response["Error"]["Code"])(
                refused.response, operation_name
            ) from None
        if service == "events" and operation_name == "PutEvents":
            return _put_events(lambda kept: original(self, operation_name, kept), api_params)
        response = original(self, operation_name, api_params)
        if service == "dynamodb" and operation_name == "CreateTable":
            _remember_key_schema(api_params)
        return response

    _make_api_call.aws_limits = True
    BaseClient._make_api_call = _make_api_call


# --- The service models' maxima -------------------------------------------------------------


@cache
def _service_model(service: str):
    return botocore.session.get_session().get_service_model(service)


def _model_violations(shape, value, path: str) -> list[str]:
    """AWS's "Value '…' at 'path' failed to satisfy constraint" for every `max` the model lists."""
    if shape is None:
        return []
    found = []
    kind, limit = shape.type_name, shape.metadata.get("max")
    if kind == "structure" and isinstance(value, dict):
        for name, member in value.items():
            if name in shape.members:
                found += _model_violations(shape.members[name], member, f"{path}.{_camel(name)}".lstrip("."))
        return found
    if kind == "list" and isinstance(value, list | tuple):
        for i, item in enumerate(value, 1):
            found += _model_violations(shape.member, item, f"{path}.{i}.member")
    elif kind == "map" and isinstance(value, dict):
        for key, item in value.items():
            found += _model_violations(shape.key, key, path) + _model_violations(shape.value, item, f"{path}.{key}")
    if kind in ("integer", "long", "float", "double"):
        measured, what = (value if isinstance(value, int | float) else None), "value"
    else:
        measured, what = (
            (len(value) if isinstance(value, str | bytes | bytearray | list | tuple | dict) else None),
            "length",
        )
    if limit is not None and measured is not None and measured > limit:
        shown = f"Value at '{path}'" if shape.metadata.get("sensitive") else f"Value '{value}' at '{path}'"
        found.append(f"{shown} failed to satisfy constraint: Member must have {what} less than or equal to {limit}")
    return found


def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


# --- DynamoDB -------------------------------------------------------------------------------


def _remember_key_schema(params: dict) -> None:
    def roles(schema) -> dict[str, str]:
        return {k["AttributeName"]: k["KeyType"] for k in schema or []}

    indexes = [*params.get("GlobalSecondaryIndexes", []), *params.get("LocalSecondaryIndexes", [])]
    _key_schemas[params["TableName"]] = (
        roles(params.get("KeySchema")),
        {index["IndexName"]: roles(index["KeySchema"]) for index in indexes},
    )


def _requests(params: dict):
    """(table, request) for the call itself and each request inside a transaction or batch."""
    yield params.get("TableName"), params
    for item in params.get("TransactItems", []):
        for request in item.values():
            yield request.get("TableName"), request
    for table, requests in params.get("RequestItems", {}).items():
        if isinstance(requests, dict):  # BatchGetItem
            for key in requests.get("Keys", []):
                yield table, {"Key": key}
        else:  # BatchWriteItem
            for write in requests:
                for request in write.values():
                    yield table, request


def _table_name_violations(params: dict) -> list[str]:
    found = []
    for table, _ in _requests(params):
        if not isinstance(table, str) or not table or table.startswith("arn:"):
            continue  # botocore refuses an empty name; an ARN is a valid TableName
        shown = f"Value '{table}' at 'tableName' failed to satisfy constraint: Member must"
        if len(table) < 3:
            found.append(f"{shown} have length greater than or equal to 3")
        if len(table) > 255:
            found.append(f"{shown} have length less than or equal to 255")
        if not _TABLE_NAME.fullmatch(table):
            found.append(f"{shown} satisfy regular expression pattern: [a-zA-Z0-9_.-]+")
    return found


def _dynamodb(operation: str, params: dict) -> None:
    def invalid(message: str):
        return refusal("ValidationException", message, operation)

    for table, request in _requests(params):
        for part in ("Item", "Key"):
            attributes = request.get(part)
            if not isinstance(attributes, dict):
                continue
            _check_keys(table, attributes, part, invalid)
            if _item_size(attributes) > ITEM_MAX_BYTES:
                raise invalid("Item size has exceeded the maximum allowed size")
            for value in attributes.values():
                if set_name := _empty_set(value):
                    raise invalid(f"One or more parameter values were invalid: An {set_name} set  may not be empty")
        for part in ("ExpressionAttributeValues", "ExpressionAttributeNames"):
            if request.get(part) == {}:
                raise invalid(f"{part} must not be empty")
        for name, value in (request.get("ExpressionAttributeValues") or {}).items():
            if set_name := _empty_set(value):
                raise invalid(
                    "ExpressionAttributeValues contains invalid value: One or more parameter values were invalid: "
                    f"An {set_name} set  may not be empty for key {name}"
                )


def _check_keys(table, attributes: dict, part: str, invalid) -> None:
    name = table.rsplit("/", 1)[-1] if isinstance(table, str) else ""
    keys, indexes = _key_schemas.get(name, ({}, {}))
    if not keys and part == "Key" and len(attributes) == 1:
        keys = dict.fromkeys(attributes, "HASH")  # a table we did not see created: its Key is its hash key
    for attribute in keys:
        if _is_empty(attributes.get(attribute)):
            raise invalid(
                "One or more parameter values are not valid. The AttributeValue for a key attribute cannot "
                f"contain an empty string value. Key: {attribute}"
            )

    def key_bytes(role: str) -> int:
        return sum(_size(attributes[a]) for a, r in keys.items() if r == role and a in attributes)

    if key_bytes("HASH") > HASH_KEY_MAX_BYTES:
        raise invalid(
            "One or more parameter values were invalid: Size of hashkey has exceeded the maximum size limit of "
            f"{HASH_KEY_MAX_BYTES} bytes"
        )
    if key_bytes("RANGE") > RANGE_KEY_MAX_BYTES:
        raise invalid(
            "One or more parameter values were invalid: Aggregated size of all range keys has exceeded the size "
            f"limit of {RANGE_KEY_MAX_BYTES} bytes"
        )
    for index, index_keys in indexes.items():
        for attribute in index_keys:
            if _is_empty(attributes.get(attribute)):
                raise invalid(
                    "One or more parameter values are not valid. A value specified for a secondary index key is not "
                    "supported. The AttributeValue for a key attribute cannot contain an empty string value. "
                    f"IndexName: {index}, IndexKey: {attribute}"
                )


def _is_empty(value) -> bool:
    return isinstance(value, dict) and (value.get("S") == "" or value.get("B") in (b"", ""))


def _empty_set(value) -> str:
    """The kind of the first empty set in an attribute value (nested in maps and lists too), or ''."""
    if not isinstance(value, dict):
        return ""
    for kind, inner in value.items():
        if kind in _SETS and len(inner) == 0:
            return _SETS[kind]
        nested = inner.values() if kind == "M" else inner if kind == "L" else ()
        for item in nested:
            if found := _empty_set(item):
                return found
    return ""


def _item_size(attributes: dict) -> int:
    """Attribute names plus values, UTF-8, as DynamoDB counts an item's size."""
    return sum(len(name.encode()) + _size(value) for name, value in attributes.items())


def _size(value) -> int:
    if not isinstance(value, dict) or len(value) != 1:
        return 0
    ((kind, inner),) = value.items()
    match kind:
        case "S" if isinstance(inner, str):
            return len(inner.encode())
        case "B" if isinstance(inner, str | bytes | bytearray):
            return len(inner.encode() if isinstance(inner, str) else inner)
        case "N":
            return _number_size(inner)
        case "SS" | "NS" | "BS":
            return sum(_size({kind[0]: member}) for member in inner)
        case "M" if isinstance(inner, dict):
            return 3 + sum(len(name.encode()) + 1 + _size(member) for name, member in inner.items())
        case "L" if isinstance(inner, list | tuple):
            return 3 + sum(1 + _size(member) for member in inner)
        case "BOOL" | "NULL":
            return 1
    return 0  # not an AttributeValue: botocore refuses it


def _number_size(number: str) -> int:
    """1 byte per two significant digits, plus 1."""
    try:
        digits = Decimal(number).as_tuple().digits
    except (InvalidOperation, TypeError, ValueError):
        return len(str(number))
    significant = "".join(map(str, digits)).strip("0") or "0"
    return (len(significant) + 1) // 2 + 1


# --- Secrets Manager ----------------------------------------------------------------------------


def _secretsmanager(operation: str, params: dict) -> None:
    name, secret_id = params.get("Name"), params.get("SecretId")
    if operation == "CreateSecret" and isinstance(name, str) and not _SECRET_NAME.fullmatch(name):
        raise refusal("ValidationException", _INVALID_SECRET_NAME, operation)
    if isinstance(secret_id, str) and not secret_id.startswith("arn:") and not _SECRET_ID.fullmatch(secret_id):
        raise refusal("ValidationException", _INVALID_SECRET_NAME, operation)
    secret = params.get("SecretString")
    if isinstance(secret, str) and len(secret.encode()) > SECRET_MAX_BYTES:
        raise refusal(
            "ValidationException",
            "1 validation error detected: Value at 'secretString' failed to satisfy constraint: "
            f"Member must have length less than or equal to {SECRET_MAX_BYTES}",
            operation,
        )


# --- EventBridge --------------------------------------------------------------------------------


def _events(operation: str, params: dict) -> None:
    if operation == "PutEvents" and sum(map(_entry_size, params.get("Entries", []))) > PUT_EVENTS_MAX_BYTES:
        raise refusal("ValidationException", "Total size of the entries in the request is over the limit.", operation)


def _entry_size(entry: dict) -> int:
    size = 14 if entry.get("Time") else 0
    for text in (entry.get("Source"), entry.get("DetailType"), entry.get("Detail"), *entry.get("Resources", [])):
        size += len(text.encode()) if isinstance(text, str) else 0
    return size


def _entry_refusal(entry: dict) -> dict | None:
    """What AWS answers, in that entry's place, for an entry it does not accept (the others go through)."""
    for field in ("Source", "DetailType", "Detail"):
        if not entry.get(field):
            reason = f"Parameter {field} is not valid. Reason: {field} is a required argument."
            return {"ErrorCode": "InvalidArgument", "ErrorMessage": reason}
    try:
        detail = json.loads(entry["Detail"])
    except (TypeError, ValueError):
        detail = None
    if isinstance(detail, dict):
        return None
    return {"ErrorCode": "MalformedDetail", "ErrorMessage": "Detail is malformed."}


def _put_events(send, params: dict) -> dict:
    entries = params.get("Entries", [])
    refused = {i: r for i, entry in enumerate(entries) if (r := _entry_refusal(entry))}
    if not refused:
        return send(params)
    kept = [entry for i, entry in enumerate(entries) if i not in refused]
    nothing_sent = {"FailedEntryCount": 0, "Entries": [], "ResponseMetadata": {"HTTPStatusCode": 200}}
    response = send({**params, "Entries": kept}) if kept else nothing_sent
    results = iter(response["Entries"])
    response["Entries"] = [refused[i] if i in refused else next(results) for i in range(len(entries))]
    response["FailedEntryCount"] = response.get("FailedEntryCount", 0) + len(refused)
    return response
