"""Act only on proof: a refusal from Webex ends a connection only when Webex says the grant is dead,
or when the same refusal lasts an hour in separate runs while other connections refresh fine."""

import pytest
import requests

from tests.support.broker import CLIENT_SECRET, PREFIX, reset_broker_caches
from tests.support.clock import Clock
from tests.support.people import ALICE, BOB
from tests.support.refresh import connect, emf_values, invitations, make_due, refresher, run, tokens

# Real-looking answers from Webex's token endpoint when a refresh token is dead, in both shapes.
DEAD_GRANT_BODIES = {
    "oauth invalid_grant": (400, {"error": "invalid_grant", "error_description": "The refresh token is invalid"}),
    "oauth invalid_grant 401": (401, {"error": "invalid_grant"}),
    "webex message": (
        400,
        {
            "message": "The refresh token provided is expired, revoked, malformed, or invalid.",
            "errors": [{"description": "The refresh token provided is expired, revoked, malformed, or invalid."}],
            "trackingId": "ROUTER_65F1A2B3-0C4D-4E5F-8A9B-0C1D2E3F4A5B",
        },
    ),
    "webex relayed idbroker error": (
        400,
        {
            "message": "POST failed: HTTP/1.1 400 Bad Request (url = https://idbroken.webex.com/idb/oauth2/v1/"
            "access_token, request/response TrackingId = ROUTER_1, error = 'invalid_grant', description = "
            "'The refresh token provided is expired, revoked, malformed, or invalid.')",
            "errors": [{"description": "POST failed: HTTP/1.1 400 Bad Request ... error = 'invalid_grant'"}],
            "trackingId": "ROUTER_65F1A2B3-0C4D-4E5F-8A9B-0C1D2E3F4A5C",
        },
    ),
    "webex revoked, errors only": (
        401,
        {"message": "", "errors": [{"description": "Refresh token has been revoked"}], "trackingId": "ROUTER_2"},
    ),
}
# Refusals that say nothing about the grant: a gateway, a policy, an outage in disguise.
UNEXPLAINED_BODIES = {
    "webex 403": (
        403,
        {"message": "Forbidden", "errors": [{"description": "Forbidden"}], "trackingId": "ROUTER_3"},
    ),
    "oauth invalid_request": (400, {"error": "invalid_request", "error_description": "Bad Request"}),
    "webex 401 no detail": (401, {"message": "The request requires a valid access token set in the header."}),
    "plain text 400": (400, "Bad Request"),
    "404": (404, {"message": "The requested resource could not be found."}),
    "webex 400 about the access token": (
        400,
        {"message": "Invalid access token for this request", "errors": [{"description": "Invalid access token"}]},
    ),
}


def classify(status: int, body) -> str:
    from unittest.mock import Mock

    from webex_broker.adapters import webex

    response = Mock(status_code=status, headers={"Trackingid": "ROUTER_X"})
    response.json = (lambda: body) if isinstance(body, dict) else Mock(side_effect=ValueError)
    return webex._error_from(response, "/access_token", "ROUTER_X").kind.value


@pytest.mark.parametrize("name", list(DEAD_GRANT_BODIES))
def test_proof_of_a_dead_grant_in_either_shape(name):
    assert classify(*DEAD_GRANT_BODIES[name]) == "permanent"


@pytest.mark.parametrize("name", list(UNEXPLAINED_BODIES))
def test_any_other_refusal_is_unexplained(name):
    assert classify(*UNEXPLAINED_BODIES[name]) == "refused"


def test_invalid_client_and_outages_keep_their_classes():
    assert classify(401, {"error": "invalid_client"}) == "configuration"
    assert classify(401, {"message": "Client authentication failed: invalid client secret"}) == "configuration"
    for status in (429, 500, 502, 503, 504, 423):
        assert classify(status, {"error": "invalid_grant"}) == "transient", "an outage is never proof"


@pytest.fixture
def four_due(short_lived, no_sleep):
    return connect(short_lived, 4)


@pytest.mark.parametrize(
    ("status", "shape", "error"), [(403, "webex", None), (400, "oauth", "invalid_request"), (400, "webex", None)]
)
def test_unexplained_refusals_keep_every_connection_active_and_scheduled(
    short_lived, four_due, status, shape, error, capsys
):
    broker = short_lived
    invited = invitations(broker)
    broker.webex.inject("access_token", status, shape=shape, error=error, times=4 * 3)
    result = broker.refresh()

    assert result["failures"] == dict.fromkeys(four_due, "refused")
    for who in four_due:
        row = broker.connection(who)
        assert row["status"] == "active"
        assert row["schedule"] == "scheduled", "still in the schedule index"
        assert row["last_error_class"] == "refused"
    assert broker.events() == [], "no reauthorization event"
    assert invitations(broker) == invited, "no re-authorization invitation"
    assert '"FailedRefused"' in capsys.readouterr().out, "its own metric, for its own alarm"
    assert broker.webex.calls["access_token"] >= 4 + 4 * 3, "each was retried within the run"

    for who in four_due:
        make_due(broker, who)
    assert broker.refresh()["failures"] == {}, "the grants were alive all along"


def test_a_run_mostly_refused_stops_changes_nothing_and_raises_one_alarm(short_lived, no_sleep, monkeypatch, capsys):
    broker = short_lived
    people = connect(broker, 8)
    invited = invitations(broker)
    monkeypatch.setenv("REFRESH_CONCURRENCY", "1")  # one at a time, so the breaker can stop the rest
    reset_broker_caches()
    broker.webex.inject("access_token", 403, shape="webex", times=100)

    result = broker.refresh()

    assert result["refusals_stopped_run"] is True
    assert result["outcomes"] == {"refused": 5}, "stopped at five refusals, before the other three"
    assert {broker.connection(who)["status"] for who in people} == {"active"}
    [event] = broker.events()
    assert event["detail-type"] == "Refresh Run Stopped"
    assert event["detail"] == {"refused": 5, "invalid_grant": 0, "attempted": 5}
    assert emf_values(capsys.readouterr().out, "RunsStoppedByRefusals") == [1.0], "one alarm"
    assert invitations(broker) == invited

    broker.webex.reset_faults()
    assert broker.refresh()["failures"] == {}, "the three left untouched are still due"


def test_the_same_refusal_for_an_hour_while_others_refresh_ends_the_grant(short_lived, webex_clock, monkeypatch):
    broker = short_lived
    broker.login(ALICE)
    broker.login(BOB)
    broker.events()
    monkeypatch.setenv("REFRESH_CONCURRENCY", "1")
    reset_broker_caches()

    def run_at(minutes: int, *, alice_refused: bool = True, bob_due: bool = False) -> dict:
        clock = Clock()
        clock.advance(minutes * 60)
        make_due(broker, ALICE)
        if bob_due:
            make_due(broker, BOB)
        if alice_refused:  # Alice comes first (she is due earliest); each attempt of hers is refused
            broker.webex.inject("access_token", 403, shape="webex", times=3)
        return run(refresher(clock=clock.utc, sleep=lambda _: None))

    def bob_not_due() -> None:
        broker.dynamodb.update_item(
            TableName="ConnectionsTable",
            Key={"connection": {"S": BOB}},
            UpdateExpression="SET next_refresh_at = :later",
            ExpressionAttributeValues={":later": {"N": str(10**10)}},
        )

    bob_not_due()
    assert run_at(0).failures == {ALICE: "refused"}
    assert run_at(30).failures == {ALICE: "refused"}
    bob_not_due()
    lonely = run_at(61)
    assert lonely.failures == {ALICE: "refused"}, "an hour, but nobody else refreshed: no proof"
    assert broker.connection(ALICE)["status"] == "active"

    ended = run_at(62, bob_due=True)
    assert ended.outcomes["refreshed"] + ended.outcomes["unchanged"] == 1, "Bob refreshed fine"
    assert ended.failures == {ALICE: "permanent"}
    row = broker.connection(ALICE)
    assert row["status"] == "reauth_required"
    assert "schedule" not in row
    [event] = [e for e in broker.events() if e["detail-type"] == "Connection Reauthorization Required"]
    assert event["detail"]["reason"] == "refused_for_an_hour"


def test_a_different_refusal_or_a_success_starts_the_hour_again(short_lived, no_sleep):
    broker = short_lived
    broker.login(ALICE)
    broker.webex.inject("access_token", 403, shape="webex", times=3)
    broker.refresh()
    first = int(broker.connection(ALICE)["refused_since"])

    make_due(broker, ALICE)
    broker.webex.inject("access_token", 400, shape="oauth", error="invalid_request", times=3)
    broker.refresh()
    row = broker.connection(ALICE)
    assert row["refused_error"] == "invalid_request"
    assert int(row["refused_since"]) >= first

    make_due(broker, ALICE)
    broker.refresh()
    row = broker.connection(ALICE)
    assert "refused_since" not in row
    assert "refused_error" not in row
    assert row["status"] == "active"


def test_a_dead_grant_is_still_ended_at_once(short_lived, no_sleep):
    broker = short_lived
    broker.login(ALICE)
    broker.webex.inject("access_token", 400, shape="webex", message="The refresh token provided is expired, revoked")
    assert broker.refresh()["failures"] == {ALICE: "permanent"}
    assert broker.webex.calls["access_token"] == 2, "one login, one refresh: proof is not retried"
    assert broker.connection(ALICE)["status"] == "reauth_required"


def test_forced_refresh_restores_a_connection_whose_grant_still_works(short_lived, no_sleep):
    """What `webex-broker refresh --reauth-required` does for each such connection."""
    from webex_broker.edge.refresh_route import answer as route_answer
    from webex_broker.flows.broker import current
    from webex_broker.flows.on_demand import refresh_now

    broker = short_lived
    broker.login(ALICE)
    broker.events()  # the login's own
    broker.dynamodb.update_item(  # marked dead by mistake (say, by an older release)
        TableName="ConnectionsTable",
        Key={"connection": {"S": ALICE}},
        UpdateExpression="SET #s = :r REMOVE schedule",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":r": {"S": "reauth_required"}},
    )
    answer = route_answer(refresh_now(current, ALICE))
    assert answer["statusCode"] == 200
    row = broker.connection(ALICE)
    assert (row["status"], row["schedule"]) == ("active", "scheduled")
    assert [e["detail-type"] for e in broker.events()] == ["Connection Recovered"]
    me = requests.get(
        f"{broker.webex.url}/people/me",
        headers={"Authorization": f"Bearer {tokens(broker, ALICE)['access_token']}"},
        timeout=5,
    )
    assert me.status_code == 200


def test_simulated_refusals_never_leak_secrets(short_lived, no_sleep, capsys):
    broker = short_lived
    broker.login(ALICE)
    broker.webex.inject("access_token", 403, shape="webex", times=3)
    broker.refresh()
    output = capsys.readouterr()
    material = broker.secret(f"{PREFIX}/refresh/{ALICE}")
    for secret in (material["refresh_token"], tokens(broker, ALICE)["access_token"], CLIENT_SECRET):
        assert secret not in output.out + output.err
