"""A circuit breaker per backend: a hung or failing service costs a few timeouts, not all.

Written here rather than taken from PyPI (checked: purgatory 3.0.1, aiobreaker 1.2.0,
pybreaker 1.4.1): none lets exactly one trial call through while half-open (all three
pass every call that arrives during the trial, so 32 concurrent requests would all wait
on a service that is still hung), pybreaker's async support needs Tornado, and all three
count raised exceptions while `Backends` reports failures as values. What is needed is
small: a consecutive-failure count, an open-until time and a one-trial flag.

No lock: every request of the proxy runs on one event loop, and no method here awaits,
so each check-and-update is atomic with respect to the other requests.
"""

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)


class CircuitState(enum.IntEnum):
    """The values are the Prometheus gauge's: 0 closed, 1 half-open, 2 open."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, eq=False)
class Permit:
    """Leave to make one call; its outcome is reported back with `record`."""

    generation: int
    trial: bool = False


class CircuitBreaker:
    """Closed → (N consecutive failures) → open → (cool-down) → half-open → one trial.

    The trial's success closes the circuit, its failure opens it for another cool-down.
    `allow()` returns a `Permit` or None (short-circuit: make no call). Outcomes of calls
    that began before the circuit last changed are ignored: a burst of calls that were
    already waiting on a hung service must not extend the cool-down when they time out.
    `on_change(breaker, old, new, reason)` is called once per state change.
    """

    def __init__(
        self,
        name: str,
        failure_threshold: int,
        cooldown: float,
        on_change: Callable[["CircuitBreaker", CircuitState, CircuitState, str], None]
        | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 0 or cooldown <= 0:
            raise ValueError("failure_threshold must be >= 0 and cooldown > 0")
        self.name = name
        self.failure_threshold = failure_threshold  # 0: never opens
        self.cooldown = cooldown
        self._on_change = on_change
        self._clock = clock
        self.state = CircuitState.CLOSED
        self.consecutive_failures = 0
        self.open_until = 0.0
        # The one trial call out while half-open (compared by identity), else None.
        self._trial: Permit | None = None
        # Bumped on every state change; a permit from an older generation is stale.
        self._generation = 0

    def allow(self) -> Permit | None:
        if self.state is CircuitState.CLOSED:
            return Permit(self._generation)
        if self.state is CircuitState.OPEN:
            if self._clock() < self.open_until:
                return None
            self._change(CircuitState.HALF_OPEN, "cool-down over, one trial call")
        if self._trial is not None:
            return None
        self._trial = Permit(self._generation, trial=True)
        return self._trial

    def record(self, permit: Permit, ok: bool, reason: str = "") -> None:
        """The outcome of a call made under `permit`; `reason` names a failure."""
        if permit.generation != self._generation:
            return
        if permit.trial:
            if permit is not self._trial:
                return
            self._trial = None
            if ok:
                self._close("trial call succeeded")
            else:
                self._open(f"trial call failed ({reason})")
        elif ok:
            self.consecutive_failures = 0
        else:
            self.consecutive_failures += 1
            if self.failure_threshold and self.consecutive_failures >= self.failure_threshold:
                self._open(f"{self.consecutive_failures} consecutive failures, last {reason}")

    def release(self, permit: Permit) -> None:
        """A call that ended with no verdict (cancelled): let the next caller try instead."""
        if permit is self._trial:
            self._trial = None

    def seconds_to_trial(self) -> float:
        return max(0.0, self.open_until - self._clock())

    def _open(self, reason: str) -> None:
        self.open_until = self._clock() + self.cooldown
        self._change(CircuitState.OPEN, f"{reason}; no calls for {self.cooldown:g}s")

    def _close(self, reason: str) -> None:
        self.consecutive_failures = 0
        self._change(CircuitState.CLOSED, reason)

    def _change(self, new: CircuitState, reason: str) -> None:
        old, self.state = self.state, new
        self._generation += 1
        self._trial = None
        if self._on_change is not None:
            self._on_change(self, old, new, reason)
