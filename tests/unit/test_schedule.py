"""The refresh policy: when each kind of connection comes due."""

from tests.support.people import DAY, HOUR
from webex_broker.core.schedule import jitter, next_refresh_at, retry_at
from webex_broker.core.settings import RefreshPolicy

NOW = 1_800_000_000
POLICY = RefreshPolicy()  # 48 h window, 7-day max age, 24 h min interval, runs every 10 min, 6 h jitter


def due(access_ttl: int, *, name: str = "alice@example.com", refreshed_at: int = NOW, policy=POLICY) -> int:
    return next_refresh_at(
        name,
        access_expires_at=NOW + access_ttl,
        refreshed_at=refreshed_at,
        written_at=refreshed_at,
        now=NOW,
        policy=policy,
    )


def test_fourteen_day_token_is_refreshed_weekly_so_the_refresh_token_stays_alive():
    at = due(14 * DAY)
    assert NOW + 7 * DAY - 6 * HOUR <= at <= NOW + 7 * DAY


def test_unused_connection_is_refreshed_well_inside_the_ninety_day_refresh_lifetime():
    at = due(90 * DAY)  # even if Webex issued very long access tokens
    assert at <= NOW + 7 * DAY


def test_token_inside_the_window_but_refreshed_today_waits_for_webex_s_24_hours():
    at = due(36 * HOUR)  # inside the 48 h window; refreshing again now would return the same token
    assert at == NOW + DAY


def test_one_hour_token_is_due_in_the_last_run_before_it_lapses_despite_the_24_hour_rule():
    assert due(HOUR) == NOW + HOUR - POLICY.run_interval_seconds - POLICY.safety_margin_seconds


def test_twelve_hour_token_is_due_in_the_last_run_before_it_lapses():
    at = due(12 * HOUR)
    assert at == NOW + 12 * HOUR - POLICY.run_interval_seconds - POLICY.safety_margin_seconds
    assert at + POLICY.run_interval_seconds < NOW + 12 * HOUR


def test_never_scheduled_in_the_past():
    assert due(14 * DAY, refreshed_at=NOW - 30 * DAY) == NOW


def test_jitter_spreads_a_thousand_connections_made_in_the_same_second():
    times = {due(14 * DAY, name=f"user{i}@example.com") // 60 for i in range(1000)}
    assert len(times) > 250, "due times spread over hundreds of distinct minutes"
    assert jitter("a@example.com", 6 * HOUR) == jitter("a@example.com", 6 * HOUR), "stable per connection"


def test_retry_backs_off_and_is_capped_at_one_run_interval():
    delays = [retry_at(n, now=NOW, written_at=None, policy=POLICY) - NOW for n in range(1, 7)]
    assert delays == [300, 600, 600, 600, 600, 600]
