"""When a connection is next due for refresh: the whole policy in one place.

- inside the window before the access token expires;
- at least every `max_age` even if nobody reads it, because an unused Webex refresh token dies;
- not more than once per `min_interval` (Webex returns the same token within 24 h), unless the access
  token would lapse before the run after that: then in the last run that still leaves `safety_margin`
  (one more run) before expiry;
- never sooner than `write_floor` after the last write of its secrets (AWS: one version per 10 minutes),
  whatever the token's lifetime: a token too short to keep within that is reported, not written faster;
- spread by a per-connection jitter, so thousands made on one day do not all come due in one minute.
"""

import hashlib

from webex_broker.core.settings import RefreshPolicy


def jitter(connection: str, spread_seconds: int) -> int:
    """Stable per connection, so the spread survives every reschedule."""
    if spread_seconds <= 0:
        return 0
    digest = hashlib.sha256(connection.encode()).digest()
    return int.from_bytes(digest[:8], "big") % spread_seconds


def next_refresh_at(
    connection: str, *, access_expires_at: int, refreshed_at: int, written_at: int, now: int, policy: RefreshPolicy
) -> int:
    by_expiry = access_expires_at - policy.window_seconds
    by_age = refreshed_at + policy.max_age_seconds
    due = min(by_expiry, by_age) - jitter(connection, min(policy.jitter_seconds, policy.max_age_seconds // 4))
    not_before = refreshed_at + policy.min_interval_seconds
    # The last scheduled run that still comes before expiry, with a margin for a slow or failed attempt.
    latest_safe = access_expires_at - policy.run_interval_seconds - policy.safety_margin_seconds
    if due < not_before:
        due = min(not_before, latest_safe)
    return max(due, written_at + policy.write_floor_seconds, now)


def too_short_to_keep(*, access_expires_at: int, written_at: int, policy: RefreshPolicy) -> bool:
    """No run can replace this token before it expires without writing its secret sooner than AWS allows:
    the first run after the write floor may come up to one run interval after it."""
    return access_expires_at - written_at < policy.write_floor_seconds + policy.run_interval_seconds


def retry_at(failures: int, *, now: int, written_at: int | None, policy: RefreshPolicy) -> int:
    """After a transient failure: back off 5 min, 10, 20 … but never longer than one run interval, nor
    sooner than the write floor allows."""
    backoff = min(300 * 2 ** max(failures - 1, 0), max(policy.run_interval_seconds, 300))
    return max(now + backoff, (written_at or 0) + policy.write_floor_seconds)
