"""A request gate for one endpoint: at most ``max_concurrency`` requests in flight, at most ``rate`` per second.

``with gate: send()`` holds a slot for the whole request. Requests are spaced at least ``1 / rate`` seconds
apart (a token bucket of depth one), in the order they asked. Thread-safe; the monitor shares one per base URL
between the threads of a run, and on Ray wraps one in an actor so that every task of a run shares it.
"""

from __future__ import annotations

import threading
import time


class Limiter:
    def __init__(self, rate: float | None = None, max_concurrency: int | None = None,
                 clock=time.monotonic, sleep=time.sleep) -> None:
        if rate is not None and not rate > 0:
            raise ValueError("rate must be > 0 requests per second")
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        self.rate, self.max_concurrency = rate, max_concurrency
        self._slots = threading.BoundedSemaphore(max_concurrency) if max_concurrency else None
        self._lock = threading.Lock()
        self._next = 0.0  # the earliest time the next request may start
        self._clock, self._sleep = clock, sleep
        self.in_flight = self.peak = self.started = 0

    def acquire(self) -> None:
        if self._slots is not None:
            self._slots.acquire()
        if self.rate is not None:
            with self._lock:
                now = self._clock()
                start = max(now, self._next)
                self._next = start + 1.0 / self.rate
            if start > now:
                self._sleep(start - now)
        with self._lock:
            self.in_flight += 1
            self.started += 1
            self.peak = max(self.peak, self.in_flight)

    def release(self) -> None:
        with self._lock:
            self.in_flight -= 1
        if self._slots is not None:
            self._slots.release()

    def stats(self) -> dict:
        with self._lock:
            return {"started": self.started, "peak_in_flight": self.peak, "in_flight": self.in_flight}

    def __enter__(self) -> Limiter:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
