"""Secrets Manager's rotation in template.yaml (issue 25.2): every role that creates a connection's
secrets may turn rotation on with the stack's rotation function, on a schedule Security Hub accepts;
Secrets Manager may invoke that function only for this account's secrets of this stack's prefix."""

from devstack.template import LocalResolver, load_template
from webex_broker.adapters.secret_store import ROTATION_DAYS
from webex_broker.core.settings import ROTATION_FUNCTION_PREFIX, Settings

RESOURCES = load_template()["Resources"]
SECURITY_HUB_MAX_DAYS = 90  # SecretsManager.4: rotated within 90 days
KEY_ID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
ACCOUNT, REGION = "123456789012", "us-east-1"
SECRETS = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:broker-a"


def resolve(node):
    """Any other resource's value (and ARN) is its own name: only the rotation's are compared."""
    others = {name: name for name in RESOURCES} | {f"{name}.Arn": name for name in RESOURCES}
    return LocalResolver(parameters={}, resources=others | {"TokenKey": KEY_ID}, stack_name="broker-a").resolve(node)


def statements(function: str) -> list[dict]:
    return [s for policy in RESOURCES[function]["Properties"]["Policies"] for s in resolve(policy)["Statement"] if s]


def allowed(function: str, action: str) -> set[str]:
    found = set()
    for statement in statements(function):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        if action in actions:
            resources = statement["Resource"]
            found |= set(resources if isinstance(resources, list) else [resources])
    return found


def rotation_function_arn() -> str:
    name = resolve(RESOURCES["RotationFunction"]["Properties"]["FunctionName"])
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


def test_the_schedule_is_inside_security_hubs_90_days():
    assert 0 < ROTATION_DAYS <= SECURITY_HUB_MAX_DAYS


def test_every_role_that_creates_secrets_turns_rotation_on_with_the_stacks_function():
    creators = [name for name, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::Function"]
    creators = [name for name in creators if allowed(name, "secretsmanager:CreateSecret")]
    assert sorted(creators) == ["AdminFunction", "CallbackFunction", "RefreshConnectionFunction", "RefresherFunction"]
    for function in creators:
        assert allowed(function, "secretsmanager:RotateSecret") == allowed(function, "secretsmanager:CreateSecret")
        assert allowed(function, "lambda:InvokeFunction") == {rotation_function_arn()}, function


def test_the_functions_know_the_rotation_functions_arn_from_their_environment():
    """Its name is derived from the token key's id, as settings derive it."""
    name = resolve(RESOURCES["RotationFunction"]["Properties"]["FunctionName"])
    assert name == f"{ROTATION_FUNCTION_PREFIX}{KEY_ID}"
    assert len(name) <= 64  # Lambda's longest function name
    environ = {
        "CLIENT_SECRET_ARN": f"{SECRETS}-client-AbCdEf",
        "STATE_TABLE": "s",
        "CONNECTIONS_TABLE": "c",
        "SECRET_PREFIX": "broker-a",
        "TOKEN_KMS_KEY_ID": KEY_ID,
        "AWS_REGION": REGION,
    }
    assert Settings.from_environment(environ).sharing.rotation_function_arn == rotation_function_arn()


def test_secrets_manager_may_invoke_the_rotation_function_only_for_this_stacks_secrets():
    permissions = [
        resolve(r["Properties"])
        for r in RESOURCES.values()
        if r["Type"] == "AWS::Lambda::Permission"
        and r["Properties"]["FunctionName"] == {"Fn::GetAtt": "RotationFunction.Arn"}
    ]
    assert {p["Principal"] for p in permissions} == {"secretsmanager.amazonaws.com"}
    assert {p["Action"] for p in permissions} == {"lambda:InvokeFunction"}
    assert {p["SourceAccount"] for p in permissions} == {ACCOUNT}
    assert sorted(p["SourceArn"] for p in permissions) == [f"{SECRETS}/refresh/*", f"{SECRETS}/tokens/*"]


def test_a_failed_rotation_alarms_and_shows_on_the_dashboard():
    alarm = RESOURCES["RotationsFailedAlarm"]["Properties"]
    assert (alarm["MetricName"], alarm["AlarmActions"]) == ("RotationsFailed", [{"Ref": "AlarmTopic"}])
    assert "${RotationsFailedAlarm.Arn}" in RESOURCES["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"][0]
