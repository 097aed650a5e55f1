"""What a person reads on the broker's pages: withdrawn, used, expired and foreign links; Back and Allow
again after a login; someone else's connection; whom to contact; the success page; and `/`."""

import time

import boto3
import pytest

from devstack.lambda_runtime import LambdaContext
from devstack.template import create_tables, function_definitions, load_template
from tests.support.broker import PREFIX, other_browser, reset_broker_caches
from tests.support.people import ALICE, BOB

CONTACT = "IT desk, it-desk@example.com"
NOT_VALID = "This invitation link is not valid"


@pytest.fixture
def with_contact(monkeypatch):
    monkeypatch.setenv("SUPPORT_CONTACT", CONTACT)
    reset_broker_caches()


def page(response: dict, status: int, *phrases: str) -> str:
    assert response["statusCode"] == status, response["body"]
    assert response["headers"]["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in response["headers"]["Content-Security-Policy"]
    for phrase in phrases:
        assert phrase in response["body"], phrase
    return response["body"]


def nothing_stored(broker) -> None:
    assert broker.secret_names() == ["test-broker-client"]
    assert boto3.client("dynamodb").scan(TableName="StateTable")["Count"] == 0


def invitations(table: str = "InvitationsTable"):
    from webex_broker.adapters.invitations import InvitationStore

    return InvitationStore(table)


def uninvite(token: str) -> None:
    """What `webex-broker uninvite ID` does."""
    assert invitations().revoke(token.split(".")[0])


def home(broker) -> dict:
    from authorize import handler

    return handler(broker.event("home"), LambdaContext())


# --- invitation links ----------------------------------------------------------------------------


def test_a_withdrawn_link_says_it_was_withdrawn_and_stores_nothing(invite_mode):
    token = invite_mode.invite("reports")
    uninvite(token)
    body = page(invite_mode.authorize(token), 410, "This invitation was withdrawn", "Ask them for a new one")
    assert "copied the whole link" not in body
    nothing_stored(invite_mode)


def test_a_withdrawn_invitation_is_kept_until_its_own_expiry_and_never_listed_or_usable(invite_mode):
    token = invite_mode.invite("reports", ttl=3600)
    uninvite(token)
    kept = invitations().get(token.split(".")[0])
    assert kept is not None
    assert kept.withdrawn
    assert kept.expires_at <= int(time.time()) + 3600, "the table's TTL removes it at its own expiry"
    assert invitations().open_invitations(now=int(time.time())) == []
    assert not invitations().revoke(token.split(".")[0]), "withdrawn once"


def test_a_forged_secret_for_a_withdrawn_invitation_only_says_not_valid(invite_mode):
    invite_id = invite_mode.invite("reports").split(".")[0]
    uninvite(invite_id)
    other_secret = invite_mode.invite("other").split(".")[1]
    body = page(invite_mode.authorize(f"{invite_id}.{other_secret}"), 400, NOT_VALID)
    assert "withdrawn" not in body, "only the link's own secret may learn what became of it"


def test_used_and_expired_links_say_so_and_whom_to_ask(invite_mode):
    used = invite_mode.invite("reports")
    invite_mode.login(ALICE, invite=used)
    page(invite_mode.authorize(used), 410, "This invitation was already used", "Ask whoever sent it for a new one")

    expired = invite_mode.invite("reports", ttl=60)
    boto3.client("dynamodb").update_item(
        TableName="InvitationsTable",
        Key={"invite_id": {"S": expired.split(".")[0]}},
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 1)}},
    )
    page(invite_mode.authorize(expired), 410, "This invitation has expired", "Ask whoever sent it for a new one")


def test_a_link_from_another_or_an_earlier_broker_says_so(invite_mode):
    """An earlier `make run`, or a deleted and re-created stack: its invitations table had another name."""
    create_tables(boto3.client("dynamodb"), names={"InvitationsTable": "EarlierInvitations"})
    _, token = invitations("EarlierInvitations").create("reports", email=None, ttl_seconds=3600, max_uses=1, now=0)
    body = page(invite_mode.authorize(token), 404, "This link belongs to another broker", "earlier installation")
    assert "copied the whole link" not in body
    nothing_stored(invite_mode)


@pytest.mark.parametrize("where", [-1, -12, -16, 20], ids=["check", "broker", "broker's first", "secret"])
def test_a_damaged_link_is_only_not_valid_never_another_brokers(invite_mode, where):
    """One character changed in copying (or on purpose): the stamp's check refuses it before anything
    is claimed about where the link came from."""
    token = invite_mode.invite("reports")
    damaged = token[:where] + ("1" if token[where] == "0" else "0") + token[where:][1:]
    body = page(invite_mode.authorize(damaged), 400, NOT_VALID, "copied the whole link")
    assert "another broker" not in body


def test_an_unknown_link_of_this_broker_is_neutral(invite_mode):
    token = invite_mode.invite("reports")
    boto3.client("dynamodb").delete_item(TableName="InvitationsTable", Key={"invite_id": {"S": token.split(".")[0]}})
    body = page(invite_mode.authorize(token), 400, NOT_VALID, "ask whoever sent it for a new one")
    assert "another broker" not in body
    assert "withdrawn" not in body


def test_a_link_made_before_the_stamp_still_connects(invite_mode):
    token = invite_mode.invite("reports")
    invite_id, secret, _stamp = token.split(".")
    page(invite_mode.login(ALICE, invite=f"{invite_id}.{secret}"), 200, "Connected to Webex")


# --- Back, then Allow again ----------------------------------------------------------------------


def test_back_and_allow_again_after_success_says_already_connected_without_calling_webex(broker):
    consent_page = broker.authorize()["headers"]["Location"]
    page(broker.callback(broker.consent(consent_page)), 200, "Connected to Webex")
    calls = (broker.webex.calls["access_token"], broker.webex.calls["people_me"])

    again = broker.consent(consent_page)  # Back to Webex's page, Allow again: a new code, the same state
    body = page(broker.callback(again, follow=False), 200, "You are already connected", f"<code>{ALICE}</code>")
    assert again["state"] not in body
    assert again["code"] not in body
    assert (broker.webex.calls["access_token"], broker.webex.calls["people_me"]) == calls, "no Webex call"
    assert broker.versions(f"{PREFIX}/tokens/{ALICE}") == 1


def test_a_finished_state_replayed_from_another_browser_is_not_called_connected(broker):
    consent_page = broker.authorize()["headers"]["Location"]
    broker.callback(broker.consent(consent_page))
    replay = broker.consent(consent_page)

    elsewhere = other_browser(broker)
    elsewhere.authorize()  # a browser with a login cookie of its own
    body = page(elsewhere.callback(replay), 400, "This sign-in link is not valid")
    assert "already connected" not in body
    assert ALICE not in body
    body = page(other_browser(broker).callback(replay), 400, "started in another browser")
    assert "already connected" not in body


def test_a_state_spent_by_a_failed_login_keeps_its_old_message(broker):
    consent_page = broker.authorize()["headers"]["Location"]
    page(broker.callback(broker.consent(consent_page, decision="deny")), 403, "You declined access")
    body = page(broker.callback(broker.consent(consent_page)), 400, "This sign-in link is not valid")
    assert "already connected" not in body
    nothing_stored(broker)


# --- someone else's connection, the contact, the success page ------------------------------------


def test_someone_elses_connection_says_what_to_do_next(invite_mode, with_contact):
    invite_mode.login(ALICE, invite=invite_mode.invite("reports"))
    page(
        invite_mode.login(BOB, invite=invite_mode.invite("reports")),
        409,
        "belongs to another Webex account",
        "Ask whoever sent you the link for a link to a connection of your own.",
        f"Questions? Contact {CONTACT}.",
    )


def test_every_page_names_the_contact_when_there_is_one(invite_mode, with_contact):
    asked = f"Questions? Contact {CONTACT}."
    page(home(invite_mode), 200, asked)
    page(invite_mode.authorize("not-a-token"), 400, NOT_VALID, asked)
    page(invite_mode.authorize(), 403, asked)
    page(invite_mode.login(ALICE, invite=invite_mode.invite("reports")), 200, "Connected to Webex", asked)
    page(invite_mode.result_page("https://abc123.execute-api.us-east-1.amazonaws.com/connected?r=x"), 404, asked)


def test_the_contact_is_escaped_and_absent_when_not_set(broker, monkeypatch):
    assert "Questions?" not in page(home(broker), 200)
    monkeypatch.setenv("SUPPORT_CONTACT", "O'Brien's desk")
    reset_broker_caches()
    assert "Questions? Contact O&#x27;Brien&#x27;s desk." in page(home(broker), 200)


@pytest.mark.parametrize(
    ("value", "ok"),
    [("", True), (CONTACT, True), ("<script>", False), ('a "quote"', False), ("A & B", False), ("x" * 101, False)],
)
def test_the_contact_parameter_refuses_markup(value, ok):
    import re

    spec = load_template()["Parameters"]["SupportContact"]
    assert (re.fullmatch(spec["AllowedPattern"], value) is not None and len(value) <= spec["MaxLength"]) is ok


def test_only_the_login_functions_get_the_contact():
    having = {n for n, f in function_definitions().items() if "SUPPORT_CONTACT" in str(f.get("Environment"))}
    assert having == {"AuthorizeFunction", "CallbackFunction"}
    assert load_template()["Parameters"]["SupportContact"]["Default"] == ""


def test_the_success_page_says_who_as_what_and_how_to_withdraw_but_no_secret_name(broker):
    body = page(
        broker.login(ALICE),
        200,
        "Alice Anderson",
        f"connected as <code>{ALICE}</code>",
        "keeps this connection's access fresh",
        "To withdraw your consent, remove this integration's access in your Webex account settings",
        "ask whoever runs this broker to revoke the connection",
    )
    assert f"{PREFIX}/tokens" not in body
    assert "Secrets Manager" not in body


# --- / ---------------------------------------------------------------------------------------------


def test_the_bare_address_is_a_small_page_not_json(broker, aws_calls):
    body = page(home(broker), 200, "Webex Token Broker", "open the link you were sent")
    assert not body.startswith("{")
    assert sum(aws_calls.values()) == 0, "nothing to look up"
    routes = load_template()["Resources"]["AuthorizeFunction"]["Properties"]["Events"]
    assert {(e["Properties"]["Method"], e["Properties"]["Path"]) for e in routes.values()} == {
        ("GET", "/authorize"),
        ("GET", "/"),
    }
