"""Service Apps: minted through a connection with spark:applications_token (or seeded from a portal
refresh token), read by workloads like any connection, refreshed with the app's own credentials, and
minted again through `via` when their refresh token dies."""

import json
from datetime import datetime

import pytest
import requests

from devstack.webex_simulator import DEFAULT_PEOPLE, webex_id
from tests.support.broker import CALLBACK_URL, CLIENT_ID, CLIENT_SECRET, PREFIX, reset_broker_caches
from tests.support.clock import Clock
from tests.support.crash import crashing_after
from tests.support.people import ALICE, HOUR
from tests.support.refresh import make_due
from tests.support.service_apps import APP_CLIENT, APP_ID, APP_SECRET, ORG, SCOPES

OTHER_APP_ID = webex_id("APPLICATION", "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d")
OTHER_ORG = DEFAULT_PEOPLE[2].org_id
BOT = "org-bot"


@pytest.fixture
def apps(broker, monkeypatch):
    """A broker whose integration asks for spark:applications_token, Alice connected with it, and a
    Service App that the first org's Full Admin authorized (the second org's did not)."""
    monkeypatch.setenv("WEBEX_SCOPES", SCOPES)
    reset_broker_caches()
    sim = broker.webex
    sim.register_client(CLIENT_ID, CLIENT_SECRET, [CALLBACK_URL], scopes=SCOPES.split())
    sim.register_service_app(APP_ID, APP_CLIENT, APP_SECRET, ["spark:people_read"])
    sim.authorize_service_app(APP_ID, ORG)
    sim.same_token_window = 0  # every refresh mints a new access token, so a refresh is visible
    assert broker.login(ALICE)["statusCode"] == 200
    return broker


def add(
    name: str = BOT,
    *,
    via: str = ALICE,
    org: str = ORG,
    refresh_token: str = "",
    secret: str = APP_SECRET,
    client: str = APP_CLIENT,
    new_client: bool = False,
):
    """What `webex-broker service-app add` runs."""
    from webex_broker.core.clock import utc_now
    from webex_broker.core.grants import ServiceApp
    from webex_broker.flows import service_apps
    from webex_broker.flows.broker import current

    app = ServiceApp(APP_ID, client, secret, via=via)
    return service_apps.add(
        current(),
        name,
        app,
        org,
        refresh_token=refresh_token,
        new_client=new_client,
        now=utc_now(),
        remaining_ms=lambda: 20_000,
    )


def refresh_run() -> dict:
    from webex_broker.flows.refresh import Refresher

    return Refresher().run(remaining_ms=lambda: 900_000).summary().as_dict()


def me(broker, access_token: str) -> requests.Response:
    return requests.get(f"{broker.webex.url}/people/me", headers={"Authorization": f"Bearer {access_token}"}, timeout=5)


def tokens(broker, name: str = BOT) -> dict:
    return broker.secret(f"{PREFIX}/tokens/{name}")


def refresh_material(broker, name: str = BOT) -> dict:
    return broker.secret(f"{PREFIX}/refresh/{name}")


def refresh_stored_token(broker, client_id: str, client_secret: str) -> requests.Response:
    """Ask Webex directly with the stored refresh token, as this client."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_material(broker)["refresh_token"]}
    return requests.post(
        f"{broker.webex.url}/access_token",
        data={**form, "client_id": client_id, "client_secret": client_secret},
        timeout=5,
    )


# --- adding one ----------------------------------------------------------------------------------


def test_minted_through_a_connection_and_read_like_any_connection(apps):
    before = datetime.now().astimezone()
    add()
    consumer = tokens(apps)
    assert set(consumer) >= {"access_token", "token_type", "expires_at", "scopes", "connection", "org_id", "updated_at"}
    assert consumer["kind"] == "service_app"
    assert consumer["app_id"] == APP_ID
    assert consumer["connection"] == BOT
    assert consumer["org_id"] == ORG
    assert consumer["token_type"] == "Bearer"
    lifetime = datetime.fromisoformat(consumer["expires_at"]) - before
    assert 3590 <= lifetime.total_seconds() <= 3610, "expiry computed from the answer (3600 s)"
    answer = me(apps, consumer["access_token"])
    assert answer.status_code == 200, "a working machine-account token"
    assert answer.json()["orgId"] == ORG
    assert (consumer["person_id"], consumer["email"]) == (answer.json()["id"], answer.json()["emails"][0]), (
        "the machine account, as Webex named it"
    )
    row = apps.connection(BOT)
    assert row["kind"] == "service_app"
    assert row["app_id"] == APP_ID
    assert row["via"] == ALICE
    assert row["status"] == "active"
    assert row["schedule"] == "scheduled"
    assert "lease_owner" not in row
    kept = refresh_material(apps)
    assert kept["app_client_id"] == APP_CLIENT
    assert kept["app_client_secret"] == APP_SECRET
    assert kept["via"] == ALICE
    assert tokens(apps, ALICE).get("kind") == "person"


@pytest.mark.parametrize("shape", ["oauth", "webex"])
def test_an_org_that_has_not_authorized_the_app_gets_403_and_nothing_is_stored(apps, shape):
    from webex_broker.core.errors import WebexError

    apps.webex.error_shape = shape
    names = apps.secret_names()
    with pytest.raises(WebexError) as refused:
        add(org=OTHER_ORG)
    assert refused.value.status == 403
    assert apps.connection(BOT) is None
    assert apps.secret_names() == names


def test_a_via_without_the_scope_is_refused_before_webex_is_asked(broker):
    from webex_broker.core.errors import ViaUnavailable

    broker.webex.register_service_app(APP_ID, APP_CLIENT, APP_SECRET, ["spark:people_read"])
    broker.webex.authorize_service_app(APP_ID, ORG)
    assert broker.login(ALICE)["statusCode"] == 200  # the default scopes: no spark:applications_token
    with pytest.raises(ViaUnavailable, match="spark:applications_token"):
        add()
    assert broker.webex.calls["applications_token"] == 0
    assert broker.connection(BOT) is None


def test_a_missing_via_or_bad_input_stores_nothing(apps):
    from webex_broker.core.errors import ViaUnavailable

    names = apps.secret_names()
    with pytest.raises(ViaUnavailable):
        add(via="nobody")
    for bad in ({"name": "has space"}, {"org": "not/../an id!"}, {"secret": " "}, {"via": BOT}):
        with pytest.raises(ValueError, match=r"connection name|Webex id|secret is empty|its own connection"):
            add(**bad)
    assert apps.secret_names() == names
    assert apps.webex.calls["applications_token"] == 0


def test_seeded_from_a_refresh_token_generated_in_the_portal(apps):
    portal = apps.webex.generate_service_app_tokens(APP_ID, ORG)
    add(via="", refresh_token=portal["refresh_token"])
    assert apps.webex.calls["applications_token"] == 0
    assert me(apps, tokens(apps)["access_token"]).status_code == 200
    assert apps.connection(BOT)["kind"] == "service_app"


def test_a_person_cannot_take_a_service_app_connection_over_nor_another_app(apps):
    from webex_broker.core.errors import AccessDenied

    add()
    add(secret=APP_SECRET)  # the same app and org again (a rotated secret): replaces its pair
    apps.webex.register_service_app(OTHER_APP_ID, "Cother", "other-secret-never-shown", ["spark:people_read"])
    apps.webex.authorize_service_app(OTHER_APP_ID, ORG)
    from webex_broker.core.clock import utc_now
    from webex_broker.core.grants import ServiceApp
    from webex_broker.flows import service_apps
    from webex_broker.flows.broker import current

    other = ServiceApp(OTHER_APP_ID, "Cother", "other-secret-never-shown", via=ALICE)
    with pytest.raises(AccessDenied):
        service_apps.add(current(), BOT, other, ORG, now=utc_now(), remaining_ms=lambda: 20_000)
    apps.browser.clear()
    page = apps.login("bob@example.com", invite=apps.invite(BOT))
    assert page["statusCode"] == 409
    assert tokens(apps)["kind"] == "service_app"
    assert tokens(apps)["app_id"] == APP_ID


# --- whose it is -----------------------------------------------------------------------------------

OTHER_CLIENT, OTHER_SECRET = "Cother0client", "other-app-secret-never-shown"


def other_app(broker, org: str, scopes: tuple[str, ...] = ("spark:people_read",)) -> str:
    """Another Service App, authorized in `org`: a portal-generated refresh token of it."""
    broker.webex.register_service_app(OTHER_APP_ID, OTHER_CLIENT, OTHER_SECRET, list(scopes))
    broker.webex.authorize_service_app(OTHER_APP_ID, org)
    return broker.webex.generate_service_app_tokens(OTHER_APP_ID, org)["refresh_token"]


def kept(broker) -> tuple:
    return tokens(broker)["access_token"], refresh_material(broker), broker.connection(BOT)


def test_another_apps_client_and_token_from_another_org_cannot_replace_an_app(apps):
    from webex_broker.core.errors import ServiceAppRefused

    add()
    before = kept(apps)
    stolen = other_app(apps, OTHER_ORG)

    with pytest.raises(ServiceAppRefused, match="client ID") as plain:
        add(via="", refresh_token=stolen, client=OTHER_CLIENT, secret=OTHER_SECRET)
    assert plain.value.conflict, "the command can say so: --new-client"
    with pytest.raises(ServiceAppRefused, match="another org"):
        add(via="", refresh_token=stolen, client=OTHER_CLIENT, secret=OTHER_SECRET, new_client=True)

    assert kept(apps) == before, "nothing stored: the old app's token, credentials and via"
    assert refresh_material(apps)["via"] == ALICE


def test_another_apps_token_in_the_same_org_cannot_replace_an_app(apps):
    from webex_broker.core.errors import ServiceAppRefused

    add()  # minted: Webex told who its machine account is, and that was recorded
    assert refresh_material(apps)["person_id"], "the machine account, asked of Webex"
    before = kept(apps)
    stolen = other_app(apps, ORG)

    with pytest.raises(ServiceAppRefused, match="another Service App"):
        add(via="", refresh_token=stolen, client=OTHER_CLIENT, secret=OTHER_SECRET, new_client=True)
    assert kept(apps) == before


def test_a_seeded_token_is_stored_only_once_webex_says_whom_it_acts_for(apps):
    from webex_broker.core.errors import ServiceAppRefused

    names = apps.secret_names()
    mute = other_app(apps, ORG, scopes=("spark:kms",))  # an app that may not read /people/me
    with pytest.raises(ServiceAppRefused, match="would not say whom"):
        add("mute-bot", via="", refresh_token=mute, client=OTHER_CLIENT, secret=OTHER_SECRET)
    with pytest.raises(ServiceAppRefused, match="another org"):
        add(
            "elsewhere",
            via="",
            refresh_token=apps.webex.generate_service_app_tokens(APP_ID, ORG)["refresh_token"],
            org=OTHER_ORG,
        )
    assert apps.secret_names() == names


def test_re_adding_an_app_keeps_its_via_and_rotates_only_its_secret(apps):
    add()
    owner = refresh_material(apps)["via_owner"]
    assert owner == apps.connection(ALICE)["person_id"]
    apps.webex.register_service_app(APP_ID, APP_CLIENT, "rotated-in-the-portal", ["spark:people_read"])
    portal = apps.webex.generate_service_app_tokens(APP_ID, ORG)

    add(via="", refresh_token=portal["refresh_token"], secret="rotated-in-the-portal")

    material = refresh_material(apps)
    assert (material["via"], material["via_owner"]) == (ALICE, owner), "--via not given: kept"
    assert material["app_client_secret"] == "rotated-in-the-portal"
    assert apps.connection(BOT)["via"] == ALICE


def test_a_heal_mints_only_through_the_person_the_app_was_added_through(apps):
    add()
    apps.dynamodb.update_item(  # the via's name now belongs to someone else (a lost row, taken again)
        TableName="ConnectionsTable",
        Key={"connection": {"S": ALICE}},
        UpdateExpression="SET person_id = :someone",
        ExpressionAttributeValues={":someone": {"S": "someone-else"}},
    )
    apps.webex.revoke_grant(app_id=APP_ID, org_id=ORG)
    minted = apps.webex.calls["applications_token"]
    apps.events()
    make_due(apps, BOT)

    assert refresh_run()["failures"] == {BOT: "permanent"}
    assert apps.webex.calls["applications_token"] == minted, "the other person's token is never used"
    (ended,) = [e for e in apps.events() if e["detail-type"] == "Connection Reauthorization Required"]
    assert ended["detail"]["heal"] == "not_possible"
    assert "another person" in ended["detail"]["heal_error"]


def test_a_via_whose_access_token_merely_lapsed_keeps_the_app_and_heals_later(apps):
    add()
    apps.dynamodb.update_item(
        TableName="ConnectionsTable",
        Key={"connection": {"S": ALICE}},
        UpdateExpression="SET access_expires_at = :lapsed",
        ExpressionAttributeValues={":lapsed": {"N": "1"}},
    )
    apps.webex.revoke_grant(app_id=APP_ID, org_id=ORG)
    apps.events()
    make_due(apps, BOT)

    assert refresh_run()["failures"] == {BOT: "transient"}
    row = apps.connection(BOT)
    assert (row["status"], row["last_error"]) == ("active", "via_token_lapsed")
    assert apps.events() == [], "not the end of the app"

    make_due(apps, ALICE)
    refresh_run()  # the via's own refresh
    make_due(apps, BOT)
    assert refresh_run()["outcomes"].get("healed") == 1


# --- keeping it fresh ------------------------------------------------------------------------------


def test_the_refresher_refreshes_it_with_the_apps_own_credentials(apps):
    add()
    first = tokens(apps)["access_token"]
    make_due(apps, BOT)
    report = refresh_run()
    assert report["failures"] == {}
    assert report["outcomes"].get("refreshed", 0) >= 1
    fresh = tokens(apps)["access_token"]
    assert fresh != first
    assert me(apps, fresh).status_code == 200
    assert apps.connection(BOT)["status"] == "active"
    # The integration's credentials are refused for this grant (it is bound to the app's client):
    answer = refresh_stored_token(apps, CLIENT_ID, CLIENT_SECRET)
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_grant"


def test_the_on_demand_route_refreshes_it_too(apps):
    from webex_broker.edge.refresh_route import answer as route_answer
    from webex_broker.flows.broker import current
    from webex_broker.flows.on_demand import refresh_now

    add()
    first = tokens(apps)["access_token"]
    answer = route_answer(refresh_now(current, BOT))
    assert answer["statusCode"] == 200, answer["body"]
    assert json.loads(answer["body"])["outcome"] == "refreshed"
    assert tokens(apps)["access_token"] != first


def test_a_dead_refresh_token_is_healed_through_via(apps):
    add()
    old = refresh_material(apps)["refresh_token"]
    assert apps.webex.revoke_grant(app_id=APP_ID, org_id=ORG) == 1
    apps.events()
    make_due(apps, BOT)
    report = refresh_run()
    assert report["outcomes"].get("healed") == 1
    assert report["failures"] == {}
    assert refresh_material(apps)["refresh_token"] != old
    assert me(apps, tokens(apps)["access_token"]).status_code == 200
    row = apps.connection(BOT)
    assert row["status"] == "active"
    assert row["schedule"] == "scheduled"
    assert int(row["consecutive_failures"]) == 0
    healed = [e for e in apps.events() if e["detail-type"] == "Service App Tokens Reminted"]
    assert len(healed) == 1
    assert healed[0]["detail"]["heal"] == "healed"
    assert healed[0]["detail"]["via"] == ALICE
    assert healed[0]["detail"]["error"] == "invalid_grant"
    assert healed[0]["detail"]["app_id"] == APP_ID


def test_an_org_that_withdrew_the_app_ends_the_connection_and_the_event_says_the_heal_failed(apps):
    add()
    apps.webex.authorize_service_app(APP_ID, ORG, authorized=False)  # revokes its grants there too
    apps.events()
    make_due(apps, BOT)
    report = refresh_run()
    assert report["failures"] == {BOT: "permanent"}
    row = apps.connection(BOT)
    assert row["status"] == "reauth_required"
    assert "schedule" not in row
    (ended,) = [e for e in apps.events() if e["detail-type"] == "Connection Reauthorization Required"]
    assert ended["detail"]["heal"] == "failed"
    assert ended["detail"]["heal_status"] == 403
    assert ended["detail"]["kind"] == "service_app"
    assert "login_url" not in ended["detail"]


def test_without_a_via_the_event_says_a_heal_was_not_possible(apps):
    portal = apps.webex.generate_service_app_tokens(APP_ID, ORG)
    add(via="", refresh_token=portal["refresh_token"])
    apps.webex.revoke_grant(app_id=APP_ID, org_id=ORG)
    apps.events()
    make_due(apps, BOT)
    assert refresh_run()["failures"] == {BOT: "permanent"}
    (ended,) = [e for e in apps.events() if e["detail-type"] == "Connection Reauthorization Required"]
    assert ended["detail"]["heal"] == "not_possible"
    assert apps.webex.calls["applications_token"] == 0


def test_a_via_that_is_no_longer_active_is_not_asked(apps):
    add()
    apps.dynamodb.update_item(
        TableName="ConnectionsTable",
        Key={"connection": {"S": ALICE}},
        UpdateExpression="SET #s = :r REMOVE #schedule",
        ExpressionAttributeNames={"#s": "status", "#schedule": "schedule"},
        ExpressionAttributeValues={":r": {"S": "reauth_required"}},
    )
    apps.webex.revoke_grant(app_id=APP_ID, org_id=ORG)
    minted = apps.webex.calls["applications_token"]
    make_due(apps, BOT)
    assert refresh_run()["failures"] == {BOT: "permanent"}
    assert apps.webex.calls["applications_token"] == minted
    assert apps.connection(BOT)["status"] == "reauth_required"


@pytest.mark.parametrize("status", [500, 503, 429])
def test_a_heal_during_a_webex_outage_keeps_the_connection_and_heals_later(apps, status):
    add()
    apps.webex.revoke_grant(app_id=APP_ID, org_id=ORG)
    apps.webex.inject("applications_token", status, times=10)
    make_due(apps, BOT)
    assert refresh_run()["failures"] == {BOT: "transient"}
    row = apps.connection(BOT)
    assert row["status"] == "active"
    assert row["schedule"] == "scheduled"
    apps.webex.reset_faults()
    make_due(apps, BOT)
    assert refresh_run()["outcomes"].get("healed") == 1
    assert me(apps, tokens(apps)["access_token"]).status_code == 200


def test_a_rejected_app_secret_fails_that_app_only_not_the_run(apps):
    add()
    apps.webex.register_service_app(APP_ID, APP_CLIENT, "rotated-in-the-portal", ["spark:people_read"])
    make_due(apps, BOT)
    make_due(apps, ALICE)
    apps.events()
    report = refresh_run()
    assert report["failures"] == {BOT: "configuration"}
    assert not report["stopped_early"]
    assert report["outcomes"]["refreshed"] == 1, "the person's connection still refreshed"
    row = apps.connection(BOT)
    assert row["status"] == "active"
    assert row["last_error_class"] == "configuration"
    (event,) = [e for e in apps.events() if e["detail-type"] == "Integration Configuration Error"]
    assert event["detail"]["connection"] == BOT
    assert event["detail"]["kind"] == "service_app"


HEAL_CRASH_POINTS = {
    "after-the-mint": ("webex", "mint_service_app_tokens"),
    "after-refresh-secret": ("secret_store", "write_refresh_material"),
    "after-consumer-secret": ("secret_store", "write_token_secret"),
    "after-row-update": ("connections", "record_refresh"),
}


@pytest.mark.parametrize("step", list(HEAL_CRASH_POINTS))
def test_a_crash_at_any_step_of_a_heal_is_finished_by_the_next_run(apps, monkeypatch, step):
    """A pair minted but not yet stored exists nowhere else: the old one is dead anyway, so the next
    run mints again; once the new refresh token is stored, the next run simply refreshes with it."""
    from webex_broker.flows.refresh import Refresher

    add()
    apps.webex.revoke_grant(app_id=APP_ID, org_id=ORG)
    make_due(apps, BOT)
    with crashing_after(monkeypatch, *HEAL_CRASH_POINTS[step], step):
        assert Refresher().run(remaining_ms=lambda: 900_000).outcomes["error"] == 1

    clock = Clock()
    clock.advance(10 * 60)  # past the crashed run's lease
    make_due(apps, BOT)
    finished = Refresher(clock=clock.utc).run(remaining_ms=lambda: 900_000)
    assert finished.failures == {}
    assert finished.succeeded == 1
    row = apps.connection(BOT)
    assert row["status"] == "active"
    assert "lease_owner" not in row
    assert me(apps, tokens(apps)["access_token"]).status_code == 200
    answer = refresh_stored_token(apps, APP_CLIENT, APP_SECRET)
    assert answer.status_code == 200, "the stored refresh token is a live one"


def test_an_hour_of_the_same_unexplained_refusal_heals_too(apps, monkeypatch):
    """Proof by persistence ends a person's grant; for a Service App it first mints a new pair."""
    from webex_broker.adapters import webex
    from webex_broker.flows import connection_refresh
    from webex_broker.flows.refresh import Refresher

    real_refresh = webex.WebexClient.refresh

    def refused_for_the_app(client, **kwargs):
        if client._credentials.client_id == APP_CLIENT:  # Webex keeps refusing the app's refresh only
            raise webex.WebexError("refused", status=400, code="invalid_request", kind=webex.FailureKind.REFUSED)
        return real_refresh(client, **kwargs)

    add()
    monkeypatch.setattr(webex.WebexClient, "refresh", refused_for_the_app)
    monkeypatch.setattr(connection_refresh, "retry_delay", lambda *a, **k: None)  # no retries within a run
    make_due(apps, BOT)
    assert Refresher().run(remaining_ms=lambda: 900_000).failures == {BOT: "refused"}
    make_due(apps, BOT)
    make_due(apps, ALICE)  # another connection refreshes fine in the same run
    clock = Clock()
    clock.advance(HOUR + 60)
    report = Refresher(clock=clock.utc).run(remaining_ms=lambda: 900_000)
    assert report.outcomes["healed"] == 1
    assert report.failures == {}
    assert apps.connection(BOT)["status"] == "active"
    assert me(apps, tokens(apps)["access_token"]).status_code == 200


# --- doctor ----------------------------------------------------------------------------------------


def test_doctor_warns_before_a_service_app_could_lapse_or_fail_to_heal(apps, monkeypatch):
    from webex_broker.flows.broker import current
    from webex_broker_admin.doctor import OK, WARN, _service_apps

    add()

    def checks():
        return _service_apps(current(), [current().connections.get(BOT)])

    monkeypatch.delenv("REFRESH_INTERVAL_MINUTES")  # Webex's documented 3600 s under the default schedule
    reset_broker_caches()
    assert [(c.result, c.detail) for c in checks()] == [(OK, f"heals through {ALICE}")]
    apps.dynamodb.update_item(
        TableName="ConnectionsTable",
        Key={"connection": {"S": ALICE}},
        UpdateExpression="SET #s = :r",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":r": {"S": "reauth_required"}},
    )
    (unhealable,) = checks()
    assert unhealable.result == WARN
    assert "cannot mint" in unhealable.detail
    assert "reauth_required" in unhealable.detail


# --- nothing leaks ---------------------------------------------------------------------------------


def test_service_app_secrets_and_tokens_never_reach_logs_events_or_errors(apps, broker_log, capfd, caplog):
    """Adding, refreshing, healing and failing a Service App: its client secret, its tokens and the
    `via` connection's token it mints with stay out of every log line, event and exception text."""
    from webex_broker.core.errors import WebexError

    caplog.set_level("DEBUG", logger="webex-token-broker")
    broker = apps
    add()
    app_id, org_id = broker.secret(f"{PREFIX}/tokens/{BOT}")["app_id"], ORG
    seen = {APP_SECRET, broker.secret(f"{PREFIX}/tokens/{ALICE}")["access_token"]}
    errors = []
    with pytest.raises(WebexError) as refused:
        add(name="other-bot", org=OTHER_ORG)
    errors.append(str(refused.value))
    make_due(broker, BOT)
    runs = [refresh_run()]
    seen |= {
        broker.secret(f"{PREFIX}/tokens/{BOT}")["access_token"],
        broker.secret(f"{PREFIX}/refresh/{BOT}")["refresh_token"],
    }
    broker.webex.revoke_grant(app_id=app_id, org_id=org_id)
    make_due(broker, BOT)
    runs.append(refresh_run())
    seen |= {
        broker.secret(f"{PREFIX}/tokens/{BOT}")["access_token"],
        broker.secret(f"{PREFIX}/refresh/{BOT}")["refresh_token"],
    }
    assert runs[1]["outcomes"] == {"healed": 1}
    events = broker.events()
    captured = capfd.readouterr()
    output = broker_log.getvalue() + captured.out + captured.err + caplog.text + json.dumps([runs, events, errors])
    assert "Service App Tokens Reminted" in output, "the events were captured"
    assert [value for value in seen if value in output] == []


def test_adopt_rebuilds_a_service_app_row_and_the_next_refresh_restores_its_via(apps):
    from webex_broker.core.clock import epoch, utc_now
    from webex_broker.flows.adoption import adopt
    from webex_broker.flows.broker import current

    add()
    apps.dynamodb.delete_item(TableName="ConnectionsTable", Key={"connection": {"S": BOT}})  # a re-created stack
    broker = current()
    assert adopt(BOT, broker.names, broker.connections, login_base_url="", now=epoch(utc_now()))
    row = apps.connection(BOT)
    assert row["kind"] == "service_app"
    assert row["app_id"] == APP_ID
    assert row["person_id"] == f"service-app:{APP_ID}:{ORG}", "still bound to the app: no person can take it"
    assert "via" not in row
    assert refresh_run()["outcomes"].get("refreshed") == 1
    assert apps.connection(BOT)["via"] == ALICE
