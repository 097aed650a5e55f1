"""Which broker the CLI talks to: the local stack `make run` started, or a deployed stack found
through its CloudFormation outputs. Either way the result is the environment the functions see, so
the CLI runs the very same library code (and the same lease) as the Lambda functions."""

import json
import os
from dataclasses import dataclass, field

from webex_broker_admin.local_state import local_state_path

EXIT_NO_TARGET = 4
EXIT_CREDENTIALS = 5

# Stack parameters the library reads, by environment variable.
_PARAMETER_ENV = {
    "WEBEX_API_BASE_URL": "WebexApiBaseUrl",
    "WEBEX_SCOPES": "WebexScopes",
    "ALLOWED_EMAIL_DOMAINS": "AllowedEmailDomains",
    "ALLOWED_ORG_IDS": "AllowedOrgIds",
    "OPEN_TO_ANY_WEBEX_ACCOUNT": "OpenToAnyWebexAccount",
    "REFRESH_WINDOW_HOURS": "RefreshWindowHours",
    "REFRESH_MAX_AGE_DAYS": "RefreshMaxAgeDays",
    "REFRESH_INTERVAL_MINUTES": "RefreshIntervalMinutes",
    "REFRESH_CONCURRENCY": "RefreshConcurrency",
    "SECRETS_WRITE_RATE": "SecretsWriteRate",
    "REFRESH_EXPIRY_WARNING_DAYS": "RefreshExpiryWarningDays",
}
_OUTPUT_ENV = {
    "CONNECTIONS_TABLE": "ConnectionsTableName",
    "STATE_TABLE": "StateTableName",
    "INVITATIONS_TABLE": "InvitationsTableName",
    "CLIENT_SECRET_ARN": "ClientSecretArn",
    "ACCESS_MODE": "AccessMode",
}


class TargetError(Exception):
    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Target:
    description: str
    broker_url: str
    environment: dict[str, str]
    outputs: dict[str, str] = field(default_factory=dict)  # a deployed stack's CloudFormation outputs

    def activate(self) -> None:
        os.environ.update(self.environment)


def local_target() -> Target:
    path = local_state_path()
    try:
        state = json.loads(path.read_text())
        os.kill(int(state["pid"]), 0)
    except (OSError, ValueError, KeyError):
        raise TargetError(
            "No local broker is running (start one with `make run`), and no --stack was given.", EXIT_NO_TARGET
        ) from None
    return Target(f"local stack at {state['broker_url']}", state["broker_url"], state["environment"])


def stack_target(stack: str, region: str | None) -> Target:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    region = region or boto3.session.Session().region_name
    try:
        cloudformation = boto3.client("cloudformation", region_name=region)
        described = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
        region = cloudformation.meta.region_name
    except (NoCredentialsError, NoRegionError) as exc:
        raise TargetError(f"No usable AWS credentials or region: {exc}", EXIT_CREDENTIALS) from None
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        if code == "ValidationError":
            raise TargetError(f"No stack named {stack} in {region or 'the default region'}.", EXIT_NO_TARGET) from None
        raise TargetError(f"AWS refused to describe the stack ({code}).", EXIT_CREDENTIALS) from None
    except BotoCoreError as exc:
        raise TargetError(f"Could not reach AWS: {exc}", EXIT_CREDENTIALS) from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in described.get("Parameters", [])}
    if "ConnectionsTableName" not in outputs:
        raise TargetError(f"Stack {stack} is not a Webex Token Broker stack.", EXIT_NO_TARGET)
    environment = {env: outputs[key] for env, key in _OUTPUT_ENV.items() if key in outputs}
    environment |= {env: parameters[key] for env, key in _PARAMETER_ENV.items() if key in parameters}
    environment["SECRET_PREFIX"] = outputs["TokenSecretPrefix"].removesuffix("/tokens/")
    environment["AWS_DEFAULT_REGION"] = region
    return Target(f"stack {stack} ({region})", outputs["LoginUrl"].removesuffix("/authorize"), environment, outputs)
