"""A run's time budget (`--minutes`): training time spent, what is left, where the run stands.

Two models compared at equal cost need equal training time, not equal steps: a step of a
StyleGAN2 costs several of a DCGAN's. The budget counts the training loop (steps, sample grids,
checkpoints) and pauses around the loop's callbacks, so evaluation and plots are not charged
to the model. The clock is wall time, or the process's CPU time (all its threads), which is
the fairer measure on a busy machine. The time spent is saved in checkpoints: a resumed run
continues the budget instead of starting it again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

Clock = Literal["wall", "cpu"]
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


class TimeBudget:
    """Seconds of training allowed and spent on one clock."""

    def __init__(self, minutes: float, clock: Clock = "wall", spent: float = 0.0):
        self.seconds = minutes * 60.0
        self.clock = clock
        self._now = CLOCKS[clock]
        self._spent_before = spent  # by earlier processes of this run (resume)
        self._start: float | None = None
        self._paused = 0.0

    def start(self) -> None:
        """Start counting (the loop begins); idempotent."""
        if self._start is None:
            self._start = self._now()

    @property
    def spent(self) -> float:
        """Seconds charged so far, earlier processes included."""
        if self._start is None:
            return self._spent_before
        return self._spent_before + max(0.0, self._now() - self._start - self._paused)

    def fraction(self) -> float:
        """Share of the budget spent, in [0, 1]: what schedules see as progress."""
        return min(1.0, self.spent / self.seconds)

    def exhausted(self) -> bool:
        return self.spent >= self.seconds

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Time inside is not charged (evaluation, plots and other callbacks)."""
        t = self._now()
        try:
            yield
        finally:
            self._paused += self._now() - t

    def projected_steps(self, step: int) -> int:
        """The run's length in steps if the remaining time goes as the spent time went: the
        `total_steps` schedules, progress bars and logs see (at least one more step)."""
        frac = self.fraction()
        if step <= 0 or frac <= 0:
            return step + 1
        return max(step + 1, math.ceil(step / frac)) if frac < 1 else step

    def state(self) -> dict[str, float | str]:
        """What a checkpoint keeps."""
        return {"spent": self.spent, "clock": self.clock, "minutes": self.seconds / 60.0}
