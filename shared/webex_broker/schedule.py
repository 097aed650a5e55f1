"""When a connection is next due for refresh."""


def next_refresh_at(access_expires_at: int, *, window_seconds: int) -> int:
    """Due once the access token is inside the window before its expiry (possibly at once)."""
    return access_expires_at - window_seconds
