"""Shape before AWS: malformed states, invitations and e-mails are refused before any AWS call, the
callback URL comes from configuration, and public pages never show configuration details."""

import pytest

from devstack.lambda_runtime import LambdaContext
from tests.support.broker import API_DOMAIN, reset_broker_caches
from tests.support.refresh import refresh_route

OVERSIZED = "A" * 3000  # real DynamoDB refuses keys over 2,048 bytes with a ValidationException (moto does not)


@pytest.mark.parametrize("state", [OVERSIZED, "short", "x" * 42 + "!", "x" * 44, "result." + "x" * 36])
def test_a_malformed_state_is_a_400_before_any_aws_call(broker, aws_calls, state):
    broker.authorize()  # the browser has its cookie: only the state's shape is wrong
    aws_calls.clear()
    page = broker.callback({"state": state, "code": "whatever"})
    assert page["statusCode"] == 400
    assert "not valid" in page["body"]
    assert aws_calls == {}, "DynamoDB never saw it"


@pytest.mark.parametrize(
    "token",
    [OVERSIZED, "nodot", "0123456789ab.short", "0123456789AB." + "x" * 43, "0123456789ab." + "x" * 42 + "%"],
)
def test_a_malformed_invitation_is_a_400_before_any_aws_call(broker, aws_calls, monkeypatch, token):
    from webex_broker.core.settings import load_settings

    monkeypatch.setenv("ACCESS_MODE", "invite")
    load_settings.cache_clear()  # not a cold start: the counted AWS clients stay
    aws_calls.clear()
    page = broker.authorize(token)
    assert page["statusCode"] == 400
    assert "invitation link is not valid" in page["body"]
    assert aws_calls == {}


def test_a_malformed_result_id_reads_nothing(broker, aws_calls):
    broker.authorize()
    aws_calls.clear()
    assert broker.result_page(f"https://{API_DOMAIN}/connected?r={OVERSIZED}")["statusCode"] == 404
    assert aws_calls == {}


def person(email: str, org: str = "org-1"):
    from webex_broker.core.grants import Person

    return Person(id="p-1", email=email, display_name="K", org_id=org, type="person")


def invitation(email: str | None):
    from webex_broker.adapters.invitations import Invitation

    return Invitation(
        id="0123456789ab", connection="team", email=email, expires_at=2**40, max_uses=1, uses=0, created_at=0
    )


@pytest.mark.parametrize(
    "lookalike",
    ["\u212aarl@example.com", "karl@exampl\u0435.com", "\uff4barl@example.com", "karl@example.com\u200b"],
)
def test_a_lookalike_address_never_matches_an_invitation(broker, lookalike):
    from webex_broker.core.errors import AccessDenied
    from webex_broker.core.settings import load_settings
    from webex_broker.flows.access import connection_for

    with pytest.raises(AccessDenied):
        connection_for(load_settings(), person(lookalike), invitation("karl@example.com"))


def test_plain_addresses_match_whatever_their_case(broker):
    from webex_broker.core.settings import load_settings
    from webex_broker.flows.access import connection_for

    assert connection_for(load_settings(), person("Karl@Example.COM "), invitation("karl@example.com")) == "team"


def test_an_allowlist_never_admits_a_lookalike_domain(broker, monkeypatch):
    from webex_broker.core.errors import AccessDenied
    from webex_broker.core.settings import load_settings
    from webex_broker.flows.access import connection_for

    monkeypatch.setenv("ALLOWED_EMAIL_DOMAINS", "example.com")
    monkeypatch.setenv("OPEN_TO_ANY_WEBEX_ACCOUNT", "false")
    reset_broker_caches()
    with pytest.raises(AccessDenied):
        connection_for(load_settings(), person("mallory@exampl\u0435.com"), None)
    assert connection_for(load_settings(), person("Mallory@Example.com"), None) == "mallory@example.com"


def test_an_invitation_for_a_non_ascii_address_is_refused(broker):
    from webex_broker.adapters.invitations import InvitationStore

    with pytest.raises(ValueError, match="ASCII"):
        InvitationStore("InvitationsTable").create(
            "team", email="\u212aarl@example.com", ttl_seconds=3600, max_uses=1, now=0
        )


def test_the_callback_url_ignores_forwarded_headers(broker):
    from authorize import handler

    event = broker.event("authorize")
    event["headers"] |= {"x-forwarded-proto": "http", "x-forwarded-host": "evil.example", "host": "evil.example"}
    location = handler(event, LambdaContext())["headers"]["Location"]
    assert f"redirect_uri=https%3A%2F%2F{API_DOMAIN}%2Fcallback" in location
    assert "evil" not in location


@pytest.mark.parametrize("address", ["o'brien@example.com", "a#b@example.com", "hey!@example.com", "a b@example.com"])
def test_an_open_mode_address_that_cannot_name_a_secret_gets_a_clear_refusal(broker, address):
    from webex_broker.core.errors import AccessDenied, Denial
    from webex_broker.core.settings import load_settings
    from webex_broker.edge.web import error_page
    from webex_broker.flows.access import connection_for

    with pytest.raises(AccessDenied) as refused:
        connection_for(load_settings(), person(address), None)
    assert refused.value.denial == Denial.UNUSABLE
    assert error_page(refused.value)["statusCode"] == 400
    assert "invitation link" in refused.value.reason
    assert connection_for(load_settings(), person(address), invitation(None)) == "team", "an invitation names it"


@pytest.mark.parametrize("name", [OVERSIZED, "A" * 129, ".", "..", "team/alpha"])
def test_a_name_no_connection_can_have_is_a_400_on_the_refresh_route_before_any_aws_call(broker, aws_calls, name):
    """Not a 503 "try again": a workload retrying it would retry forever."""
    aws_calls.clear()
    status, body = refresh_route(broker, name)
    assert status == 400
    assert body["message"].startswith("Not a connection name")
    assert "connection" not in body, "the name is not echoed"
    assert aws_calls == {}


@pytest.mark.parametrize("name", [".", ".."])
def test_no_invitation_is_made_for_a_name_no_route_can_reach(broker, name):
    from webex_broker.adapters.invitations import InvitationStore

    with pytest.raises(ValueError, match="connection name"):
        InvitationStore("InvitationsTable").create(name, email=None, ttl_seconds=3600, max_uses=1, now=0)


def test_an_invitation_cannot_outlive_a_year(broker):
    """`invite --expires 999999999999d` was stored, and `invites` then crashed on a date past year 9999."""
    from webex_broker.adapters.invitations import InvitationStore

    store = InvitationStore("InvitationsTable")
    with pytest.raises(ValueError, match="365 days"):
        store.create("team", email=None, ttl_seconds=999_999_999_999 * 86400, max_uses=1, now=0)
    assert store.create("team", email=None, ttl_seconds=365 * 86400, max_uses=1, now=0)


def test_a_lone_surrogate_in_a_client_secret_is_a_usage_error_that_stores_nothing(broker):
    from admin import handler

    names = broker.secret_names()
    event = {"action": "set_credentials", "client_id": "C0ffee-test-client", "client_secret": "s3cr3t\ud800"}
    answer = handler(event, LambdaContext(function_name="AdminFunction"))
    assert (answer["ok"], answer["error"]) == (False, "usage")
    assert "lone surrogate" in answer["message"]
    assert broker.secret_names() == names


# --- the admin function, as a careless or hostile operator (or script) calls it -----------------------

HOSTILE_VALUES = {
    "none": None,
    "number": 12,
    "list": ["../x", 1],
    "object": {"x": 1},
    "empty": "",
    "blank": "   ",
    "lone surrogate": "a\ud800b",
    "control characters": "a\x00\x1b[31mb",
    "path": "../../other-stack/refresh/x",
    "huge": "x" * 1_000_000,
}
ADMIN_ACTIONS = {  # each action's fields, valid but for the one a test makes hostile
    "set_credentials": {
        "client_id": "C0ffee-test-client",
        "client_secret": "s3cr3t-client-value-never-shown",
        "force": False,
    },
    "add_service_app": {
        "connection": "bot",
        "app_id": "app",
        "client_id": "Capp",
        "client_secret": "app-secret",
        "org_id": "org",
        "via": "alice@example.com",
        "new_client": False,
    },
    "check_sealed": {"secrets": []},
    "converge": {"connections": ["alice@example.com"]},
}


def admin_fields():
    for action, fields in ADMIN_ACTIONS.items():
        for field in fields:
            for label in HOSTILE_VALUES:
                yield pytest.param(action, field, label, id=f"{action}-{field}-{label}")


@pytest.mark.parametrize(("action", "field", "label"), list(admin_fields()))
def test_the_admin_function_answers_every_hostile_field_and_stores_nothing(broker, action, field, label):
    from admin import handler

    client_secret = broker.secret("test-broker-client")
    names = broker.secret_names()
    event = {"action": action, **ADMIN_ACTIONS[action], field: HOSTILE_VALUES[label]}

    answer = handler(event, LambdaContext(function_name="AdminFunction"))

    assert isinstance(answer, dict)
    assert answer["ok"] is False
    assert answer["error"] in ("usage", "not_found", "conflict", "failed")
    assert answer["message"]
    assert broker.secret("test-broker-client") == client_secret
    assert broker.secret_names() == names


@pytest.mark.parametrize(
    "event",
    [None, [], "set_credentials", 12, {}, {"action": None}, {"action": ["converge"]}, {"action": "rm -rf"}],
    ids=["none", "list", "string", "number", "empty", "null-action", "list-action", "unknown-action"],
)
def test_an_admin_event_that_is_no_request_is_a_usage_error(broker, event):
    from admin import handler

    answer = handler(event, LambdaContext(function_name="AdminFunction"))
    assert (answer["ok"], answer["error"]) == (False, "usage")
    assert "the actions are" in answer["message"]
