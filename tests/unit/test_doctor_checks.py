"""`webex-broker doctor`'s checks that only a deployed stack has (the local stack skips them), with
AWS's answers as the service models define them (botocore's Stubber)."""

import pytest
from botocore.stub import Stubber

from webex_broker_admin.doctor import FAIL, OK, WARN, _alarm_subscription, _concurrency, _reader_policy

TOPIC = "arn:aws:sns:us-east-1:123456789012:broker-AlarmTopic-1"


@pytest.fixture
def stubbed(monkeypatch):
    import boto3

    from webex_broker.adapters import aws

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    clients = {
        name: boto3.client(name, aws_access_key_id="x", aws_secret_access_key="x")
        for name in ("sns", "lambda", "secretsmanager")
    }
    monkeypatch.setattr(aws, "client", lambda name: clients[name])
    stubs = {name: Stubber(c) for name, c in clients.items()}
    for stub in stubs.values():
        stub.activate()
    yield stubs
    for stub in stubs.values():
        stub.assert_no_pending_responses()


def subscription(arn: str, endpoint: str = "ops@example.com") -> dict:
    return {
        "SubscriptionArn": arn,
        "Owner": "123456789012",
        "Protocol": "email",
        "Endpoint": endpoint,
        "TopicArn": TOPIC,
    }


@pytest.mark.parametrize(
    ("subscriptions", "result", "says"),
    [
        ([subscription("PendingConfirmation")], FAIL, "not confirmed: ops@example.com"),
        ([], WARN, "nobody is subscribed"),
        ([subscription(f"{TOPIC}:0b1c")], OK, "ops@example.com"),
    ],
)
def test_the_alarm_subscription_must_be_confirmed(stubbed, subscriptions, result, says):
    stubbed["sns"].add_response("list_subscriptions_by_topic", {"Subscriptions": subscriptions}, {"TopicArn": TOPIC})
    check = _alarm_subscription(TOPIC)
    assert (check.result, says in check.detail) == (result, True)


@pytest.mark.parametrize(("quota", "result"), [(10, WARN), (1000, OK)])
def test_a_new_accounts_concurrency_quota_is_named(stubbed, quota, result):
    stubbed["lambda"].add_response(
        "get_account_settings",
        {"AccountLimit": {"ConcurrentExecutions": quota, "UnreservedConcurrentExecutions": quota}},
    )
    check = _concurrency()
    assert check.result == result
    assert f"quota {quota}" in check.detail
    if quota == 10:
        assert "RefresherReservedConcurrency" in check.detail


def test_an_unreadable_account_setting_is_a_warning_not_a_crash(stubbed):
    stubbed["lambda"].add_client_error("get_account_settings", "AccessDeniedException")
    assert _concurrency().result == WARN


def sharing_broker(organization: str = "o-a1b2c3d4e5", accounts: tuple[str, ...] = ("111122223333",)):
    from types import SimpleNamespace

    from webex_broker.core.sharing import TokenSharing

    sharing = TokenSharing(
        kms_key_id="k", reader_account_ids=accounts, reader_organization_id=organization, own_account="123456789012"
    )
    return SimpleNamespace(settings=SimpleNamespace(sharing=sharing))


@pytest.mark.parametrize(
    ("passed", "errors", "result"),
    [
        (True, [], OK),
        (False, [{"CheckName": "BROAD_ACCESS", "ErrorMessage": "grants broad access"}], FAIL),
    ],
)
def test_doctor_asks_aws_about_the_exact_resource_policy_before_any_secret_carries_it(stubbed, passed, errors, result):
    import json

    broker = sharing_broker()
    expected = {"ResourcePolicy": json.dumps(broker.settings.sharing.resource_policy())}
    stubbed["secretsmanager"].add_response(
        "validate_resource_policy", {"PolicyValidationPassed": passed, "ValidationErrors": errors}, expected
    )
    check = _reader_policy(broker)
    assert check.result == result
    if errors:
        assert "BROAD_ACCESS: grants broad access" in check.detail
        assert "ReaderAccountIds" in check.fix


def test_doctor_has_nothing_to_validate_without_readers(stubbed):
    assert _reader_policy(sharing_broker(organization="", accounts=())).result == OK


def test_doctor_names_connections_authorized_before_the_scopes_grew():
    from types import SimpleNamespace

    from webex_broker.core.connection import Connection, ConnectionKind, ConnectionStatus
    from webex_broker_admin.doctor import _scopes

    wanted = ("spark:kms", "spark:people_read", "spark:applications_token")
    rows = [
        Connection("old", ConnectionStatus.ACTIVE, scopes=("spark:kms", "spark:people_read")),
        Connection("new", ConnectionStatus.ACTIVE, scopes=wanted),
        Connection("bot", ConnectionStatus.ACTIVE, kind=ConnectionKind.SERVICE_APP, scopes=("spark:kms",)),
    ]
    broker = SimpleNamespace(
        settings=SimpleNamespace(scopes=wanted, scope_string=" ".join(wanted)),
        connections=SimpleNamespace(all=lambda: rows),
    )
    check = _scopes(broker)
    assert check.result == WARN
    assert check.detail.endswith("old lacks spark:applications_token")
    assert "invite NAME" in check.fix
    rows.pop(0)
    assert _scopes(broker).result == OK
