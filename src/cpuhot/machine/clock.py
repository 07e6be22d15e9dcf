"""Time for the model: a real clock by default, a virtual one for deterministic tests.

The model never sleeps.  It schedules work (a guest ejecting a CPU, onlining a
new vCPU) as timers on a :class:`Timers` queue; the I/O layer calls
:meth:`Timers.run_due` when the earliest deadline has passed (real clock), or a
test advances a :class:`VirtualClock` and the due timers run at once.
"""

from __future__ import annotations

import heapq
import itertools
import time
from typing import Callable, Protocol


class Clock(Protocol):
    """What the model needs of a clock: the time now, in seconds since the epoch."""

    def now(self) -> float: ...


class RealClock:
    """Wall-clock time, as QEMU stamps events."""

    virtual = False

    def now(self) -> float:
        return time.time()


class VirtualClock:
    """Time that moves only when told to (``x-cpuhot-clock-step``)."""

    virtual = True
    EPOCH = 1_700_000_000.0

    def __init__(self, start: float = EPOCH):
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if not seconds >= 0 or seconds == float("inf"):
            raise ValueError("time only runs forwards, by a finite amount")
        self._now += seconds


class Timers:
    """A deadline-ordered queue of callbacks on a clock."""

    def __init__(self, clock: Clock):
        self.clock = clock
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._heap, (self.clock.now() + max(0.0, delay), next(self._seq), fn))

    def next_deadline(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def run_due(self, *, allowed: Callable[[], bool] = lambda: True) -> int:
        """Run every timer whose deadline has passed (in deadline order); return how many ran."""
        ran = 0
        while self._heap and self._heap[0][0] <= self.clock.now() and allowed():
            _, _, fn = heapq.heappop(self._heap)
            fn()
            ran += 1
        return ran

    def __len__(self) -> int:
        return len(self._heap)
