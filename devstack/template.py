"""The stack's own resource definitions, read from template.yaml so tests and the local stack
create exactly the tables the template deploys and cannot drift from it.

WEBEX_BROKER_TEMPLATE names another template to read instead (a copy with one permission less, say):
the local stack and the tests then run against it, the functions' roles included.
"""

import copy
import json
import os
import re
from functools import cache
from pathlib import Path

import boto3
import yaml

TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "template.yaml"
TEMPLATE_VARIABLE = "WEBEX_BROKER_TEMPLATE"


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation short-form intrinsics (!Ref, !Sub, …) as {"Fn::X": value}."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


def template_path() -> Path:
    """template.yaml, unless WEBEX_BROKER_TEMPLATE names another; read at each use, so a test may set it."""
    return Path(os.environ.get(TEMPLATE_VARIABLE) or TEMPLATE_PATH)


def load_template() -> dict:
    return _load(template_path())


@cache
def _load(path: Path) -> dict:
    return yaml.load(path.read_text(), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass


def translated_template() -> dict:
    """The template as CloudFormation receives it after `sam package` and the SAM transform: the roles
    SAM generates for the functions are only here. Translated once per template."""
    return _translated(template_path())


@cache
def _translated(path: Path) -> dict:
    # Imported here: SAM's translator takes most of a second to import, and only the roles need it.
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    template = copy.deepcopy(_load(path))  # the transform rewrites it in place
    for resource in template["Resources"].values():
        for uri in ("CodeUri", "ContentUri"):
            if uri in resource.get("Properties", {}):
                resource["Properties"][uri] = "s3://bucket/key"
    session = boto3.session.Session(region_name="us-east-1")
    return Translator(None, Parser(), boto_session=session).translate(
        template, parameter_values={}, get_managed_policy_map=dict
    )


def table_definitions() -> dict[str, dict]:
    """Logical ID → Properties of every AWS::DynamoDB::Table in the template."""
    resources = load_template()["Resources"]
    return {name: r["Properties"] for name, r in resources.items() if r["Type"] == "AWS::DynamoDB::Table"}


def create_tables(dynamodb, *, names: dict[str, str] | None = None) -> dict[str, str]:
    """Create the template's tables (with TTL) through a boto3 client; returns logical ID → table name."""
    created = {}
    for logical_id, props in table_definitions().items():
        name = (names or {}).get(logical_id, logical_id)
        kwargs = {
            "TableName": name,
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
        }
        for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            if key in props:
                kwargs[key] = props[key]
        try:
            dynamodb.create_table(**kwargs)
        except dynamodb.exceptions.ResourceInUseException:
            pass  # an endpoint that outlives us (AWS_ENDPOINT_URL) already has it
        else:
            ttl = props.get("TimeToLiveSpecification")
            if ttl:
                dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
        created[logical_id] = name
    return created


class LocalResolver:
    """Evaluates the template's intrinsics (Ref, Fn::If, Fn::Sub, conditions) against local values,
    so the local stack gives the handlers the very environment the template declares."""

    def __init__(self, *, parameters: dict[str, str], resources: dict[str, str], stack_name: str):
        template = load_template()
        defaults = {name: str(p.get("Default", "")) for name, p in template.get("Parameters", {}).items()}
        self.values = {
            **defaults,
            **parameters,
            **resources,
            "AWS::StackName": stack_name,
            "AWS::Region": "us-east-1",
            "AWS::AccountId": "123456789012",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": None,
        }
        self.conditions = template.get("Conditions", {})

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.conditions[name]))

    def resolve(self, node):
        if not isinstance(node, dict):
            return [self.resolve(n) for n in node] if isinstance(node, list) else node
        if len(node) != 1:
            return {k: self.resolve(v) for k, v in node.items()}
        ((key, arg),) = node.items()
        match key:
            case "Ref":
                return self.values[arg]
            case "Fn::If":
                name, when_true, when_false = arg
                return self.resolve(when_true if self.condition(name) else when_false)
            case "Fn::Equals":
                left, right = (self.resolve(a) for a in arg)
                return str(left) == str(right)
            case "Fn::Not":
                return not self.resolve(arg[0])
            case "Fn::And":
                return all(self.resolve(a) for a in arg)
            case "Fn::Or":
                return any(self.resolve(a) for a in arg)
            case "Condition":
                return self.condition(arg)
            case "Fn::GetAtt":
                return self.values[arg if isinstance(arg, str) else ".".join(arg)]
            case "Fn::Split":
                separator, text = arg
                return str(self.resolve(text)).split(separator)
            case "Fn::Sub":
                text, extra = (arg, {}) if isinstance(arg, str) else arg
                names = {**self.values, **{k: self.resolve(v) for k, v in extra.items()}}
                return re.sub(r"\$\{([^}!]+)\}", lambda m: str(names[m.group(1)]), text)
        return {key: self.resolve(arg)}


def function_definitions() -> dict[str, dict]:
    """Logical ID → Properties of every AWS::Serverless::Function."""
    resources = load_template()["Resources"]
    return {n: r["Properties"] for n, r in resources.items() if r["Type"] == "AWS::Serverless::Function"}


def function_environment(resolver: LocalResolver) -> dict[str, str]:
    """Globals' environment variables and every function's own, resolved: locally all functions
    share one process, and the template keeps their names distinct."""
    variables = dict(load_template()["Globals"]["Function"]["Environment"]["Variables"])
    for props in function_definitions().values():
        variables.update(props.get("Environment", {}).get("Variables", {}))
    return {name: str(resolver.resolve(value)) for name, value in variables.items()}


def key_policy(resolver: LocalResolver, logical_id: str) -> dict:
    """The template's TokenKey or BrokerKey policy, resolved: what CloudFormation would put."""
    policy = resolver.resolve(load_template()["Resources"][logical_id]["Properties"]["KeyPolicy"])
    policy["Statement"] = [statement for statement in policy["Statement"] if statement]  # Fn::If → AWS::NoValue
    return policy


def create_key(kms, resolver: LocalResolver, logical_id: str) -> str:
    """The template's TokenKey or BrokerKey with its own key policy (which moto stores, and
    aws_fidelity enforces for Secrets Manager); its id."""
    description = resolver.resolve(load_template()["Resources"][logical_id]["Properties"]["Description"])
    policy = json.dumps(key_policy(resolver, logical_id))
    return kms.create_key(Description=description, Policy=policy)["KeyMetadata"]["KeyId"]


def create_client_secret(secretsmanager, resolver: LocalResolver) -> str:
    """The template's ClientSecret resource, built from its own SecretString; returns its ARN."""
    props = load_template()["Resources"]["ClientSecret"]["Properties"]
    name = f"{resolver.values['AWS::StackName']}-client"
    value = resolver.resolve(props["SecretString"])
    try:
        return secretsmanager.create_secret(
            Name=name, Description=resolver.resolve(props["Description"]), SecretString=value
        )["ARN"]
    except secretsmanager.exceptions.ResourceExistsException:
        return secretsmanager.put_secret_value(SecretId=name, SecretString=value)["ARN"]
