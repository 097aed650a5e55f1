"""Who may connect: invitation links (the default), open mode with allowlists, no takeovers."""

import time

import boto3
import pytest

from tests.support.broker import PREFIX, reset_broker_caches
from tests.support.people import ALICE, BOB, CAROL


def stored_secrets(broker) -> list[str]:
    return [name for name in broker.secret_names() if name != "test-broker-client"]


def invitation(broker, token: str):
    from webex_broker.adapters.invitations import InvitationStore

    return InvitationStore("InvitationsTable").get(token.split(".")[0])


def page_of(response: dict, status: int, *phrases: str) -> None:
    assert response["statusCode"] == status, response["body"]
    assert response["headers"]["Cache-Control"] == "no-store"
    for phrase in phrases:
        assert phrase in response["body"]


# --- invite mode -------------------------------------------------------------------------------------


def test_invite_mode_refuses_a_plain_login_link(invite_mode):
    page_of(invite_mode.authorize(), 403, "invitation links only")
    assert boto3.client("dynamodb").scan(TableName="StateTable")["Count"] == 0


@pytest.mark.parametrize("token", ["garbage", "abc.def", "", "deadbeef0000.wrong-secret"])
def test_an_invalid_invitation_is_refused_at_once(invite_mode, token):
    if token == "":
        page_of(invite_mode.authorize(), 403, "invitation")
        return
    page_of(invite_mode.authorize(token), 400, "not valid")


def test_a_forged_secret_for_a_real_invitation_is_refused(invite_mode):
    token = invite_mode.invite("reports")
    invite_id = token.split(".")[0]
    page_of(invite_mode.authorize(f"{invite_id}.not-the-secret"), 400, "not valid")


def test_invitation_happy_path_names_the_connection(invite_mode):
    token = invite_mode.invite("reports")
    response = invite_mode.login(ALICE, invite=token)
    page_of(response, 200, "Alice Anderson", "connected as <code>reports</code>")
    assert invite_mode.secret(f"{PREFIX}/tokens/reports")["email"] == ALICE
    row = invite_mode.connection("reports")
    assert row["status"] == "active"
    assert row["person_id"] == invite_mode.secret(f"{PREFIX}/tokens/reports")["person_id"]
    assert invitation(invite_mode, token).uses_left == 0


def test_a_single_use_invitation_cannot_be_reused(invite_mode):
    token = invite_mode.invite("reports")
    invite_mode.login(ALICE, invite=token)
    page_of(invite_mode.authorize(token), 410, "already used")


def test_a_multi_use_invitation_counts_its_uses(invite_mode):
    token = invite_mode.invite("reports", uses=2)
    invite_mode.login(ALICE, invite=token)
    assert invitation(invite_mode, token).uses_left == 1
    page_of(invite_mode.login(ALICE, invite=token), 200, "Alice Anderson")
    page_of(invite_mode.authorize(token), 410, "already used")


def expire(token: str) -> None:
    """Move an invitation's expiry into the past (TTL would only delete it days later)."""
    boto3.client("dynamodb").update_item(
        TableName="InvitationsTable",
        Key={"invite_id": {"S": token.split(".")[0]}},
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 1)}},
    )


def test_an_expired_invitation_is_refused(invite_mode):
    token = invite_mode.invite("reports")
    expire(token)
    page_of(invite_mode.authorize(token), 410, "expired")


def test_an_invitation_that_expires_during_consent_stores_nothing(invite_mode):
    token = invite_mode.invite("reports")
    start = invite_mode.authorize(token)
    query = invite_mode.consent(start["headers"]["Location"], person=ALICE)
    expire(token)
    page_of(invite_mode.callback(query), 410, "expired", "Nothing was stored")
    assert stored_secrets(invite_mode) == []


def test_an_invitation_revoked_during_consent_stores_nothing(invite_mode):
    from webex_broker.adapters.invitations import InvitationStore

    token = invite_mode.invite("reports")
    start = invite_mode.authorize(token)
    query = invite_mode.consent(start["headers"]["Location"], person=ALICE)
    assert InvitationStore("InvitationsTable").revoke(token.split(".")[0])
    page_of(invite_mode.callback(query), 410, "withdrawn")
    assert stored_secrets(invite_mode) == []
    assert invite_mode.connection("reports") is None


def test_the_wrong_person_for_a_bound_invitation_stores_nothing(invite_mode):
    token = invite_mode.invite("reports", email=BOB)
    response = invite_mode.login(ALICE, invite=token)
    page_of(response, 403, "different Webex account", ALICE, "Nothing was stored")
    assert stored_secrets(invite_mode) == []
    assert invite_mode.connection("reports") is None
    assert invitation(invite_mode, token).uses_left == 1, "the rightful person can still use it"
    page_of(invite_mode.login(BOB, invite=token), 200, "Bob Brown")


def test_the_bound_email_is_compared_case_insensitively(invite_mode):
    token = invite_mode.invite("reports", email="Bob@Example.COM")
    page_of(invite_mode.login(BOB, invite=token), 200, "Bob Brown")


def test_a_connection_cannot_be_taken_over_by_another_person(invite_mode):
    invite_mode.login(ALICE, invite=invite_mode.invite("reports"))
    before = invite_mode.secret(f"{PREFIX}/tokens/reports")

    response = invite_mode.login(BOB, invite=invite_mode.invite("reports"))
    page_of(response, 409, "another Webex account", "Nothing was stored")
    assert invite_mode.secret(f"{PREFIX}/tokens/reports") == before
    assert invite_mode.versions(f"{PREFIX}/tokens/reports") == 1
    assert invite_mode.connection("reports")["email"] == ALICE


def test_the_same_person_can_reauthorize_with_a_new_invitation(invite_mode):
    invite_mode.login(ALICE, invite=invite_mode.invite("reports"))
    page_of(invite_mode.login(ALICE, invite=invite_mode.invite("reports")), 200, "Alice Anderson")
    assert invite_mode.versions(f"{PREFIX}/tokens/reports") == 2


def test_two_people_racing_for_one_single_use_link(invite_mode):
    token = invite_mode.invite("reports")
    alice = invite_mode.consent(invite_mode.authorize(token)["headers"]["Location"], person=ALICE)
    bob = invite_mode.consent(invite_mode.authorize(token)["headers"]["Location"], person=BOB)
    page_of(invite_mode.callback(alice), 200, "Alice Anderson")
    page_of(invite_mode.callback(bob), 410, "already used")
    assert invite_mode.connection("reports")["email"] == ALICE


def test_only_a_hash_of_the_invitation_is_stored(invite_mode):
    token = invite_mode.invite("reports", email=BOB)
    secret = token.split(".", 1)[1]
    items = boto3.client("dynamodb").scan(TableName="InvitationsTable")["Items"]
    assert len(items) == 1
    assert secret not in str(items)
    assert items[0]["secret_sha256"]["S"] != secret


def test_invitation_tokens_are_unguessable_and_distinct(invite_mode):
    tokens = {invite_mode.invite("reports") for _ in range(20)}
    assert len(tokens) == 20
    assert all(len(t.split(".", 1)[1]) >= 43 for t in tokens), "at least 256 bits of secret"


# --- open mode -----------------------------------------------------------------------------------------


def test_open_mode_allows_listed_domains_only(open_mode, monkeypatch):
    monkeypatch.setenv("ALLOWED_EMAIL_DOMAINS", "Example.com, other.example")
    reset_broker_caches()
    page_of(open_mode.login(ALICE), 200, "Alice Anderson")
    page_of(open_mode.login(CAROL), 403, "partner.example.org", "Nothing was stored")
    assert stored_secrets(open_mode) == [f"{PREFIX}/refresh/{ALICE}", f"{PREFIX}/tokens/{ALICE}"]


def test_open_mode_allows_listed_orgs(open_mode, monkeypatch):
    from devstack.webex_simulator import DEFAULT_PEOPLE

    carol = next(p for p in DEFAULT_PEOPLE if p.email == CAROL)
    monkeypatch.setenv("ALLOWED_ORG_IDS", carol.org_id)
    reset_broker_caches()
    page_of(open_mode.login(CAROL), 200, "Carol Chen")
    page_of(open_mode.login(ALICE), 403, "not allowed")


def test_open_mode_without_allowlists_needs_explicit_confirmation(open_mode, caplog):
    response = open_mode.authorize()
    page_of(response, 500, "not set up correctly", "logs")
    assert "AllowedEmailDomains" not in response["body"], "configuration details stay out of public pages"
    assert any("AllowedEmailDomains" in getattr(r, "problem", "") for r in caplog.records), "the log has them"
    assert boto3.client("dynamodb").scan(TableName="StateTable")["Count"] == 0


def test_open_mode_also_honours_invitations(open_mode, monkeypatch):
    monkeypatch.setenv("ALLOWED_EMAIL_DOMAINS", "example.com")
    reset_broker_caches()
    page_of(open_mode.login(CAROL, invite=open_mode.invite("partner-reports", email=CAROL)), 200, "Carol Chen")


# --- reauthorization links -----------------------------------------------------------------------------


def test_reauth_required_event_carries_a_working_invitation(invite_mode):
    invite_mode.webex.access_token_ttl = 3600
    invite_mode.login(ALICE, invite=invite_mode.invite("reports"))
    invite_mode.events()
    invite_mode.webex.inject("access_token", 400, error="invalid_grant")
    assert invite_mode.refresh()["failures"] == {"reports": "permanent"}

    [event] = invite_mode.events()
    link = event["detail"]["login_url"]
    assert link.startswith("https://abc123.execute-api.us-east-1.amazonaws.com/authorize?invite=")
    token = link.split("invite=", 1)[1]
    assert invitation(invite_mode, token).email == ALICE
    page_of(invite_mode.login(BOB, invite=token), 403, "different Webex account")
    page_of(invite_mode.login(ALICE, invite=token), 200, "Alice Anderson")
    row = invite_mode.connection("reports")
    assert row["status"] == "active"
    assert row["schedule"] == "scheduled", "schedulable again"


@pytest.mark.parametrize(
    ("connection", "kwargs"),
    [("", {}), ("has/slash", {}), ("spaces not allowed", {}), ("ok", {"max_uses": 0}), ("ok", {"ttl_seconds": 0})],
)
def test_invitations_that_could_never_work_are_refused(broker, connection, kwargs):
    from webex_broker.adapters.invitations import InvitationStore

    arguments = {"email": None, "ttl_seconds": 3600, "max_uses": 1, "now": int(time.time()), **kwargs}
    with pytest.raises(ValueError, match=r"connection name|at least"):
        InvitationStore("InvitationsTable").create(connection, **arguments)
    assert boto3.client("dynamodb").scan(TableName="InvitationsTable")["Count"] == 0
