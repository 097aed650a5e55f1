"""The scheduled refresher through its handler: only what is due, and never losing a token."""

from datetime import datetime

import pytest
import requests

from tests.conftest import PREFIX

HOUR = 3600
ALICE, BOB = "alice@example.com", "bob@example.com"


def tokens(broker, who: str) -> dict:
    return broker.secret(f"{PREFIX}/tokens/{who}")


def seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def refresh_material(broker, who: str) -> dict:
    return broker.secret(f"{PREFIX}/refresh/{who}")


def accepted_by_webex(broker, access_token: str) -> bool:
    me = requests.get(f"{broker.webex.url}/people/me", headers={"Authorization": f"Bearer {access_token}"}, timeout=5)
    return me.status_code == 200


@pytest.fixture
def short_lived(broker):
    """Webex deployments that issue 1-hour tokens: always inside the 48-hour refresh window."""
    broker.webex.access_token_ttl = HOUR
    return broker


def test_nothing_due_means_no_webex_call_and_no_write(broker):
    broker.login(ALICE)
    result = broker.refresh()
    assert result["refreshed"] == 0
    assert broker.webex.calls["access_token"] == 1  # the login's code exchange only
    assert broker.versions(f"{PREFIX}/tokens/{ALICE}") == 1


def test_due_connection_gets_a_new_token_and_keeps_its_refresh_token(short_lived, webex_clock):
    broker = short_lived
    broker.login(ALICE)
    before, material = tokens(broker, ALICE), refresh_material(broker, ALICE)
    row_before = broker.connection(ALICE)
    webex_clock.advance(25 * HOUR)  # past Webex's 24 h same-token window

    assert broker.refresh() == {"refreshed": 1, "failed": 0, "failures": {}}

    after = tokens(broker, ALICE)
    assert after["access_token"] != before["access_token"]
    assert after["expires_at"] >= before["expires_at"]
    assert accepted_by_webex(broker, after["access_token"])
    assert refresh_material(broker, ALICE)["refresh_token"] == material["refresh_token"]
    assert broker.versions(f"{PREFIX}/tokens/{ALICE}") == 2
    assert broker.versions(f"{PREFIX}/refresh/{ALICE}") == 2
    row = broker.connection(ALICE)
    assert row["access_expires_at"] >= row_before["access_expires_at"]
    assert row["next_refresh_at"] == row["access_expires_at"] - 48 * HOUR
    assert row["last_refreshed_at"] >= row_before["updated_at"]
    assert row["created_at"] == row_before["created_at"]


def test_only_due_connections_are_refreshed(broker):
    broker.login(ALICE)  # 14-day token: not due
    broker.webex.access_token_ttl = HOUR
    broker.login(BOB)  # 1-hour token: due
    assert broker.refresh()["refreshed"] == 1
    assert broker.versions(f"{PREFIX}/tokens/{ALICE}") == 1
    assert broker.versions(f"{PREFIX}/tokens/{BOB}") == 2


def test_same_token_within_24_hours_is_accepted_not_an_error(short_lived):
    broker = short_lived
    broker.login(ALICE)
    before = tokens(broker, ALICE)
    assert broker.refresh()["refreshed"] == 1
    after = tokens(broker, ALICE)
    assert after["access_token"] == before["access_token"]
    assert abs(seconds(after["expires_at"]) - seconds(before["expires_at"])) <= 2, "Webex keeps the expiry"


def test_a_dead_grant_fails_alone_and_keeps_its_secrets(short_lived, webex_clock):
    broker = short_lived
    broker.login(ALICE)
    broker.login(BOB)
    alice_before = refresh_material(broker, ALICE)
    broker.webex.revoke_grant(person_email=ALICE)
    webex_clock.advance(25 * HOUR)

    result = broker.refresh()
    assert result["refreshed"] == 1
    assert result["failures"] == {ALICE: "permanent"}
    assert refresh_material(broker, ALICE) == alice_before
    assert broker.versions(f"{PREFIX}/tokens/{BOB}") == 2


@pytest.mark.parametrize("status", [429, 500, 503])
def test_a_webex_outage_changes_nothing_and_stays_due(short_lived, status):
    broker = short_lived
    broker.login(ALICE)
    row = broker.connection(ALICE)
    broker.webex.inject("access_token", status, retry_after="5" if status == 429 else None)

    assert broker.refresh()["failures"] == {ALICE: "transient"}
    assert broker.connection(ALICE) == row
    assert broker.versions(f"{PREFIX}/tokens/{ALICE}") == 1
    assert broker.refresh()["refreshed"] == 1, "still due on the next run"


def test_crash_between_the_two_secret_writes_loses_nothing(short_lived, webex_clock, monkeypatch):
    """The refresh material is written first; a run that dies before the consumer write is finished
    by the next run, and the consumer ends up with a token Webex accepts."""
    from webex_broker import secret_store

    broker = short_lived
    broker.login(ALICE)
    webex_clock.advance(25 * HOUR)
    real_put = secret_store.put_secret

    def crash_on_consumer(name, document, **kwargs):
        if "/tokens/" in name:
            raise RuntimeError("Lambda timed out")
        return real_put(name, document, **kwargs)

    monkeypatch.setattr(secret_store, "put_secret", crash_on_consumer)
    with pytest.raises(RuntimeError):
        broker.refresh()
    monkeypatch.setattr(secret_store, "put_secret", real_put)

    material = refresh_material(broker, ALICE)
    assert broker.refresh()["refreshed"] == 1
    assert refresh_material(broker, ALICE)["refresh_token"] == material["refresh_token"]
    assert tokens(broker, ALICE)["access_token"] == refresh_material(broker, ALICE)["access_token"]
    assert accepted_by_webex(broker, tokens(broker, ALICE)["access_token"])


def test_refresh_answer_without_refresh_token_keeps_the_old_one(short_lived, webex_clock):
    broker = short_lived
    broker.login(ALICE)
    material = refresh_material(broker, ALICE)
    broker.webex.refresh_response_omits = frozenset({"refresh_token", "refresh_token_expires_in"})
    webex_clock.advance(25 * HOUR)

    assert broker.refresh()["refreshed"] == 1
    after = refresh_material(broker, ALICE)
    assert after["refresh_token"] == material["refresh_token"]
    assert after["refresh_token_expires_at"] == material["refresh_token_expires_at"]
    assert after["access_token"] != material["access_token"]
