"""Changing the integration's client ends nobody's grant: `invalid_grant` from another client proves
nothing about the people's grants (issue 21.2)."""

import json

import pytest

from tests.support.broker import CALLBACK_URL, CLIENT_ID, CLIENT_SECRET, PREFIX, reset_broker_caches
from tests.support.operator import admin
from tests.support.people import ALICE
from tests.support.refresh import connect, emf_values, invitations, make_due, material, tokens

OTHER_CLIENT, OTHER_SECRET = "C0ffee-other-integration", "an-other-valid-client-secret"


@pytest.fixture
def other_client(short_lived):
    """A second integration Webex accepts: a valid client, but not the one the grants were issued to."""
    short_lived.webex.register_client(
        OTHER_CLIENT, OTHER_SECRET, [CALLBACK_URL], scopes=["spark:kms", "spark:people_read"]
    )
    return short_lived


def stored_client(broker) -> str:
    return broker.secret("test-broker-client")["client_id"]


def set_credentials(client_id: str, secret: str, **extra) -> dict:
    answer = admin({"action": "set_credentials", "client_id": client_id, "client_secret": secret, **extra})
    reset_broker_caches()  # the functions see it within five minutes; the tests at once
    return answer


def test_another_client_is_refused_while_grants_were_issued_to_the_stored_one(other_client):
    broker = other_client
    connect(broker, 2)

    answer = set_credentials(OTHER_CLIENT, OTHER_SECRET)

    assert answer["ok"] is False
    assert answer["error"] == "conflict"
    assert "team-0, team-1" in answer["message"]
    assert "--force" in answer["message"]
    assert "Nothing was stored" in answer["message"]
    assert stored_client(broker) == CLIENT_ID
    assert OTHER_SECRET not in json.dumps(answer)


def test_a_rotated_secret_of_the_same_client_is_stored(other_client):
    broker = other_client
    connect(broker, 1)
    broker.webex.register_client(CLIENT_ID, "the-rotated-client-secret", [CALLBACK_URL], scopes=["spark:people_read"])

    answer = set_credentials(CLIENT_ID, "the-rotated-client-secret")

    assert answer["ok"] is True, answer
    assert broker.secret("test-broker-client")["client_secret"] == "the-rotated-client-secret"


def test_with_no_connection_yet_any_accepted_client_is_stored(other_client):
    assert set_credentials(OTHER_CLIENT, OTHER_SECRET)["ok"] is True
    assert stored_client(other_client) == OTHER_CLIENT


def test_forced_change_keeps_every_connection_and_alarms_until_the_client_is_back(other_client, no_sleep, capsys):
    broker = other_client
    people = connect(broker, 3)
    before = {who: tokens(broker, who)["access_token"] for who in people}
    invited = invitations(broker)

    answer = set_credentials(OTHER_CLIENT, OTHER_SECRET, force=True)
    assert answer["ok"] is True
    assert "3 connection(s) authorized with another client" in answer["message"]
    asked = broker.webex.calls["access_token"]
    for who in people:
        make_due(broker, who)
    capsys.readouterr()
    result = broker.refresh()

    assert result["failures"] == dict.fromkeys(people, "configuration")
    assert broker.webex.calls["access_token"] == asked, "no refresh token is sent with a client it was not issued to"
    for who in people:
        row = broker.connection(who)
        assert (row["status"], row["last_error"]) == ("active", "client_changed")
        assert tokens(broker, who)["access_token"] == before[who]
    [event] = broker.events()
    assert event["detail-type"] == "Integration Configuration Error"
    assert event["detail"]["error"] == "client_changed"
    assert emf_values(capsys.readouterr().out, "ConfigurationErrors") == [1.0], "the configuration alarm"
    assert invitations(broker) == invited, "nobody is asked to re-authorize"

    assert set_credentials(CLIENT_ID, CLIENT_SECRET)["ok"] is True, "going back needs no --force: the rows say so"
    for who in people:
        make_due(broker, who)
    assert broker.refresh()["failures"] == {}, "the grants were alive all along"


def test_a_person_who_logs_in_again_is_refreshed_with_the_new_client(other_client, no_sleep):
    broker = other_client
    [first] = connect(broker, 1)
    assert set_credentials(OTHER_CLIENT, OTHER_SECRET, force=True)["ok"] is True
    reset_broker_caches()

    assert broker.login(ALICE, invite=broker.invite(first))["statusCode"] == 200
    make_due(broker, first)

    assert broker.refresh()["failures"] == {}
    assert material(broker, first)["client_id"] == OTHER_CLIENT
    assert broker.connection(first)["client_id"] == OTHER_CLIENT


def forget_clients(broker, people: list[str]) -> None:
    """Rows and refresh secrets as a broker before the client was recorded wrote them."""
    for who in people:
        document = material(broker, who)
        document.pop("client_id")
        broker.secrets.put_secret_value(SecretId=f"{PREFIX}/refresh/{who}", SecretString=json.dumps(document))
        broker.dynamodb.update_item(
            TableName="ConnectionsTable", Key={"connection": {"S": who}}, UpdateExpression="REMOVE client_id"
        )


def test_a_run_mostly_answered_invalid_grant_stops_and_changes_no_status(other_client, no_sleep, monkeypatch, capsys):
    broker = other_client
    people = connect(broker, 7)
    forget_clients(broker, people)
    monkeypatch.setenv("REFRESH_CONCURRENCY", "1")  # one at a time, so the breaker can stop the rest
    reset_broker_caches()
    invited = invitations(broker)
    answer = set_credentials(OTHER_CLIENT, OTHER_SECRET, force=True)
    assert answer["ok"] is True
    for who in people:
        make_due(broker, who)
    capsys.readouterr()

    result = broker.refresh()

    assert result["refusals_stopped_run"] is True
    assert result["outcomes"] == {"permanent": 5}, "stopped at five, before the other two"
    assert {broker.connection(who)["status"] for who in people} == {"active"}
    [event] = broker.events()
    assert event["detail-type"] == "Refresh Run Stopped"
    assert event["detail"] == {"refused": 0, "invalid_grant": 5, "attempted": 5}
    assert emf_values(capsys.readouterr().out, "RunsStoppedByRefusals") == [1.0]
    assert invitations(broker) == invited, "no re-authorization link for anyone"

    assert set_credentials(CLIENT_ID, CLIENT_SECRET, force=True)["ok"] is True
    for who in people:
        make_due(broker, who)
    assert broker.refresh()["failures"] == {}, "every grant still works with its own client"


def test_a_lone_invalid_grant_still_ends_its_connection_after_the_run(short_lived, no_sleep):
    broker = short_lived
    people = connect(broker, 3)
    broker.webex.revoke_grant(refresh_token=material(broker, people[0])["refresh_token"])
    for who in people:
        make_due(broker, who)

    result = broker.refresh()

    assert result["failures"] == {people[0]: "permanent"}
    assert broker.connection(people[0])["status"] == "reauth_required"
    [event] = broker.events()
    assert event["detail-type"] == "Connection Reauthorization Required"
    assert event["detail"]["reason"] == "invalid_grant"


def test_a_login_between_the_answer_and_the_end_of_the_run_keeps_the_new_grant(short_lived, no_sleep, monkeypatch):
    from webex_broker.flows.refresh import Refresher

    broker = short_lived
    [who] = connect(broker, 1)
    broker.webex.revoke_grant(refresh_token=material(broker, who)["refresh_token"])
    make_due(broker, who)
    real_end = Refresher._end_dead_grants

    def login_first(self, report):
        assert broker.login(ALICE, invite=broker.invite(who))["statusCode"] == 200
        real_end(self, report)

    monkeypatch.setattr(Refresher, "_end_dead_grants", login_first)
    result = broker.refresh()

    assert result["failures"] == {who: "permanent"}, "Webex's answer was about the old grant"
    assert broker.connection(who)["status"] == "active"
    assert [e["detail-type"] for e in broker.events()] == ["Connection Reconnected"], "no reauthorization asked"
