"""Each function's IAM policy in template.yaml allows exactly what its code calls: every AWS call the
handlers make in these flows is checked against the function's own statements, and every statement
is used by some flow (no spare permissions)."""

import fnmatch
from contextlib import contextmanager

import botocore.client
import pytest

from devstack.lambda_runtime import LambdaContext
from devstack.template import LocalResolver, function_definitions
from tests.conftest import CALLBACK_URL, CLIENT_ID, CLIENT_SECRET, PREFIX, create_broker_key, reset_broker_caches
from tests.test_sharing import share
from webex_broker.adapters.secret_store import delete_secret

ACCOUNT = "arn:aws:{service}:us-east-1:123456789012"
TABLES = {"StateTable", "ConnectionsTable", "InvitationsTable"}


class CallRecorder:
    """Every AWS API call, attributed to the function whose code made it."""

    def __init__(self):
        self.current: str | None = None
        self.calls: dict[str, set[tuple[str, str]]] = {}

    @contextmanager
    def running(self, function: str):
        """As a fresh Lambda: nothing cached from another function's calls."""
        reset_broker_caches()
        self.current = function
        try:
            yield
        finally:
            self.current = None

    def record(self, service: str, operation: str, params: dict) -> None:
        if self.current:
            action = f"{service}:{operation}"
            self.calls.setdefault(self.current, set()).add((action, resource_of(service, params)))


def resource_of(service: str, params: dict) -> str:
    if service == "dynamodb":
        arn = ACCOUNT.format(service="dynamodb") + f":table/{params['TableName']}"
        return arn + (f"/index/{params['IndexName']}" if "IndexName" in params else "")
    if service == "secretsmanager":
        secret = params.get("SecretId") or params["Name"]
        return (
            secret
            if secret.startswith("arn:")
            else ACCOUNT.format(service="secretsmanager") + f":secret:{secret}-AbCdEf"
        )
    if service == "events":
        return ACCOUNT.format(service="events") + ":event-bus/" + params["Entries"][0].get("EventBusName", "default")
    raise AssertionError(f"unexpected service {service}")


@pytest.fixture
def recorder(broker, monkeypatch):
    recorder = CallRecorder()
    real = botocore.client.BaseClient._make_api_call

    def recording(client, operation, params):
        service = client.meta.service_model.signing_name
        recorder.record({"secretsmanager": "secretsmanager"}.get(service, service), operation, params)
        return real(client, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", recording)
    return recorder


def policies(client_secret_arn: str) -> dict[str, list[dict]]:
    """Each function's statements, resolved for this test account."""
    values = {f"{t}.Arn": ACCOUNT.format(service="dynamodb") + f":table/{t}" for t in TABLES}
    values |= {t: t for t in TABLES}
    resolver = LocalResolver(
        parameters={"SecretPrefix": PREFIX, "ExistingClientSecretArn": client_secret_arn},
        resources=values,
        stack_name="test-broker",
    )
    return {name: resolver.resolve(props["Policies"][0]["Statement"]) for name, props in function_definitions().items()}


def allowed(statements: list[dict], action: str, resource: str) -> dict | None:
    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if action in actions and any(fnmatch.fnmatchcase(resource, pattern) for pattern in resources):
            return statement
    return None


def test_every_call_is_allowed_and_every_permission_is_used(broker, recorder, monkeypatch):
    import os

    from admin import handler as admin
    from authorize import handler as authorize
    from callback import handler as callback
    from refresh_connection import handler as refresh_connection
    from refresher import handler as refresher

    broker.webex.access_token_ttl = 3600  # due at once
    share(monkeypatch)  # every token secret created shared: token key, replicas, resource policy
    broker_key = os.environ["BROKER_KMS_KEY_ID"]
    monkeypatch.delenv("BROKER_KMS_KEY_ID")  # a stack from before the broker key, until the update below

    def login(person: str, invite: str | None = None) -> dict:
        with recorder.running("AuthorizeFunction"):
            event = broker.event("authorize", {"invite": invite} if invite else None)
            start = broker.keep_cookies(authorize(event, LambdaContext()))
        query = broker.consent(start["headers"]["Location"], person=person)
        with recorder.running("CallbackFunction"):
            done = callback(broker.event("callback", query), LambdaContext())
            return broker.result_page(done["headers"]["Location"]) if done["statusCode"] == 303 else done

    # Every flow, in both access modes, including the failure paths that touch other resources.
    assert login("alice@example.com")["statusCode"] == 200
    monkeypatch.setenv("ACCESS_MODE", "invite")
    reset_broker_caches()
    assert login("bob@example.com", broker.invite("reports"))["statusCode"] == 200
    monkeypatch.setenv("BROKER_KMS_KEY_ID", broker_key)  # the update: each function seals what it meets
    delete_secret(f"{PREFIX}/tokens/reports", recovery_days=7)  # its replicas first, as AWS requires
    assert login("bob@example.com", broker.invite("reports"))["statusCode"] == 200, "restores a deleted secret"
    broker.webex.rotate_refresh_tokens = True
    broker.webex.same_token_window = 0
    broker.webex.inject("access_token", 400, error="invalid_grant")  # one of the two: reauth, event, invitation
    share(monkeypatch, regions="eu-west-1")  # a stack update: the refresher converges the token secrets
    with recorder.running("RefresherFunction"):
        result = refresher(broker.event("refresher"), LambdaContext(timeout_seconds=900))
    assert result["outcomes"] == {"permanent": 1, "refreshed": 1}
    share(monkeypatch, accounts="", regions="eu-west-1,ap-southeast-2")  # and again, for the on-demand route
    monkeypatch.setenv("BROKER_KMS_KEY_ID", create_broker_key())  # a switched broker key, too
    event = broker.event("refresh_connection")
    # A refused grant (its open invitation reused), a plain refresh, then the refused one restored.
    for name, fault, status in (("reports", True, 409), ("alice@example.com", False, 200), ("reports", False, 200)):
        event["pathParameters"] = {"name": name}
        if fault:
            broker.webex.inject("access_token", 400, error="invalid_grant")
        broker.dynamodb.update_item(  # a minute later: past the on-demand cooldown
            TableName="ConnectionsTable",
            Key={"connection": {"S": name}},
            UpdateExpression="REMOVE forced_at",
        )
        with recorder.running("RefreshConnectionFunction"):
            assert refresh_connection(event, LambdaContext())["statusCode"] == status
    with monkeypatch.context() as failing:
        from webex_broker.adapters import secret_store

        failing.setattr(secret_store, "write_consumer_secret", lambda *a, **k: (_ for _ in ()).throw(RuntimeError()))
        assert login("carol@partner.example.org", broker.invite("partners"))["statusCode"] == 500

    # A Service App whose refresh token died: minted again through its --via, scheduled and on demand.
    heal_service_app(broker, monkeypatch, login, recorder, refresher, refresh_connection, admin)

    # The operator's tasks that need the broker key, after one more stack update.
    share(monkeypatch, regions="eu-west-1")
    monkeypatch.setenv("BROKER_KMS_KEY_ID", create_broker_key())
    credentials = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    with recorder.running("AdminFunction"):
        assert admin({"action": "set_credentials", **credentials}, LambdaContext())["ok"]
        assert admin({"action": "check_credentials"}, LambdaContext())["result"] == "ok"
        assert set(admin({"action": "converge"}, LambdaContext())["results"].values()) == {"converged"}

    statements = policies(os.environ["CLIENT_SECRET_ARN"])
    refused = []
    used = {name: set() for name in statements}
    for function, calls in recorder.calls.items():
        for action, resource in sorted(calls):
            statement = allowed(statements[function], action, resource)
            if statement is None:
                refused.append(f"{function}: {action} on {resource}")
            else:
                used[function].add(statement["Sid"])
    assert refused == [], "calls the template does not allow"
    spare = {f: sorted({s["Sid"] for s in statements[f]} - used[f]) for f in statements}
    assert spare == {f: [] for f in statements}, "permissions no flow needed"
    assert broker_key_users() == sealing_functions(recorder, os.environ["CLIENT_SECRET_ARN"]), (
        "the broker key's policy names exactly the functions that read or write what it seals"
    )


SEALING_CALLS = {f"secretsmanager:{op}" for op in ("GetSecretValue", "PutSecretValue", "CreateSecret", "UpdateSecret")}


def sealing_functions(recorder: CallRecorder, client_secret_arn: str) -> set[str]:
    """Functions that decrypt or encrypt refresh material or the client secret: the broker key's users."""
    return {
        function
        for function, calls in recorder.calls.items()
        for action, resource in calls
        if action in SEALING_CALLS and ("/refresh/" in resource or resource == client_secret_arn)
    }


def broker_key_users() -> set[str]:
    """The functions whose roles the BrokerKey policy lets use the key (its aws:PrincipalArn list)."""
    from devstack.template import load_template

    statements = load_template()["Resources"]["BrokerKey"]["Properties"]["KeyPolicy"]["Statement"]
    users = next(s for s in statements if s.get("Sid") == "BrokerFunctionsUseItThroughSecretsManager")
    arns = users["Condition"]["StringEquals"]["aws:PrincipalArn"]
    return {str(arn["Fn::GetAtt"]).split(".")[0].removesuffix("Role") for arn in arns}


def heal_service_app(broker, monkeypatch, login, recorder, refresher, refresh_connection, admin) -> None:
    """Added by the operator through the admin function, then healed by the refresher and by the route."""
    from tests.test_service_apps import APP_CLIENT, APP_ID, APP_SECRET, ORG, SCOPES, make_due

    monkeypatch.setenv("WEBEX_SCOPES", SCOPES)
    broker.webex.register_client(CLIENT_ID, CLIENT_SECRET, [CALLBACK_URL], scopes=SCOPES.split())
    broker.webex.register_service_app(APP_ID, "Capp0client0id", "app-secret-value-never-shown", ["spark:people_read"])
    broker.webex.authorize_service_app(APP_ID, ORG)
    reset_broker_caches()
    assert login("alice@example.com", broker.invite("alice@example.com"))["statusCode"] == 200
    add = {"action": "add_service_app", "connection": "org-bot", "app_id": APP_ID, "client_id": APP_CLIENT}
    add |= {"client_secret": APP_SECRET, "org_id": ORG, "via": "alice@example.com"}
    with recorder.running("AdminFunction"):
        assert admin(add, LambdaContext())["ok"]
    broker.webex.revoke_grant(app_id=APP_ID, org_id=ORG)
    make_due(broker, "org-bot")
    with recorder.running("RefresherFunction"):
        run = refresher(broker.event("refresher"), LambdaContext(timeout_seconds=900))
    assert run["outcomes"]["healed"] == 1
    broker.webex.revoke_grant(app_id=APP_ID, org_id=ORG)
    event = broker.event("refresh_connection")
    event["pathParameters"] = {"name": "org-bot"}
    with recorder.running("RefreshConnectionFunction"):
        assert refresh_connection(event, LambdaContext())["statusCode"] == 200
