"""A login and a refresh of one connection never interleave, and a login that fails at any step
neither spends the person's invitation nor leaves a live refresh token without a row."""

import threading
from datetime import timedelta

import pytest
import requests
from botocore.exceptions import ClientError

from devstack.lambda_runtime import LambdaContext
from tests.support.broker import PREFIX
from tests.support.people import ALICE, BOB, HOUR
from tests.support.refresh import material, refresher, tokens
from webex_broker.adapters.aws import AwsCallFailed
from webex_broker.core.token_documents import fingerprint


def accepted(broker, access_token: str) -> bool:
    me = requests.get(f"{broker.webex.url}/people/me", headers={"Authorization": f"Bearer {access_token}"}, timeout=5)
    return me.status_code == 200


def uses(broker, token: str) -> int:
    item = broker.dynamodb.get_item(TableName="InvitationsTable", Key={"invite_id": {"S": token.split(".")[0]}})
    return int(item["Item"]["uses"]["N"])


def readable(broker, name: str) -> bool:
    try:
        broker.secrets.get_secret_value(SecretId=name)
    except ClientError:
        return False
    return True


# --- a re-login is never undone by a refresh in flight ----------------------------------------------------


@pytest.mark.parametrize("old_grant", ["revoked", "still valid"])
def test_a_login_during_a_refresh_backoff_wins(short_lived, old_grant):
    """The reviewed interleaving: the refresh took the lease with the old refresh token and waited out a
    503's Retry-After; meanwhile the person finished a new login; then the refresh went on."""
    broker = short_lived
    broker.login(ALICE)
    old_refresh_token = material(broker, ALICE)["refresh_token"]
    broker.events()
    broker.webex.inject("access_token", 503, retry_after="1")
    seen = {}

    def relogin_while_waiting(_seconds: float) -> None:
        assert broker.login(ALICE)["statusCode"] == 200
        seen["tokens"], seen["material"] = tokens(broker, ALICE), material(broker, ALICE)
        if old_grant == "revoked":
            broker.webex.revoke_grant(refresh_token=old_refresh_token)

    outcome, _ = refresher(sleep=relogin_while_waiting).refresh_one(ALICE, force=True)

    assert seen["material"]["refresh_token"] != old_refresh_token
    row = broker.connection(ALICE)
    assert row["status"] == "active"
    assert "lease_owner" not in row
    assert material(broker, ALICE)["refresh_token"] == seen["material"]["refresh_token"], "the new grant is kept"
    assert accepted(broker, tokens(broker, ALICE)["access_token"])
    assert row["access_token_id"] == fingerprint(tokens(broker, ALICE)["access_token"])
    assert outcome.value in ("refreshed", "unchanged"), "the retry used the new login's refresh token"
    assert [e["detail-type"] for e in broker.events()] == ["Connection Reconnected"], "no reauthorization asked"
    assert broker.dynamodb.scan(TableName="InvitationsTable")["Count"] == 0


def test_a_scheduled_refresh_that_finds_a_fresh_login_after_its_backoff_leaves_it_alone(broker):
    broker.login(ALICE)
    old = material(broker, ALICE)["refresh_token"]
    broker.webex.inject("access_token", 503, retry_after="1")

    def relogin(_seconds: float) -> None:
        broker.webex.same_token_window = 0  # so a second refresh would visibly change the token
        assert broker.login(ALICE)["statusCode"] == 200
        broker.webex.revoke_grant(refresh_token=old)

    broker.dynamodb.update_item(
        TableName="ConnectionsTable",
        Key={"connection": {"S": ALICE}},
        UpdateExpression="SET next_refresh_at = :now",
        ExpressionAttributeValues={":now": {"N": "0"}},
    )
    report = refresher(sleep=relogin).run(remaining_ms=lambda: 900_000)
    assert report.outcomes["skipped"] == 1, "not due any more: the login just scheduled it"
    assert report.failures == {}
    assert broker.connection(ALICE)["status"] == "active"
    assert accepted(broker, tokens(broker, ALICE)["access_token"])


def test_a_login_waits_for_a_refresh_holding_the_lease_and_writes_last(short_lived, monkeypatch):
    from webex_broker.adapters import webex
    from webex_broker.flows import new_grant

    broker = short_lived
    broker.login(ALICE)
    broker.webex.same_token_window = 0
    login_waiting, refreshed = threading.Event(), {}
    real_refresh, real_sleep = webex.WebexClient.refresh, new_grant.time.sleep

    def slow_refresh(self, **kwargs):
        assert login_waiting.wait(10), "the login never had to wait"
        return real_refresh(self, **kwargs)

    def waiting(seconds: float) -> None:
        login_waiting.set()
        real_sleep(seconds)

    monkeypatch.setattr(webex.WebexClient, "refresh", slow_refresh)
    monkeypatch.setattr(new_grant.time, "sleep", waiting)
    worker = threading.Thread(target=lambda: refreshed.update(result=refresher().refresh_one(ALICE, force=True)))
    worker.start()
    page = broker.login(ALICE)
    worker.join(10)

    assert page["statusCode"] == 200, page["body"]
    assert refreshed["result"][0].value == "refreshed"
    row = broker.connection(ALICE)
    assert row["access_token_id"] == fingerprint(tokens(broker, ALICE)["access_token"])
    assert row["authorized_at"] >= row["refreshed_at"], "the login's row write came last"
    versions = broker.secrets.list_secret_version_ids(SecretId=f"{PREFIX}/tokens/{ALICE}")["Versions"]
    assert len(versions) >= 3, "login, refresh, login: each a whole version, none interleaved"
    assert accepted(broker, tokens(broker, ALICE)["access_token"])


def test_a_login_that_cannot_get_the_lease_stores_nothing_and_keeps_the_invitation(broker):
    from callback import handler as callback

    link = broker.invite("team", email=ALICE)
    assert broker.login(ALICE, invite=link)["statusCode"] == 200
    kept = tokens(broker, "team")
    broker.dynamodb.update_item(  # a refresher holds the lease (say, one that is about to be killed)
        TableName="ConnectionsTable",
        Key={"connection": {"S": "team"}},
        UpdateExpression="SET lease_owner = :o, lease_expires_at = :t",
        ExpressionAttributeValues={":o": {"S": "refresher-x"}, ":t": {"N": str(10**10)}},
    )
    again = broker.invite("team", email=ALICE)
    start = broker.authorize(again)
    query = broker.consent(start["headers"]["Location"], person=ALICE)
    page = callback(broker.event("callback", query), LambdaContext(timeout_seconds=8))  # 2 s for Webex, then waits

    assert page["statusCode"] == 503
    assert "busy" in page["body"]
    assert page["headers"]["Retry-After"] == "60"
    assert tokens(broker, "team") == kept
    assert uses(broker, again) == 0, "the invitation can be used again"


# --- a failed or crashed login: no spent invitation, no orphaned refresh token ---------------------------


class SimulatedCrash(Exception):
    pass


LOGIN_STEPS = {
    "after-claim": ("connections", "claim"),
    "after-lease": ("connections", "acquire"),
    "after-refresh-secret": ("secret_store", "write_refresh_material"),
    "after-consumer-secret": ("secret_store", "write_token_secret"),
    "after-row": ("connections", "record_login"),
    "after-invitation-use": ("invitations", "use"),
}


def crash_after(monkeypatch, step: str) -> None:
    from webex_broker.adapters import connections, invitations, secret_store

    module_name, function_name = LOGIN_STEPS[step]
    owner = {
        "connections": connections.ConnectionsTable,
        "invitations": invitations.InvitationStore,
        "secret_store": secret_store,  # the write order login and refresh share (write_tokens)
    }[module_name]
    real = getattr(owner, function_name)

    def crashing(*args, **kwargs):
        real(*args, **kwargs)
        raise SimulatedCrash(step)

    monkeypatch.setattr(owner, function_name, crashing)


def killed_after(monkeypatch, step: str) -> None:
    """A Lambda killed at that point: no exception handler of ours runs after it."""
    from webex_broker.flows import new_grant

    crash_after(monkeypatch, step)
    monkeypatch.setattr(new_grant, "_undo", lambda *a, **k: None)


def later(monkeypatch, seconds: int) -> None:
    """Move the broker's clock on (past a killed login's lease)."""
    from webex_broker.core import clock

    real = clock.utc_now
    monkeypatch.setattr(clock, "utc_now", lambda: real() + timedelta(seconds=seconds))


@pytest.mark.parametrize("ending", ["fails", "is killed"])
@pytest.mark.parametrize("step", list(LOGIN_STEPS))
def test_a_first_login_that_fails_at_any_step_can_simply_be_retried(broker, monkeypatch, step, ending):
    link = broker.invite("team", email=ALICE)
    with monkeypatch.context() as crash:
        (crash_after if ending == "fails" else killed_after)(crash, step)
        first = broker.login(ALICE, invite=link)
    assert first["statusCode"] == 500
    if step != "after-invitation-use":
        assert uses(broker, link) == 0, "the invitation is not spent"
    finished = step in ("after-row", "after-invitation-use")
    if not finished and ending == "fails":
        assert not readable(broker, f"{PREFIX}/refresh/team"), "no live refresh token without a row"
        assert broker.connection("team") is None

    later(monkeypatch, 60)
    if step == "after-invitation-use":
        link = broker.invite("team", email=ALICE)  # that one is used up, as it should be: it connected
    again = broker.login(ALICE, invite=link)
    assert again["statusCode"] == 200, again["body"]
    assert uses(broker, link) == 1, "counted once"
    row = broker.connection("team")
    assert row["status"] == "active"
    assert "lease_owner" not in row
    assert accepted(broker, tokens(broker, "team")["access_token"])
    assert row["access_token_id"] == fingerprint(tokens(broker, "team")["access_token"])
    assert material(broker, "team")["refresh_token"] != ""


@pytest.mark.parametrize("step", ["after-claim", "after-lease", "after-refresh-secret", "after-consumer-secret"])
def test_a_failed_re_login_keeps_the_working_connection(short_lived, webex_clock, monkeypatch, step):
    broker = short_lived
    broker.login(BOB)
    with monkeypatch.context() as crash:
        crash_after(crash, step)
        assert broker.login(BOB)["statusCode"] == 500
    row = broker.connection(BOB)
    assert row["status"] == "active"
    assert "lease_owner" not in row, "the lease was given back"
    assert accepted(broker, tokens(broker, BOB)["access_token"]), "the token workloads read still works"
    webex_clock.advance(25 * HOUR)
    broker.dynamodb.update_item(
        TableName="ConnectionsTable",
        Key={"connection": {"S": BOB}},
        UpdateExpression="SET next_refresh_at = :now",
        ExpressionAttributeValues={":now": {"N": "0"}},
    )
    assert broker.refresh()["failures"] == {}, "and the next refresh works with what is stored"
    assert accepted(broker, tokens(broker, BOB)["access_token"])


def test_secrets_manager_refusing_the_consumer_secret_does_not_spend_the_invitation(broker, monkeypatch):
    """The reviewed case: PutSecretValue failing during a login."""
    from webex_broker.adapters import secret_store

    link = broker.invite("team", email=ALICE)
    real = secret_store.write_token_secret

    def throttled(*args, **kwargs):
        raise AwsCallFailed({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "PutSecretValue")

    monkeypatch.setattr(secret_store, "write_token_secret", throttled)
    first = broker.login(ALICE, invite=link)
    assert first["statusCode"] == 500
    assert uses(broker, link) == 0
    assert not readable(broker, f"{PREFIX}/refresh/team"), "the refresh token written first was withdrawn"
    monkeypatch.setattr(secret_store, "write_token_secret", real)
    assert broker.login(ALICE, invite=link)["statusCode"] == 200, "the retry is not 'already used'"
    assert uses(broker, link) == 1
    assert readable(broker, f"{PREFIX}/refresh/team")


def test_a_login_whose_result_page_cannot_be_kept_still_says_connected(broker, monkeypatch):
    from webex_broker.adapters.login_state import StateStore

    def throttled(*args, **kwargs):
        raise AwsCallFailed({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "PutItem")

    monkeypatch.setattr(StateStore, "save_result", throttled)
    start = broker.authorize()
    page = broker.callback(broker.consent(start["headers"]["Location"], person=ALICE), follow=False)
    assert page["statusCode"] == 200, "not a 500 that would say nothing was stored"
    assert "Connected to Webex" in page["body"]
    assert broker.connection(ALICE)["status"] == "active"


# --- a connection whose row was lost (issue 21.7) ------------------------------------------------------


def lose_row(broker, name: str) -> None:
    """What a re-created stack (a new, empty table) is to a connection, before `webex-broker adopt`."""
    broker.dynamodb.delete_item(TableName="ConnectionsTable", Key={"connection": {"S": name}})


def test_a_connection_whose_row_was_lost_cannot_be_taken_through_an_unbound_invitation(broker):
    from webex_broker.flows.adoption import adopt
    from webex_broker.flows.broker import current

    assert broker.login(ALICE, invite=broker.invite("team"))["statusCode"] == 200
    kept = tokens(broker, "team"), material(broker, "team")
    lose_row(broker, "team")
    broker.browser.clear()

    taken = broker.login(BOB, invite=broker.invite("team"))  # an invitation bound to no one

    assert taken["statusCode"] == 409
    assert "webex-broker adopt" in taken["body"]
    assert (tokens(broker, "team"), material(broker, "team")) == kept, "nothing written"
    assert readable(broker, f"{PREFIX}/refresh/team"), "nothing scheduled for deletion"
    assert broker.connection("team") is None, "and the name not claimed"

    this = current()
    assert adopt("team", this.names, this.connections, login_base_url="https://broker.example", now=0)
    broker.browser.clear()
    assert broker.login(BOB, invite=broker.invite("team"))["statusCode"] == 409, "adopted: it is Alice's"
    broker.browser.clear()
    assert broker.login(ALICE, invite=broker.invite("team"))["statusCode"] == 200


def test_a_first_login_that_fails_never_deletes_a_secret_it_did_not_write(broker, monkeypatch):
    """The owner herself, before `adopt`: refused before anything is written, so a failure of hers can
    never clean up (schedule for deletion) tokens that were there before her login."""
    from webex_broker.adapters import secret_store

    assert broker.login(ALICE, invite=broker.invite("team"))["statusCode"] == 200
    kept = tokens(broker, "team")
    lose_row(broker, "team")
    monkeypatch.setattr(secret_store, "write_refresh_material", lambda *a, **k: pytest.fail("written"))
    broker.browser.clear()

    assert broker.login(ALICE, invite=broker.invite("team"))["statusCode"] == 409
    assert tokens(broker, "team") == kept
    assert readable(broker, f"{PREFIX}/tokens/team")
    assert readable(broker, f"{PREFIX}/refresh/team")
