"""No token lapses, whatever its lifetime, under the default parameters; and no secret is written more
than once per 10 minutes (AWS's floor), counting scheduled and on-demand refreshes (issue 25.1).

A simulated day: Webex's clock and the broker's move together, the refresher runs at every tick of its
default schedule, and a workload reads each token secret just before every run, when its token is
oldest."""

import itertools
from collections import defaultdict
from datetime import UTC, datetime

import pytest
import requests

from tests.support.broker import reset_broker_caches

MINUTE, HOUR, DAY = 60, 3600, 86400
PEOPLE = {"alice@example.com": HOUR, "bob@example.com": 12 * HOUR, "carol@partner.example.org": 14 * DAY}
WRITES = {"PutSecretValue", "CreateSecret", "UpdateSecret"}


@pytest.fixture
def defaults(broker, monkeypatch):
    """The stack's default parameters and AWS's write floor (conftest's suites run hourly, floor off)."""
    monkeypatch.delenv("REFRESH_INTERVAL_MINUTES")
    monkeypatch.delenv("SECRET_WRITE_FLOOR_SECONDS")
    reset_broker_caches()
    return broker


class Day:
    """The broker and Webex on one moving clock, every secret write recorded at its simulated time."""

    def __init__(self, broker, webex_clock):
        from webex_broker.adapters import aws
        from webex_broker.flows.broker import current

        self.broker, self.clock, self.settings = broker, webex_clock, current().settings
        self.writes: dict[str, list[float]] = defaultdict(list)
        events = aws.client("secretsmanager").meta.events
        events.register("before-parameter-build.secretsmanager.*", self._name)
        events.register("after-call.secretsmanager.*", self._record)

    def _name(self, model, params, context, **_) -> None:
        if model.name in WRITES:
            context["written_secret"] = params.get("SecretId") or params["Name"]

    def _record(self, http_response, context, **_) -> None:
        """Only writes AWS accepted: a PutSecretValue that finds no secret, then CreateSecret, is one."""
        if "written_secret" in context and http_response.status_code == 200:
            self.writes[context["written_secret"]].append(self.clock())

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def run(self):
        from webex_broker.flows.refresh import Refresher

        return Refresher(clock=self.now).run(remaining_ms=lambda: 900_000)

    def token(self, name: str) -> dict:
        return self.broker.secret(self.settings.secret_prefix + f"/tokens/{name}")

    def works(self, access_token: str) -> bool:
        me = requests.get(
            f"{self.broker.webex.url}/people/me", headers={"Authorization": f"Bearer {access_token}"}, timeout=5
        )
        return me.status_code == 200

    def closest_writes(self) -> tuple[int, float]:
        """The most writes any secret saw, and the shortest time between two writes of one secret."""
        most = max(len(times) for times in self.writes.values())
        gaps = [b - a for times in self.writes.values() for a, b in itertools.pairwise(times)]
        return most, min(gaps, default=float("inf"))


def test_a_simulated_day_of_1_hour_12_hour_and_14_day_tokens_never_lapses(defaults, webex_clock):
    """Webex's same-token answer is documented for its 14-day tokens; one that handed back an hour's
    token unchanged for a day could be kept by nobody, so here it lasts half an hour."""
    broker = defaults
    broker.webex.same_token_window = 30 * MINUTE
    day = Day(broker, webex_clock)
    assert day.settings.refresh.run_interval_seconds == 10 * MINUTE, "the template's default"
    for person, lifetime in PEOPLE.items():
        broker.webex.access_token_ttl = lifetime
        assert broker.login(person)["statusCode"] == 200
    start, margins, replaced = day.clock(), [], defaultdict(int)
    webex_clock.advance(7 * MINUTE)  # the schedule's ticks fall where they fall, not at the logins
    before = {person: day.token(person) for person in PEOPLE}
    while day.clock() < start + DAY:
        for person, document in before.items():
            expires = datetime.fromisoformat(document["expires_at"].replace("Z", "+00:00")).timestamp()
            assert expires > day.clock(), f"{person}'s token lapsed"
            assert day.works(document["access_token"]), f"Webex refuses {person}'s token"
        report = day.run()
        assert report.failures == {}
        after = {person: day.token(person) for person in PEOPLE}  # also what is read before the next run
        for person, document in before.items():
            if after[person]["access_token"] != document["access_token"]:
                expires = datetime.fromisoformat(document["expires_at"].replace("Z", "+00:00")).timestamp()
                margins.append(expires - day.clock())
                replaced[person] += 1
        before = after
        webex_clock.advance(day.settings.refresh.run_interval_seconds)
    most, closest = day.closest_writes()
    print(
        f"smallest margin {min(margins) / 60:.1f} min; most writes of one secret in the day {most}; "
        f"closest two writes of one secret {closest / 60:.1f} min; replacements {dict(replaced)}"
    )
    assert min(margins) >= day.settings.refresh.safety_margin_seconds, "replaced at least 10 minutes before expiry"
    assert most <= DAY // (10 * MINUTE), "AWS's one version per 10 minutes: 144 a day"
    assert closest >= 10 * MINUTE, "AWS's one version per 10 minutes"
    assert replaced["alice@example.com"] >= 24, "the hour's token, every 40-50 minutes"
    assert replaced["bob@example.com"] == 2
    assert "carol@partner.example.org" not in replaced


def test_a_token_too_short_to_keep_is_reported_and_never_written_faster(defaults, webex_clock):
    from webex_broker.core.observability import metrics

    broker = defaults
    broker.webex.access_token_ttl = 15 * MINUTE  # under the 20 minutes the write floor and one run need
    broker.webex.same_token_window = 0
    day = Day(broker, webex_clock)
    broker.login("alice@example.com")
    broker.events()
    for _ in range(12):
        webex_clock.advance(day.settings.refresh.run_interval_seconds)
        assert day.run().failures == {}
    _most, closest = day.closest_writes()
    assert closest >= 10 * MINUTE, "the floor holds, though the token lapses between writes"
    events = [e for e in broker.events() if e["detail-type"] == "Access Token Too Short-Lived"]
    assert events
    assert events[0]["detail"]["lifetime_seconds"] == 15 * MINUTE
    assert events[0]["detail"]["needed_seconds"] == 20 * MINUTE
    assert metrics.metric_set["TokensTooShortLived"]["Value"], "the alarm's metric"

    from webex_broker.flows.broker import current
    from webex_broker_admin.doctor import WARN, _short_lived

    (check,) = _short_lived(current(), [current().connections.get("alice@example.com")])
    assert check.result == WARN
    assert "alice@example.com (15 min)" in check.detail


def test_an_on_demand_refresh_within_ten_minutes_of_a_write_is_refused_with_retry_after(defaults):
    from webex_broker.flows.broker import current
    from webex_broker.flows.on_demand import NotRefreshed, refresh_now

    broker = defaults
    broker.login("alice@example.com")
    result = refresh_now(current, "alice@example.com")
    assert result.not_refreshed == NotRefreshed.COOLING_DOWN
    assert 590 <= (result.retry_after or 0) <= 600, "until 10 minutes after the login's write"
    assert broker.versions("test-broker/tokens/alice@example.com") == 1
