"""A circuit breaker: stop calling a dependency that keeps failing, probe it again later.

A feature store or a remote model server that is down makes every call wait for a
connection error or, worse, a full timeout — on the request path, for every event. After
``failure_threshold`` consecutive failures the breaker *opens*: :meth:`CircuitBreaker.allow`
answers False at once, so a dead dependency costs microseconds instead of a timeout. After
``reset_timeout_s`` it turns *half-open* and lets exactly one call through as a probe: its
success closes the breaker (traffic flows again, no restart or reload needed), its failure
opens it for another cool-down.

The breaker only keeps the state; callers ask :meth:`~CircuitBreaker.allow` before a call
and report its outcome with :meth:`~CircuitBreaker.record_success` or
:meth:`~CircuitBreaker.record_failure`. The clock is injectable, so tests step time instead
of sleeping. Thread-safe: the service calls dependencies from the event loop, from worker
threads scoring large batches and from the shadow worker.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Literal

__all__ = ["CircuitBreaker"]

_State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Closed → (``failure_threshold`` consecutive failures) → open → (``reset_timeout_s``)
    → half-open: one probe → closed on success, open again on failure.

    A success recorded in any state closes the breaker: the dependency just answered. A
    half-open probe that never reports (its caller crashed) does not wedge the breaker:
    after another ``reset_timeout_s`` a new probe is let through.
    """

    __slots__ = (
        "_clock",
        "_failures",
        "_lock",
        "_opened_at",
        "_probe_at",
        "_state",
        "failure_threshold",
        "reset_timeout_s",
        "times_opened",
    )

    def __init__(
        self,
        failure_threshold: int = 5,
        reset_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(failure_threshold, bool) or not isinstance(failure_threshold, int):
            raise TypeError(f"failure_threshold must be an int, got {failure_threshold!r}")
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be at least 1, got {failure_threshold}")
        if not (math.isfinite(reset_timeout_s) and reset_timeout_s > 0):
            raise ValueError(
                f"reset_timeout_s must be a positive number of seconds, got {reset_timeout_s!r}"
            )
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = float(reset_timeout_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._state: _State = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._probe_at = 0.0
        #: How often the breaker opened (a failed probe counts again): for metrics and logs.
        self.times_opened = 0

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"``, or ``"half_open"`` (the next :meth:`allow` may probe).

        A plain ``str``, not a ``Literal``: type checkers would otherwise narrow
        ``breaker.state`` after one comparison and reject the next in the same test.
        """
        with self._lock:
            if self._state == "open" and self._clock() - self._opened_at >= self.reset_timeout_s:
                return "half_open"
            return self._state

    @property
    def failures(self) -> int:
        """Consecutive failures recorded since the last success."""
        return self._failures

    def allow(self) -> bool:
        """May a call be made now? False means: fail fast, do not touch the dependency."""
        if self._state == "closed":  # the hot path: no lock, no clock
            return True
        with self._lock:
            now = self._clock()
            state: _State = self._state  # re-read: another thread may have closed it
            if state == "closed":
                return True
            if state == "open":
                if now - self._opened_at < self.reset_timeout_s:
                    return False
                self._state = "half_open"
                self._probe_at = now
                return True
            # Half-open: one probe is in flight; another only if that one never reported.
            if now - self._probe_at >= self.reset_timeout_s:
                self._probe_at = now
                return True
            return False

    def record_success(self) -> None:
        """The call succeeded: close the breaker and forget earlier failures."""
        if self._state == "closed" and self._failures == 0:
            return
        with self._lock:
            self._state = "closed"
            self._failures = 0

    def record_failure(self) -> None:
        """The call failed: count it; open after ``failure_threshold`` in a row."""
        with self._lock:
            self._failures += 1
            if self._state == "half_open" or (
                self._state == "closed" and self._failures >= self.failure_threshold
            ):
                self._state = "open"
                self._opened_at = self._clock()
                self.times_opened += 1
            # Already open: a call admitted before the breaker opened failed late; the
            # cool-down keeps running from when it opened.

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker(state={self.state!r}, failures={self._failures}, "
            f"failure_threshold={self.failure_threshold}, reset_timeout_s={self.reset_timeout_s})"
        )
