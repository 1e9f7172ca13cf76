"""The circuit breaker's state machine, on a clock the test moves by hand."""

import pytest

from src.proxy.breaker import CircuitBreaker, CircuitState


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def changes():
    return []


def make(clock, changes, threshold=3, cooldown=5.0) -> CircuitBreaker:
    def on_change(breaker, old, new, reason):
        changes.append((old, new, reason))

    return CircuitBreaker("virginica", threshold, cooldown, on_change, clock)


def fail(breaker: CircuitBreaker, times: int, reason: str = "timeout") -> None:
    for _ in range(times):
        breaker.record(breaker.allow(), ok=False, reason=reason)


def open_breaker(breaker: CircuitBreaker) -> None:
    fail(breaker, breaker.failure_threshold)
    assert breaker.state is CircuitState.OPEN


def test_opens_after_the_threshold_of_consecutive_failures(clock, changes):
    breaker = make(clock, changes)
    fail(breaker, 2)
    assert breaker.state is CircuitState.CLOSED
    assert breaker.allow() is not None
    fail(breaker, 1)
    assert breaker.state is CircuitState.OPEN
    assert breaker.allow() is None
    assert changes == [
        (
            CircuitState.CLOSED,
            CircuitState.OPEN,
            "3 consecutive failures, last timeout; no calls for 5s",
        )
    ]


def test_a_success_resets_the_count(clock, changes):
    breaker = make(clock, changes)
    fail(breaker, 2)
    breaker.record(breaker.allow(), ok=True)
    fail(breaker, 2)
    assert breaker.state is CircuitState.CLOSED
    assert breaker.consecutive_failures == 2


def test_stays_open_for_the_cooldown_then_lets_exactly_one_trial_through(clock, changes):
    breaker = make(clock, changes)
    open_breaker(breaker)
    clock.now += 4.9
    assert breaker.allow() is None
    assert breaker.seconds_to_trial() == pytest.approx(0.1)
    clock.now += 0.2
    trial = breaker.allow()
    assert trial is not None and trial.trial
    assert breaker.state is CircuitState.HALF_OPEN
    # However many calls arrive while the trial is out, none goes through.
    assert [breaker.allow() for _ in range(50)] == [None] * 50
    breaker.record(trial, ok=True)
    assert breaker.state is CircuitState.CLOSED
    assert breaker.allow() is not None
    assert [(old, new) for old, new, _ in changes] == [
        (CircuitState.CLOSED, CircuitState.OPEN),
        (CircuitState.OPEN, CircuitState.HALF_OPEN),
        (CircuitState.HALF_OPEN, CircuitState.CLOSED),
    ]


def test_a_failed_trial_opens_it_for_another_cooldown(clock, changes):
    breaker = make(clock, changes)
    open_breaker(breaker)
    clock.now += 5
    breaker.record(breaker.allow(), ok=False, reason="bad_status")
    assert breaker.state is CircuitState.OPEN
    assert changes[-1][2] == "trial call failed (bad_status); no calls for 5s"
    clock.now += 4.9
    assert breaker.allow() is None
    clock.now += 0.1
    assert breaker.allow().trial


def test_a_cancelled_trial_passes_the_trial_to_the_next_caller(clock, changes):
    breaker = make(clock, changes)
    open_breaker(breaker)
    clock.now += 5
    trial = breaker.allow()
    breaker.release(trial)
    assert breaker.state is CircuitState.HALF_OPEN
    next_trial = breaker.allow()
    assert next_trial is not None and next_trial.trial
    assert breaker.allow() is None
    # Releasing the old trial again changes nothing: the new one is still the only one.
    breaker.release(trial)
    assert breaker.allow() is None


def test_late_outcomes_of_calls_begun_before_the_change_are_ignored(clock, changes):
    breaker = make(clock, changes)
    # 32 calls go out while closed, then all time out (a service that hung under load).
    permits = [breaker.allow() for _ in range(32)]
    for permit in permits[:3]:
        breaker.record(permit, ok=False, reason="timeout")
    opened_until = breaker.open_until
    clock.now += 1
    for permit in permits[3:]:
        breaker.record(permit, ok=False, reason="timeout")
    assert breaker.open_until == opened_until  # the cool-down was not pushed back
    assert len(changes) == 1
    # A late success from the closed era does not close it either.
    breaker.record(permits[0], ok=True)
    assert breaker.state is CircuitState.OPEN


def test_threshold_zero_never_opens(clock, changes):
    breaker = make(clock, changes, threshold=0)
    fail(breaker, 100)
    assert breaker.state is CircuitState.CLOSED
    assert changes == []


@pytest.mark.parametrize(("threshold", "cooldown"), [(-1, 5), (5, 0)])
def test_rejects_meaningless_settings(threshold, cooldown):
    with pytest.raises(ValueError):
        CircuitBreaker("x", threshold, cooldown)
