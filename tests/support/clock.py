"""One clock for Webex and the broker, so a test that moves one moves both the same way."""

import time
from datetime import UTC, datetime


class Clock:
    """Real time (or a fixed start) plus an offset that tests advance, to cross the 24-hour, lease,
    backoff and expiry boundaries. The Webex simulator reads it as epoch seconds (``clock()``), the
    broker as an aware datetime (``clock.utc``)."""

    def __init__(self, start: float | None = None) -> None:
        self.start = start
        self.offset = 0.0

    def __call__(self) -> float:
        return (time.time() if self.start is None else self.start) + self.offset

    def utc(self) -> datetime:
        return datetime.fromtimestamp(self(), UTC)

    def advance(self, seconds: float) -> None:
        self.offset += seconds
