"""Each function's IAM policy in template.yaml allows exactly what its code calls, proved by running:
every handler signs as its function's role and the local AWS holds each call to that role's statements
(devstack/iam.py), so every flow below passes only if nothing it does is refused; and every statement
of every role is used by some call (no spare permissions)."""

import copy
import os
from collections import defaultdict

import boto3
import pytest
import yaml

from devstack import function_roles, iam
from devstack.lambda_runtime import LambdaContext
from devstack.template import TEMPLATE_VARIABLE, load_template
from tests.support.broker import (
    CALLBACK_URL,
    CLIENT_ID,
    CLIENT_SECRET,
    OPERATOR,
    PREFIX,
    create_broker_key,
    reset_broker_caches,
)
from tests.support.operator import share
from tests.support.refresh import make_due, refreshed_a_day_ago
from tests.support.service_apps import APP_CLIENT, APP_ID, APP_SECRET, ORG, SCOPES
from webex_broker.adapters.secret_store import delete_secret


def fresh() -> None:
    """As a Lambda of another function: nothing cached from another function's calls."""
    reset_broker_caches()


def refusals(checks: list[iam.Check]) -> list[str]:
    return [f"{c.identity.session}: {c.action} on {c.resource}" for c in checks if not c.decision.allowed]


def test_every_call_is_allowed_and_every_permission_is_used(broker, monkeypatch):
    with iam.recording() as checks:
        try:
            every_flow(broker, monkeypatch)
        finally:  # a refusal is what makes a flow fail here: name it first
            assert refusals(checks) == [], "calls the template does not allow"
    used = defaultdict(set)
    for check in checks:
        used[check.identity.session] |= set(check.decision.statements)  # every check was allowed
    roles = function_roles.roles(PREFIX)
    sids = {
        function: {s["Sid"] for s in function_roles.statements(role, os.environ)} for function, role in roles.items()
    }
    spare = {function: sorted(sids[function] - used[function]) for function in roles}
    assert spare == {function: [] for function in roles}, "permissions no flow needed"


def every_flow(broker, monkeypatch) -> None:
    """Every flow, in both access modes, including the failure paths that touch other resources."""
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
        fresh()
        event = broker.event("authorize", {"invite": invite} if invite else None)
        start = broker.keep_cookies(authorize(event, LambdaContext()))
        query = broker.consent(start["headers"]["Location"], person=person)
        fresh()
        done = callback(broker.event("callback", query), LambdaContext())
        return broker.result_page(done["headers"]["Location"]) if done["statusCode"] == 303 else done

    assert login("alice@example.com")["statusCode"] == 200
    monkeypatch.setenv("ACCESS_MODE", "invite")
    assert login("bob@example.com", broker.invite("reports"))["statusCode"] == 200
    monkeypatch.setenv("BROKER_KMS_KEY_ID", broker_key)  # the update: each function seals what it meets
    delete_secret(f"{PREFIX}/tokens/reports", recovery_days=7)  # its replicas first, as AWS requires
    assert login("bob@example.com", broker.invite("reports"))["statusCode"] == 200, "restores a deleted secret"
    broker.webex.rotate_refresh_tokens = True
    broker.webex.same_token_window = 0
    broker.webex.inject("access_token", 400, error="invalid_grant")  # one of the two: reauth, event, invitation
    share(monkeypatch, regions="eu-west-1")  # a stack update: the refresher converges the token secrets
    fresh()
    result = refresher(broker.event("refresher"), LambdaContext(timeout_seconds=900))
    assert result["outcomes"] == {"permanent": 1, "refreshed": 1}
    [refreshed] = {"alice@example.com", "reports"} - set(result["failures"])
    delete_secret(f"{PREFIX}/tokens/{refreshed}", recovery_days=7)  # by hand: its next refresh restores it
    make_due(broker, refreshed)
    fresh()
    assert refresher(broker.event("refresher"), LambdaContext(timeout_seconds=900))["outcomes"] == {"refreshed": 1}
    share(monkeypatch, accounts="", regions="eu-west-1,ap-southeast-2")  # and again, for the on-demand route
    monkeypatch.setenv("BROKER_KMS_KEY_ID", create_broker_key())  # a switched broker key, too
    event = broker.event("refresh_connection")
    force_delete(f"{PREFIX}/tokens/alice@example.com")  # by hand, at once: the refresh creates it again
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
        fresh()
        assert refresh_connection(event, LambdaContext())["statusCode"] == status
    with monkeypatch.context() as failing:
        from webex_broker.adapters import secret_store

        failing.setattr(secret_store, "write_token_secret", lambda *a, **k: (_ for _ in ()).throw(RuntimeError()))
        assert login("carol@partner.example.org", broker.invite("partners"))["statusCode"] == 500

    # A Service App whose refresh token died: minted again through its --via, scheduled and on demand.
    heal_service_app(broker, monkeypatch, login, refresher, refresh_connection, admin)

    # The operator's tasks that need the broker key, after one more stack update.
    share(monkeypatch, regions="eu-west-1")
    monkeypatch.setenv("BROKER_KMS_KEY_ID", create_broker_key())
    credentials = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    fresh()
    assert admin({"action": "set_credentials", **credentials}, LambdaContext())["ok"]
    assert admin({"action": "check_credentials"}, LambdaContext())["result"] == "ok"
    assert set(admin({"action": "converge"}, LambdaContext())["results"].values()) == {"converged"}

    # Secrets Manager's rotation of both kinds of secret, a day later, then of one whose grant Webex refuses.
    sm = boto3.client("secretsmanager", **OPERATOR)
    for name in (f"{PREFIX}/tokens/alice@example.com", f"{PREFIX}/refresh/alice@example.com"):
        refreshed_a_day_ago(broker, "alice@example.com")
        fresh()
        sm.rotate_secret(SecretId=name)
        stages = sm.describe_secret(SecretId=name)["VersionIdsToStages"].values()
        assert all("AWSCURRENT" in labels for labels in stages if "AWSPENDING" in labels), "rotated"
    refreshed_a_day_ago(broker, "reports")
    broker.webex.inject("access_token", 400, error="invalid_grant")
    fresh()
    sm.rotate_secret(SecretId=f"{PREFIX}/refresh/reports")
    assert broker.connection("reports")["status"] == "reauth_required"


def force_delete(name: str) -> None:
    """What an operator might do: its replicas, then the secret, without a recovery window."""
    sm = boto3.client("secretsmanager", **OPERATOR)
    if regions := [r["Region"] for r in sm.describe_secret(SecretId=name).get("ReplicationStatus", [])]:
        sm.remove_regions_from_replication(SecretId=name, RemoveReplicaRegions=regions)
    sm.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)


def heal_service_app(broker, monkeypatch, login, refresher, refresh_connection, admin) -> None:
    """Added by the operator through the admin function, then healed by the refresher and by the route."""
    monkeypatch.setenv("WEBEX_SCOPES", SCOPES)
    broker.webex.register_client(CLIENT_ID, CLIENT_SECRET, [CALLBACK_URL], scopes=SCOPES.split())
    broker.webex.register_service_app(APP_ID, "Capp0client0id", "app-secret-value-never-shown", ["spark:people_read"])
    broker.webex.authorize_service_app(APP_ID, ORG)
    reset_broker_caches()
    assert login("alice@example.com", broker.invite("alice@example.com"))["statusCode"] == 200
    add = {"action": "add_service_app", "connection": "org-bot", "app_id": APP_ID, "client_id": APP_CLIENT}
    add |= {"client_secret": APP_SECRET, "org_id": ORG, "via": "alice@example.com"}
    fresh()
    with monkeypatch.context() as failing:  # an add that fails after its first secret: that secret goes
        from webex_broker.adapters import secret_store

        failing.setattr(secret_store, "write_token_secret", lambda *a, **k: (_ for _ in ()).throw(RuntimeError()))
        with pytest.raises(RuntimeError):
            admin({**add, "connection": "org-bot-2"}, LambdaContext())
    assert admin(add, LambdaContext())["ok"]
    broker.webex.revoke_grant(app_id=APP_ID, org_id=ORG)
    make_due(broker, "org-bot")
    fresh()
    run = refresher(broker.event("refresher"), LambdaContext(timeout_seconds=900))
    assert run["outcomes"]["healed"] == 1
    broker.webex.revoke_grant(app_id=APP_ID, org_id=ORG)
    event = broker.event("refresh_connection")
    event["pathParameters"] = {"name": "org-bot"}
    fresh()
    assert refresh_connection(event, LambdaContext())["statusCode"] == 200


def test_a_permission_taken_from_a_role_refuses_the_call_that_needed_it(broker, monkeypatch, tmp_path):
    """The refresher's role without PutSecretValue on the token secrets, through a modified template:
    its refresh is refused by AWS, and the flow meets that refusal."""
    template = copy.deepcopy(load_template())
    statements = template["Resources"]["RefresherFunction"]["Properties"]["Policies"][0]["Statement"]
    [write] = [statement for statement in statements if statement["Sid"] == "WriteNewTokenVersions"]
    write["Resource"] = [resource for resource in write["Resource"] if "/tokens/" not in str(resource)]
    modified = tmp_path / "template.yaml"
    modified.write_text(yaml.safe_dump(template))  # intrinsics in their long form, which CloudFormation reads too
    broker.webex.access_token_ttl = 3600
    broker.webex.same_token_window = 0  # a new access token to write
    assert broker.login()["statusCode"] == 200
    token = f"{PREFIX}/tokens/alice@example.com"
    before = broker.secret(token)["access_token"]
    make_due(broker, "alice@example.com")

    monkeypatch.setenv(TEMPLATE_VARIABLE, str(modified))
    with iam.recording() as checks:
        broker.refresh()
    arn = broker.secrets.describe_secret(SecretId=token)["ARN"]
    assert refusals(checks) == [f"RefresherFunction: secretsmanager:PutSecretValue on {arn}"]
    assert broker.secret(token)["access_token"] == before, "nothing written"
    assert broker.connection("alice@example.com")["last_error"] == "secretsmanager:PutSecretValue"

    monkeypatch.delenv(TEMPLATE_VARIABLE)
    make_due(broker, "alice@example.com")
    with iam.recording() as checks:
        broker.refresh()
    assert refusals(checks) == [], "the template's own role writes it"
    assert broker.secret(token)["access_token"] != before
