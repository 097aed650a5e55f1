"""Which broker the CLI talks to: the local stack `make run` started, or a deployed stack found
through CloudFormation. Either way the CLI reads the environment the functions run with (the local
state file, or the deployed refresher's configuration) and builds the very same broker from it, so
it runs the same library code, with the same settings and lease, as the Lambda functions. What
needs the broker key (refresh material, the client secret) it cannot do itself: it invokes the
broker's own functions for that, with the operator's AWS credentials."""

import json
import os
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from webex_broker.adapters import aws
from webex_broker.core.settings import Settings
from webex_broker.flows.broker import Broker
from webex_broker_admin import local_state

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient

EXIT_NO_TARGET = 4
EXIT_CREDENTIALS = 5

# The function whose environment is the broker's whole configuration (the Globals plus the refresh policy).
CONFIGURED_FUNCTION = "RefresherFunction"
# A refresh run may take the refresher's whole 900 s; an invocation is never retried on the CLI's say-so.
_INVOKE_CONFIG = Config(read_timeout=930, connect_timeout=10, retries={"total_max_attempts": 1}, tcp_keepalive=True)


class FunctionFailed(Exception):
    """A broker function raised instead of answering (Lambda's FunctionError)."""

    def __init__(self, function: str, error_type: str, message: str):
        super().__init__(f"the broker's {function} failed ({error_type}): {message}")


class TargetError(Exception):
    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Target:
    description: str
    broker_url: str
    environment: dict[str, str]  # the functions' environment variables
    aws_session: dict[str, str]  # where its AWS is: the region, and for the local stack endpoint and credentials
    outputs: dict[str, str] = field(default_factory=dict)  # a deployed stack's CloudFormation outputs
    stack: str = ""  # a deployed stack's name; empty for the local stack, whose functions go by logical id
    lambda_endpoint: str | None = None  # the local gateway, which serves Lambda's Invoke API

    def identity(self) -> dict[str, str]:
        """Which broker this is, for output that may be read far from the command that made it."""
        region = self.aws_session.get("region_name", "")
        return {"stack": self.stack or "local", "region": region, "url": self.broker_url}

    def connect(self) -> None:
        """Point the library's AWS clients at this target's account and region."""
        aws.connect(**self.aws_session)

    def invoke(self, function: str, event: dict) -> Any:
        """Run one of the broker's functions (by logical id) on `event` and return its answer."""
        name = self._physical_name(function)
        answer = self._lambda.invoke(FunctionName=name, Payload=json.dumps(event).encode())
        result = json.loads(answer["Payload"].read() or b"null")
        if answer.get("FunctionError"):
            raise FunctionFailed(function, result.get("errorType", "?"), result.get("errorMessage", ""))
        return result

    def start(self, function: str, event: dict) -> None:
        """Invoke asynchronously: for a run that may take the function's whole 15 minutes, which one
        HTTP connection held open and idle may not survive (AWS's Invoke documentation says so)."""
        self._lambda.invoke(
            FunctionName=self._physical_name(function), InvocationType="Event", Payload=json.dumps(event).encode()
        )

    @cached_property
    def _lambda(self) -> "LambdaClient":
        """One client for every invocation of a command (`refresh --reauth-required` makes one per connection)."""
        return boto3.client("lambda", endpoint_url=self.lambda_endpoint, config=_INVOKE_CONFIG)

    @cached_property
    def _physical_names(self) -> dict[str, str]:
        return {}

    def _physical_name(self, function: str) -> str:
        """A deployed function's name, asked of CloudFormation once per command."""
        if not self.stack:
            return function
        if function not in self._physical_names:
            cloudformation = aws.client("cloudformation")
            resource = cloudformation.describe_stack_resource(StackName=self.stack, LogicalResourceId=function)
            self._physical_names[function] = resource["StackResourceDetail"]["PhysicalResourceId"]
        return self._physical_names[function]

    @cached_property
    def broker(self) -> Broker:
        """Settings from the functions' environment, validated as the functions validate them."""
        return Broker.from_settings(Settings.from_environment(self.environment))


STACK_VARIABLE = "WEBEX_BROKER_STACK"


def choose_target(stack: str | None, region: str | None, folder: Path) -> Target:
    """The broker the operator means, and never a guess between several: --stack, else WEBEX_BROKER_STACK,
    else the local stack WEBEX_BROKER_LOCAL_STATE names, else the one local stack running, else the
    stack samconfig.toml in `folder` deploys."""
    if stack or (stack := os.environ.get(STACK_VARIABLE, "")):
        return stack_target(stack, region)
    if chosen := os.environ.get(local_state.VARIABLE):
        found = local_state.read(Path(chosen))
        if found is None:
            raise TargetError(
                f"{local_state.VARIABLE} names {chosen}, but no local stack is running there: start one with "
                f"`make run`, or unset {local_state.VARIABLE}.",
                EXIT_NO_TARGET,
            )
        return local_target(found)
    running = local_state.running()
    if len(running) > 1:
        listed = "\n".join(f"  export {local_state.VARIABLE}={s.path}   # {s.broker_url}" for s in running)
        raise TargetError(f"{len(running)} local stacks are running; choose one:\n{listed}", EXIT_NO_TARGET)
    if running:
        return local_target(running[0])
    if deployed := samconfig_stack(folder):
        return stack_target(deployed[0], region or deployed[1])
    raise TargetError(
        f"No broker to talk to: give --stack NAME (or set {STACK_VARIABLE}) for a deployed stack, or start one "
        "locally with `make run`.",
        EXIT_NO_TARGET,
    )


def samconfig_stack(folder: Path) -> tuple[str, str | None] | None:
    """The stack name (and region) `sam deploy` uses from this folder, as samconfig.toml's default
    environment says: deploy's own parameters first, then the global ones."""
    try:
        config = tomllib.loads((folder / "samconfig.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    default = config.get("default", {})
    deploy, common = default.get("deploy", {}).get("parameters", {}), default.get("global", {}).get("parameters", {})
    stack = deploy.get("stack_name") or common.get("stack_name")
    return (str(stack), deploy.get("region") or common.get("region")) if stack else None


def local_target(stack: local_state.LocalStack) -> Target:
    state = stack.state
    return Target(
        f"local stack at {state['broker_url']} (pid {state['pid']})",
        state["broker_url"],
        {**state["environment"], "AWS_REGION": state["aws"]["region_name"]},
        state["aws"],
        lambda_endpoint=state["broker_url"],
    )


def stack_target(stack: str, region: str | None) -> Target:
    region = region or boto3.session.Session().region_name
    if not region:
        raise TargetError(
            f"No AWS region for stack {stack}: give --region, or set AWS_REGION (or a region in your AWS profile).",
            EXIT_CREDENTIALS,
        )
    try:
        cloudformation = boto3.client("cloudformation", region_name=region)
        region = cloudformation.meta.region_name
        described = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
        if "ConnectionsTableName" not in outputs:
            raise TargetError(f"Stack {stack} is not a Webex Token Broker stack.", EXIT_NO_TARGET)
        function = cloudformation.describe_stack_resource(StackName=stack, LogicalResourceId=CONFIGURED_FUNCTION)
        name = function["StackResourceDetail"]["PhysicalResourceId"]
        configuration = boto3.client("lambda", region_name=region).get_function_configuration(FunctionName=name)
    except (NoCredentialsError, NoRegionError) as exc:
        raise TargetError(
            f"No usable AWS credentials or region ({exc}): set AWS_PROFILE (after `aws sso login` or "
            "`aws configure`) or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, and --region or AWS_REGION.",
            EXIT_CREDENTIALS,
        ) from None
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        if code == "ValidationError":
            raise TargetError(f"No stack named {stack} in {region or 'the default region'}.", EXIT_NO_TARGET) from None
        raise TargetError(f"AWS refused to describe the stack ({code}).", EXIT_CREDENTIALS) from None
    except BotoCoreError as exc:
        raise TargetError(f"Could not reach AWS: {exc}", EXIT_CREDENTIALS) from None
    return Target(
        f"stack {stack} ({region})",
        outputs["LoginUrl"].removesuffix("/authorize"),
        # Lambda adds AWS_REGION to what the function is configured with: the settings read it too
        {**configuration.get("Environment", {}).get("Variables", {}), "AWS_REGION": region},
        {"region_name": region},
        outputs,
        stack=stack,
    )
