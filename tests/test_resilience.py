"""The circuit breaker, on an injected clock: transitions, fail-fast, recovery, stuck probes."""

from __future__ import annotations

import threading

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from muse.resilience import CircuitBreaker


class Clock:
    """A clock tests step by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breaker(threshold: int = 3, reset: float = 5.0) -> tuple[CircuitBreaker, Clock]:
    clock = Clock()
    return CircuitBreaker(threshold, reset, clock=clock), clock


def test_opens_after_threshold_consecutive_failures_and_fails_fast() -> None:
    b, _ = breaker(threshold=3)
    for _ in range(2):
        assert b.allow()
        b.record_failure()
    assert b.state == "closed"
    assert b.allow()
    b.record_failure()
    assert b.state == "open"
    assert b.times_opened == 1
    assert not any(b.allow() for _ in range(100))


def test_a_success_resets_the_consecutive_count() -> None:
    b, _ = breaker(threshold=3)
    b.record_failure()
    b.record_failure()
    b.record_success()
    b.record_failure()
    b.record_failure()
    assert b.state == "closed"
    assert b.failures == 2


def test_half_open_after_the_cool_down_lets_exactly_one_probe_through() -> None:
    b, clock = breaker(threshold=1, reset=5.0)
    b.record_failure()
    clock.now += 4.999
    assert not b.allow()
    clock.now += 0.001
    assert b.state == "half_open"
    assert b.allow()  # the probe
    assert not b.allow()  # everyone else still fails fast while it is in flight
    assert b.state == "half_open"


def test_a_successful_probe_closes_and_a_failed_one_reopens_for_a_full_cool_down() -> None:
    b, clock = breaker(threshold=1, reset=5.0)
    b.record_failure()
    clock.now += 5.0
    assert b.allow()
    b.record_failure()  # the probe failed
    assert b.state == "open"
    assert b.times_opened == 2
    clock.now += 4.0
    assert not b.allow()
    clock.now += 1.0
    assert b.allow()
    b.record_success()
    assert b.state == "closed"
    assert all(b.allow() for _ in range(10))


def test_a_probe_that_never_reports_does_not_wedge_the_breaker() -> None:
    b, clock = breaker(threshold=1, reset=2.0)
    b.record_failure()
    clock.now += 2.0
    assert b.allow()  # a probe whose caller died without recording anything
    clock.now += 1.0
    assert not b.allow()
    clock.now += 1.0
    assert b.allow()


def test_late_failures_while_open_do_not_extend_the_cool_down() -> None:
    b, clock = breaker(threshold=1, reset=5.0)
    b.record_failure()
    clock.now += 3.0
    b.record_failure()  # a call admitted before the breaker opened fails late
    clock.now += 2.0
    assert b.allow()


@pytest.mark.parametrize(
    ("threshold", "reset", "error"),
    [
        (0, 1.0, ValueError),
        (-1, 1.0, ValueError),
        (1.5, 1.0, TypeError),
        (True, 1.0, TypeError),
        (1, 0.0, ValueError),
        (1, -1.0, ValueError),
        (1, float("inf"), ValueError),
        (1, float("nan"), ValueError),
    ],
)
def test_bad_parameters_are_refused(threshold: object, reset: float, error: type) -> None:
    with pytest.raises(error):
        CircuitBreaker(threshold, reset)  # type: ignore[arg-type]


def test_concurrent_callers_get_one_probe() -> None:
    b, clock = breaker(threshold=1, reset=1.0)
    b.record_failure()
    clock.now += 1.0
    allowed: list[bool] = []
    barrier = threading.Barrier(8)

    def call() -> None:
        barrier.wait()
        allowed.append(b.allow())

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert sorted(allowed) == [False] * 7 + [True]


class BreakerMachine(RuleBasedStateMachine):
    """The breaker against a plain model of its specification, under any sequence of calls."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.threshold = 3
        self.reset = 5.0
        self.breaker = CircuitBreaker(self.threshold, self.reset, clock=self.clock)
        self.state = "closed"
        self.failures = 0
        self.opened_at = 0.0
        self.probe_at = 0.0

    @rule(dt=st.floats(min_value=0.0, max_value=8.0))
    def advance(self, dt: float) -> None:
        self.clock.now += dt

    @rule()
    def allow(self) -> None:
        now = self.clock.now
        if self.state == "closed":
            expected = True
        elif self.state == "open":
            expected = now - self.opened_at >= self.reset
            if expected:
                self.state, self.probe_at = "half_open", now
        else:
            expected = now - self.probe_at >= self.reset
            if expected:
                self.probe_at = now
        assert self.breaker.allow() is expected

    @rule()
    def success(self) -> None:
        self.breaker.record_success()
        self.state, self.failures = "closed", 0

    @rule()
    def failure(self) -> None:
        self.breaker.record_failure()
        self.failures += 1
        if self.state == "half_open" or (
            self.state == "closed" and self.failures >= self.threshold
        ):
            self.state, self.opened_at = "open", self.clock.now

    @invariant()
    def same_state(self) -> None:
        expected = self.state
        if expected == "open" and self.clock.now - self.opened_at >= self.reset:
            expected = "half_open"
        assert self.breaker.state == expected

    @invariant()
    def closed_always_allows(self) -> None:
        if self.state == "closed":
            assert self.breaker.allow()


TestBreakerMachine = BreakerMachine.TestCase
