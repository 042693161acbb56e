"""A token bucket shared by all workers reading from one source: the per-source bandwidth cap."""

from __future__ import annotations

import threading
import time


class RateLimiter:
    """``consume(n)`` blocks just long enough that, over time, at most ``rate`` bytes/s pass.

    The bucket holds at most ``burst_seconds`` of traffic, so a pause is not followed by a flood.
    """

    def __init__(self, rate: int, burst_seconds: float = 0.25) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.capacity = self.rate * burst_seconds
        self._tokens = self.capacity
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def consume(self, amount: int) -> float:
        """Account for ``amount`` bytes; returns the seconds slept."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= amount
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            time.sleep(wait)
        return wait
