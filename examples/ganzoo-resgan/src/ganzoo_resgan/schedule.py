"""``acc-noise``: instance noise that follows the discriminator's accuracy.

Instance noise (Sønderby et al. 2016) blurs the real and fake distributions so D cannot
separate them perfectly. Rather than annealing it on a fixed timetable, this schedule raises
the noise when D gets too good (its smoothed accuracy above a target) and lowers it when D is
struggling, within bounds: the amount of noise tracks how much D is winning.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_validator

from gan_zoo import Options, Schedule, TrainState


class AccuracyNoiseOptions(Options):
    """Options of acc-noise."""

    target: float = Field(0.75, gt=0.5, lt=1, description="D accuracy to hold (0.5 = chance)")
    initial: float = Field(0.1, ge=0, description="noise std at the start")
    step: float = Field(0.005, gt=0, description="change of the std per training step")
    max_std: float = Field(0.5, gt=0, description="upper bound on the std")
    smoothing: float = Field(
        0.9, ge=0, lt=1, description="moving-average factor on D's accuracy (0 = no smoothing)")

    @model_validator(mode="after")
    def _bounds(self) -> AccuracyNoiseOptions:
        if self.initial > self.max_std:
            raise ValueError(f"initial ({self.initial}) must not exceed max_std ({self.max_std})")
        return self


class AccuracyNoise(Schedule):
    """Instance noise on D's inputs, raised when D's accuracy is above a target, else lowered."""

    name = "acc-noise"
    Options = AccuracyNoiseOptions
    knobs: ClassVar[tuple[str, ...]] = ("noise_std_real", "noise_std_fake")

    def __init__(self, options: AccuracyNoiseOptions | None = None):
        super().__init__(options)
        self.std = self.options.initial
        self.accuracy: float | None = None

    def values(self, state: TrainState) -> dict[str, float]:
        return {"noise_std_real": self.std, "noise_std_fake": self.std}

    def observe(self, state: TrainState, stats: dict[str, float]) -> None:
        acc = stats.get("d_acc")
        if acc is None:
            return
        s = self.options.smoothing
        self.accuracy = acc if self.accuracy is None else s * self.accuracy + (1 - s) * acc
        delta = self.options.step if self.accuracy > self.options.target else -self.options.step
        self.std = min(self.options.max_std, max(0.0, self.std + delta))

    def state_dict(self) -> dict[str, Any]:
        return {"std": self.std, "accuracy": self.accuracy}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.std = float(state["std"])
        self.accuracy = None if state["accuracy"] is None else float(state["accuracy"])
