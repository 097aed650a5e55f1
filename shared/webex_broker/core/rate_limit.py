"""A token bucket shared by the refresher's threads: Secrets Manager allows 50 PutSecretValue per
second per account, so the broker keeps its own writes under a configurable rate."""

import threading
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(
        self,
        rate_per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._interval = 1.0 / rate_per_second
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_slot = clock()

    def acquire(self) -> None:
        """Wait for the next free slot; slots are handed out in order, one interval apart."""
        with self._lock:
            now = self._clock()
            slot = max(self._next_slot, now)
            self._next_slot = slot + self._interval
        if slot > now:
            self._sleep(slot - now)
