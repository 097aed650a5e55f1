"""AWS's limits, not moto's: every boto3 call in the suite goes through devstack/aws_limits.py, which
refuses what AWS refuses, with AWS's own error (moto would accept it). Over a limit is refused, at the
limit goes through. And the functions' environment fits Lambda's 4 KB with every parameter at its longest."""

import json
import re
import re._constants
import re._parser

import boto3
import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError, ParamValidationError

from devstack import aws_limits
from devstack.template import LocalResolver, function_definitions, load_template

KB = 1024


@pytest.fixture
def aws(monkeypatch, moto_credentials):
    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def refused(call, code: str, message: str) -> ClientError:
    with pytest.raises(ClientError) as caught:
        call()
    error = caught.value.response["Error"]
    assert (error["Code"], caught.value.response["ResponseMetadata"]["HTTPStatusCode"]) == (code, 400), error
    assert message in error["Message"], error["Message"]
    return caught.value


# --- The mechanism ------------------------------------------------------------------------------


def test_every_client_of_every_session_is_checked_and_install_is_idempotent(aws):
    wrapper = BaseClient._make_api_call
    aws_limits.install()
    assert BaseClient._make_api_call is wrapper, "installed once, not wrapped twice"
    other = boto3.Session(region_name="eu-west-1").client("secretsmanager")
    refused(lambda: other.create_secret(Name="with space", SecretString="x"), "ValidationException", "Invalid name")
    assert other.list_secrets()["SecretList"] == [], "refused before anything reached the service"


def test_a_refusal_is_raised_as_the_clients_modeled_exception(aws, monkeypatch):
    def refuse(service, operation, params, **_):
        raise aws_limits.refusal("InvalidParameterException", "as AWS says it", operation)

    monkeypatch.setattr(aws_limits, "check", refuse)
    sm = boto3.client("secretsmanager")
    with pytest.raises(sm.exceptions.InvalidParameterException, match="as AWS says it"):
        sm.list_secrets()


# --- DynamoDB -----------------------------------------------------------------------------------


@pytest.fixture
def dynamodb(aws):
    client = boto3.client("dynamodb")
    client.create_table(
        TableName="Limits",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "owner", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "ByOwner",
                "KeySchema": [{"AttributeName": "owner", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    return client


def key(pk: str, sk: str = "s") -> dict:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def test_a_partition_key_is_at_most_2048_bytes_of_utf8(dynamodb):
    at_limit = "é" * 1024  # 1,024 characters, 2,048 bytes
    dynamodb.put_item(TableName="Limits", Item=key(at_limit))
    assert dynamodb.get_item(TableName="Limits", Key=key(at_limit))["Item"]
    message = (
        "One or more parameter values were invalid: Size of hashkey has exceeded the maximum size limit of 2048 bytes"
    )
    refused(lambda: dynamodb.put_item(TableName="Limits", Item=key(at_limit + "x")), "ValidationException", message)
    refused(lambda: dynamodb.get_item(TableName="Limits", Key=key(at_limit + "x")), "ValidationException", message)
    refused(lambda: dynamodb.delete_item(TableName="Limits", Key=key("A" * 2049)), "ValidationException", message)


def test_a_sort_key_is_at_most_1024_bytes(dynamodb):
    dynamodb.put_item(TableName="Limits", Item=key("p", "s" * 1024))
    refused(
        lambda: dynamodb.update_item(
            TableName="Limits",
            Key=key("p", "s" * 1025),
            UpdateExpression="SET n = :n",
            ExpressionAttributeValues={":n": {"N": "1"}},
        ),
        "ValidationException",
        "Aggregated size of all range keys has exceeded the size limit of 1024 bytes",
    )


def test_an_item_is_at_most_400_kb_names_and_values(dynamodb):
    def item(size: int) -> dict:
        fixed = len("pkpsksdata")
        return {**key("p"), "data": {"S": "d" * (size - fixed)}}

    aws_limits.check("dynamodb", "PutItem", {"TableName": "Limits", "Item": item(400 * KB)})  # AWS takes it
    dynamodb.put_item(TableName="Limits", Item=item(405_000))  # moto's own cap (stricter than AWS's 409,600)
    sent = []
    dynamodb.meta.events.register("before-call.dynamodb.PutItem", lambda **_: sent.append(1))
    refused(
        lambda: dynamodb.put_item(TableName="Limits", Item=item(400 * KB + 1)),
        "ValidationException",
        "Item size has exceeded the maximum allowed size",
    )
    assert sent == [], "refused by the check, before moto saw it"


def test_a_key_attribute_is_never_an_empty_string(dynamodb):
    refused(
        lambda: dynamodb.get_item(TableName="Limits", Key=key("")),
        "ValidationException",
        "The AttributeValue for a key attribute cannot contain an empty string value. Key: pk",
    )
    refused(
        lambda: dynamodb.put_item(TableName="Limits", Item={**key("p"), "owner": {"S": ""}}),
        "ValidationException",
        "A value specified for a secondary index key is not supported. The AttributeValue for a key attribute "
        "cannot contain an empty string value. IndexName: ByOwner, IndexKey: owner",
    )
    dynamodb.put_item(TableName="Limits", Item={**key("p"), "note": {"S": ""}})  # a non-key attribute may be empty


def test_a_set_is_never_empty(dynamodb):
    refused(
        lambda: dynamodb.put_item(TableName="Limits", Item={**key("p"), "tags": {"M": {"t": {"SS": []}}}}),
        "ValidationException",
        "One or more parameter values were invalid: An string set  may not be empty",
    )
    update = {"TableName": "Limits", "Key": key("p"), "UpdateExpression": "ADD tags :tags"}
    refused(
        lambda: dynamodb.update_item(**update, ExpressionAttributeValues={":tags": {"NS": []}}),
        "ValidationException",
        "ExpressionAttributeValues contains invalid value: One or more parameter values were invalid: "
        "An number set  may not be empty for key :tags",
    )
    refused(
        lambda: dynamodb.update_item(**update, ExpressionAttributeValues={}),
        "ValidationException",
        "ExpressionAttributeValues must not be empty",
    )
    dynamodb.update_item(**update, ExpressionAttributeValues={":tags": {"SS": ["a"]}})


@pytest.mark.parametrize(
    ("name", "constraint"),
    [
        ("ab", "Member must have length greater than or equal to 3"),
        ("t" * 256, "Member must have length less than or equal to 255"),
        ("bad name", "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"),
        ("bad/name", "Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"),
    ],
)
def test_a_table_name_is_3_to_255_of_letters_digits_and_dot_dash_underscore(dynamodb, name, constraint):
    refused(lambda: dynamodb.describe_table(TableName=name), "ValidationException", constraint)


@pytest.mark.parametrize("name", ["abc", "t" * 255, "My_Table.v-2"])
def test_a_table_name_at_the_limits_is_accepted(dynamodb, name):
    dynamodb.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.put_item(TableName=name, Item={"pk": {"S": "p"}})


# --- Secrets Manager --------------------------------------------------------------------------


@pytest.fixture
def secrets(aws):
    return boto3.client("secretsmanager")


INVALID_NAME = "Invalid name. Must be a valid name containing alphanumeric characters"


@pytest.mark.parametrize("name", ["o'brien", "a#b", "bang!", "with space", "tab\tname", "ünïcode", "a,b", "a:b"])
def test_a_secret_name_outside_letters_digits_and_slash_underscore_plus_equals_dot_at_dash_is_refused(secrets, name):
    refused(lambda: secrets.create_secret(Name=name, SecretString="x"), "ValidationException", INVALID_NAME)


def test_a_secret_name_is_at_most_512_characters(secrets):
    secrets.create_secret(Name="prefix/tokens/a.b+c=d@example.com-_", SecretString="x")
    secrets.create_secret(Name="n" * 512, SecretString="x")
    refused(
        lambda: secrets.create_secret(Name="n" * 513, SecretString="x"),
        "ValidationException",
        "at 'name' failed to satisfy constraint: Member must have length less than or equal to 512",
    )


def test_a_secret_id_that_is_a_name_follows_the_name_rule_and_an_arn_is_accepted(secrets):
    arn = secrets.create_secret(Name="p/tokens/alice@example.com", SecretString="x")["ARN"]
    assert secrets.get_secret_value(SecretId=arn)["SecretString"] == "x"
    for call in (
        lambda: secrets.get_secret_value(SecretId="p/tokens/alice smith"),
        lambda: secrets.put_secret_value(SecretId="p/tokens/o'brien", SecretString="y"),
        lambda: secrets.describe_secret(SecretId="p/tokens/#1"),
    ):
        refused(call, "ValidationException", INVALID_NAME)


def test_a_client_request_token_is_32_to_64_characters(secrets):
    secrets.create_secret(Name="s", SecretString="x", ClientRequestToken="t" * 64)
    refused(
        lambda: secrets.put_secret_value(SecretId="s", SecretString="y", ClientRequestToken="t" * 65),
        "ValidationException",
        "at 'clientRequestToken' failed to satisfy constraint: Member must have length less than or equal to 64",
    )
    with pytest.raises(ParamValidationError):  # the minimum botocore itself checks, before sending
        secrets.put_secret_value(SecretId="s", SecretString="y", ClientRequestToken="t" * 31)


def test_a_secret_value_is_at_most_65536_bytes_of_utf8(secrets):
    secrets.create_secret(Name="ascii", SecretString="x" * 65536)
    secrets.create_secret(Name="two-byte", SecretString="é" * 32768)
    message = (
        "Value at 'secretString' failed to satisfy constraint: Member must have length less than or equal to 65536"
    )
    refused(
        lambda: secrets.put_secret_value(SecretId="ascii", SecretString="x" * 65537), "ValidationException", message
    )
    refused(  # 32,769 characters: within the model's length, over the 65,536-byte quota
        lambda: secrets.put_secret_value(SecretId="two-byte", SecretString="é" * 32769), "ValidationException", message
    )
    assert len(secrets.list_secret_version_ids(SecretId="two-byte")["Versions"]) == 1


def test_a_description_is_at_most_2048_characters_and_tags_128_and_256(secrets):
    secrets.create_secret(
        Name="d", SecretString="x", Description="d" * 2048, Tags=[{"Key": "k" * 128, "Value": "v" * 256}]
    )
    for kwargs, where, limit in (
        ({"Description": "d" * 2049}, "description", 2048),
        ({"Tags": [{"Key": "k" * 129, "Value": "v"}]}, "tags.1.member.key", 128),
        ({"Tags": [{"Key": "k", "Value": "v" * 257}]}, "tags.1.member.value", 256),
    ):
        refused(
            lambda kwargs=kwargs: secrets.create_secret(Name="e", SecretString="x", **kwargs),
            "ValidationException",
            f"at '{where}' failed to satisfy constraint: Member must have length less than or equal to {limit}",
        )
    refused(
        lambda: secrets.tag_resource(SecretId="d", Tags=[{"Key": "k" * 129, "Value": "v"}]),
        "ValidationException",
        "Member must have length less than or equal to 128",
    )


# --- EventBridge --------------------------------------------------------------------------------


@pytest.fixture
def events(aws):
    return boto3.client("events")


def entry(detail: str = '{"a": 1}', source: str = "webex-token-broker", detail_type: str = "Test") -> dict:
    return {"Source": source, "DetailType": detail_type, "Detail": detail}


def test_put_events_takes_at_most_10_entries(events):
    assert events.put_events(Entries=[entry()] * 10)["FailedEntryCount"] == 0
    refused(
        lambda: events.put_events(Entries=[entry()] * 11),
        "ValidationException",
        "at 'entries' failed to satisfy constraint: Member must have length less than or equal to 10",
    )


def entry_size(e: dict) -> int:
    return sum(len(text.encode()) for text in (e["Source"], e["DetailType"], e["Detail"], *e.get("Resources", [])))


def test_put_events_takes_at_most_256_kb_of_source_detail_type_detail_and_resources(events):
    def entries(size: int) -> list[dict]:
        first, second = {**entry(), "Resources": ["r" * 100]}, entry(detail='{"x": ""}')
        padding = size - entry_size(first) - entry_size(second)
        second["Detail"] = json.dumps({"x": "é" * (padding // 2) + "e" * (padding % 2)}, ensure_ascii=False)
        return [first, second]

    assert sum(map(entry_size, entries(256 * KB))) == 256 * KB
    assert events.put_events(Entries=entries(256 * KB))["FailedEntryCount"] == 0
    refused(
        lambda: events.put_events(Entries=entries(256 * KB + 1)),
        "ValidationException",
        "Total size of the entries in the request is over the limit.",
    )


def test_an_entry_without_source_or_detail_type_or_a_json_object_detail_fails_alone(events):
    response = events.put_events(
        Entries=[
            entry(),
            entry(source=""),
            entry(detail_type=""),
            entry(detail="[1, 2]"),
            entry(detail="not json"),
            {"Source": "s", "DetailType": "t"},
            entry(),
        ]
    )
    assert response["FailedEntryCount"] == 5
    outcomes = [e.get("ErrorCode", "ok") for e in response["Entries"]]
    refusals = ["InvalidArgument", "InvalidArgument", "MalformedDetail", "MalformedDetail", "InvalidArgument"]
    assert outcomes == ["ok", *refusals, "ok"]
    assert "EventId" in response["Entries"][0]
    assert "EventId" in response["Entries"][-1]
    assert (
        response["Entries"][1]["ErrorMessage"]
        == "Parameter Source is not valid. Reason: Source is a required argument."
    )
    assert response["Entries"][3]["ErrorMessage"] == "Detail is malformed."


# --- Lambda: the environment of each function, at most 4 KB ------------------------------------

LAMBDA_ENVIRONMENT_MAX_BYTES = 4 * KB  # the variables serialized as JSON, as Lambda measures them
ENVIRONMENT_HEADROOM = 0.05  # kept free at the longest values: a new variable must not be the one that breaks a deploy
# What CloudFormation can give a reference that is not a parameter, at its longest: a stack name is at
# most 128 characters; generated names are <stack>-<logical id>-<13 characters> (a table name at most
# 255); partitions are at most 9 characters (aws-iso-b), regions 14 (ap-southeast-5).
STACK_NAME = "s" * 128
PSEUDO = {"AWS::Region": "r" * 14, "AWS::Partition": "aws-iso-b", "AWS::NoValue": ""}


def generated_name(logical_id: str, limit: int = 255) -> str:
    return f"{STACK_NAME}-{logical_id}-{'X' * 13}"[:limit]


def longest_physical_id(logical_id: str, resource: dict) -> str | None:
    match resource["Type"]:
        case "AWS::DynamoDB::Table":
            return resource["Properties"].get("TableName") or generated_name(logical_id)
        case "AWS::SecretsManager::Secret":
            name = resource["Properties"].get("Name") or generated_name(logical_id, 512)
            partition, region = PSEUDO["AWS::Partition"], PSEUDO["AWS::Region"]
            return f"arn:{partition}:secretsmanager:{region}:123456789012:secret:{name}-XXXXXX"
        case "AWS::KMS::Key":  # Ref: the key id, a UUID
            return "X" * 36
    return None


def longest_value(spec: dict) -> str | None:
    """A value of the parameter's greatest length, or None if nothing in the template bounds it."""
    if "AllowedValues" in spec:
        return max(map(str, spec["AllowedValues"]), key=len)
    if spec.get("Type") == "Number":
        if "MinValue" in spec and "MaxValue" in spec:
            return max(str(spec["MinValue"]), str(spec["MaxValue"]), key=len)
        return None
    limits = [int(spec["MaxLength"])] if "MaxLength" in spec else []
    if "AllowedPattern" in spec:
        widest = re._parser.parse(spec["AllowedPattern"]).getwidth()[1]
        if widest < re._constants.MAXREPEAT:
            limits.append(widest)
    return "x" * min(limits) if limits else None


def references(node, names: set[str]) -> set[str]:
    """The names in `names` a template value takes its value from (a condition only chooses, so not those)."""
    if isinstance(node, list):
        return set().union(*(references(n, names) for n in node))
    if not isinstance(node, dict):
        return set()
    if set(node) == {"Ref"}:
        return {node["Ref"]} & names
    if set(node) == {"Fn::If"}:
        return references(node["Fn::If"][1:], names)
    if set(node) == {"Fn::GetAtt"}:
        target = node["Fn::GetAtt"]
        return {target.split(".")[0] if isinstance(target, str) else target[0]} & names
    if set(node) == {"Fn::Sub"}:
        text, extra = (node["Fn::Sub"], {}) if isinstance(node["Fn::Sub"], str) else node["Fn::Sub"]
        used = {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text)} - set(extra)
        return (used & names) | references(list(extra.values()), names)
    return references(list(node.values()), names)


class LongestResolver(LocalResolver):
    """The template's own evaluation, except that each Fn::If takes its longer branch."""

    def resolve(self, node):
        if isinstance(node, dict) and set(node) == {"Fn::If"}:
            _, when_true, when_false = node["Fn::If"]
            return max(str(self.resolve(when_true)), str(self.resolve(when_false)), key=len)
        return super().resolve(node)


def environments() -> dict[str, dict]:
    """Function logical ID → its variables (Globals' and its own), unresolved."""
    shared = load_template()["Globals"]["Function"].get("Environment", {}).get("Variables", {})
    return {
        name: {**shared, **props.get("Environment", {}).get("Variables", {})}
        for name, props in function_definitions().items()
    }


def parameters_in_environments() -> dict[str, list[str]]:
    """Parameter → "FUNCTION.VARIABLE" places it reaches, for every parameter that reaches one."""
    names = set(load_template().get("Parameters", {}))
    places: dict[str, list[str]] = {}
    for function, variables in environments().items():
        for variable, value in variables.items():
            for parameter in references(value, names):
                places.setdefault(parameter, []).append(f"{function}.{variable}")
    return places


@pytest.mark.parametrize("parameter", sorted(parameters_in_environments()))
def test_a_parameter_that_reaches_a_function_environment_has_a_max_length(parameter):
    spec = load_template()["Parameters"][parameter]
    assert longest_value(spec) is not None, (
        f"Parameter {parameter} reaches {', '.join(parameters_in_environments()[parameter])} but nothing bounds its "
        "length (no MaxLength, no bounded AllowedPattern or AllowedValues, no Min/MaxValue for a Number): any value "
        f"can push the environment past Lambda's {LAMBDA_ENVIRONMENT_MAX_BYTES} bytes. Give it a MaxLength."
    )


@pytest.mark.parametrize("function", sorted(function_definitions()))
def test_a_function_environment_fits_in_4_kb_with_every_parameter_at_its_longest(function):
    template = load_template()
    parameters = template.get("Parameters", {})
    longest = {name: longest_value(spec) for name, spec in parameters.items()}
    unbounded = sorted(name for name in parameters_in_environments() if longest[name] is None)
    resources = {name: longest_physical_id(name, r) for name, r in template["Resources"].items()}
    variables = environments()[function]
    unknown = references(list(variables.values()), {n for n, v in resources.items() if v is None})
    assert not unknown, f"{function}'s environment uses {sorted(unknown)}: add their longest physical ID here"

    resolver = LongestResolver(
        parameters={name: value for name, value in longest.items() if value is not None},
        resources={name: value for name, value in resources.items() if value is not None},
        stack_name=STACK_NAME,
    )
    resolver.values.update(PSEUDO)
    resolved = {name: str(resolver.resolve(value)) for name, value in variables.items()}
    sizes = {name: len(json.dumps({name: value}, separators=(",", ":")).encode()) for name, value in resolved.items()}
    total = len(json.dumps(resolved, separators=(",", ":")).encode())
    allowed = int(LAMBDA_ENVIRONMENT_MAX_BYTES * (1 - ENVIRONMENT_HEADROOM))
    largest = ", ".join(f"{n}={s}" for n, s in sorted(sizes.items(), key=lambda kv: -kv[1])[:6])
    assert not unbounded, (
        f"{function}: {total} bytes with the unbounded parameters {unbounded} at their defaults, and no limit with "
        f"any other value of theirs (Lambda allows {LAMBDA_ENVIRONMENT_MAX_BYTES}). Give them a MaxLength."
    )
    assert total <= allowed, (
        f"{function}: the environment reaches {total} bytes as JSON with every parameter at its longest; Lambda "
        f"allows {LAMBDA_ENVIRONMENT_MAX_BYTES}, and {allowed} keeps {ENVIRONMENT_HEADROOM:.0%} free. "
        f"Largest: {largest}"
    )
