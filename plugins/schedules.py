"""Built-in schedules: instance-noise annealing, loss-balanced D work, learning rates, adaptive
augmentation.

A schedule sets training knobs (gan_zoo.training.knobs) before every step from the training state and
may watch each step's statistics afterwards. Stateful schedules return their state from
``state_dict`` so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

import gan_zoo
from gan_zoo import Options, Schedule, TrainState

# --------------------------------------------------------------------------- noise-anneal


class NoiseAnnealOptions(Options):
    shape: Literal["staircase", "linear", "cosine", "constant"] = Field(
        "staircase", description="how the noise std falls: staircase = `levels` in equal parts of "
        "the annealing span (face seed model 7: 0.3, 0.1, 0 by thirds); linear/cosine = from `std` "
        "to 0 at `end`; constant = `std` throughout (face seed model 7.1)")
    std: float = Field(0.3, ge=0, le=10, description="starting std for linear, cosine and constant")
    levels: list[float] = Field(
        [0.3, 0.1, 0.0], min_length=1, description="staircase: the std of each equal part")
    end: float = Field(
        1.0, gt=0, le=1, description="fraction of training by which the noise has reached 0 "
        "(staircase: its parts divide [0, end))")
    apply_to: Literal["both", "real"] = Field(
        "both", description="both = real and fake inputs of D get the same noise level (the level "
        "tells D nothing); real = real images only, as the face seed did")

    @field_validator("levels")
    @classmethod
    def _non_negative(cls, value: list[float]) -> list[float]:
        if any(not (0 <= v <= 10) for v in value):
            raise ValueError("every level must be between 0 and 10")
        return value


def noise_std(o: NoiseAnnealOptions, progress: float) -> float:
    """The std at a fraction of training (pure function of the options and progress)."""
    if o.shape == "constant":
        return o.std
    if progress >= o.end:
        return 0.0
    t = progress / o.end  # in [0, 1)
    if o.shape == "staircase":
        return o.levels[min(len(o.levels) - 1, int(t * len(o.levels)))]
    if o.shape == "linear":
        return o.std * (1.0 - t)
    return o.std * 0.5 * (1.0 + math.cos(math.pi * t))  # cosine


class NoiseAnneal(Schedule):
    """Gaussian instance noise on D's inputs, annealed to zero (staircase, linear or cosine)."""

    name = "noise-anneal"
    Options = NoiseAnnealOptions
    knobs = ("noise_std_real", "noise_std_fake")

    def values(self, state: TrainState) -> dict[str, float]:
        std = noise_std(self.options, state.progress)
        return {"noise_std_real": std,
                "noise_std_fake": std if self.options.apply_to == "both" else 0.0}


# --------------------------------------------------------------------------- loss-balance


class LossBalanceOptions(Options):
    mode: Literal["steps", "batch"] = Field(
        "steps", description="what to adapt: steps = D updates per G step (d_steps); batch = the "
        "share of the batch each D update uses (d_batch_fraction), as the face seed's model 8")
    signal: Literal["loss_d_mean", "loss_d", "d_acc"] = Field(
        "loss_d_mean", description="what to hold near the target: loss_d_mean = mean of D's real "
        "and fake loss terms (what Keras reports, the seed's 0.5); loss_d = their sum; d_acc = D's "
        "accuracy (then higher means D is stronger)")
    target: float = Field(0.5, description="value of the signal to hold (seed: about 0.5)")
    band: float = Field(
        0.1, ge=0, description="hysteresis: D's work changes only when the smoothed signal leaves "
        "[target - band, target + band]")
    smoothing: float = Field(
        0.9, ge=0, lt=1, description="exponential moving average factor applied to the signal")
    cooldown: int = Field(
        10, ge=0, le=100000, description="steps to wait after a change before the next one")
    min_steps: int = Field(1, ge=1, le=100, description="mode=steps: fewest D updates per G step")
    max_steps: int = Field(5, ge=1, le=100, description="mode=steps: most D updates per G step")
    min_fraction: float = Field(
        0.25, gt=0, le=1, description="mode=batch: smallest share of the batch for D")
    max_fraction: float = Field(1.0, gt=0, le=1, description="mode=batch: largest share for D")
    fraction_step: float = Field(
        0.125, gt=0, le=1, description="mode=batch: change of the share at each adjustment")

    @model_validator(mode="after")
    def _bounds(self) -> LossBalanceOptions:
        if self.min_steps > self.max_steps:
            raise ValueError(f"min_steps ({self.min_steps}) exceeds max_steps ({self.max_steps})")
        if self.min_fraction > self.max_fraction:
            raise ValueError(f"min_fraction ({self.min_fraction}) exceeds max_fraction "
                             f"({self.max_fraction})")
        return self


class LossBalance(Schedule):
    """Adapts D's work per G step (updates or batch share) to hold D's loss near a target."""

    name = "loss-balance"
    Options = LossBalanceOptions

    def __init__(self, options: Options | None = None):
        super().__init__(options)
        o = self.options
        # The knob depends on the mode, so it is declared per instance (conflict checks read it).
        self.knobs = ("d_steps",) if o.mode == "steps" else ("d_batch_fraction",)
        # Start with the engine's neutral amount of work, inside the bounds.
        self.level = float(o.min_steps) if o.mode == "steps" else o.max_fraction
        self.smoothed: float | None = None
        self.since_change = 0
        self.changes = 0

    def values(self, state: TrainState) -> dict[str, float]:
        return {self.knobs[0]: self.level}

    def _signal(self, stats: dict[str, float]) -> float | None:
        if self.options.signal == "loss_d_mean":
            value = stats.get("loss_d")
            value = None if value is None else value / 2
        else:
            value = stats.get(self.options.signal)
        return value if value is not None and math.isfinite(value) else None

    def observe(self, state: TrainState, stats: dict[str, float]) -> None:
        value = self._signal(stats)
        if value is None:
            return
        o = self.options
        beta = o.smoothing
        self.smoothed = value if self.smoothed is None else beta * self.smoothed + (1 - beta) * value
        self.since_change += 1
        if self.since_change < o.cooldown:
            return
        # For a loss, low means D wins; for accuracy, high means D wins.
        sign = 1.0 if o.signal == "d_acc" else -1.0
        strength = sign * (self.smoothed - o.target)
        if strength > o.band:
            direction = -1  # D too strong: give it less work
        elif strength < -o.band:
            direction = 1  # D too weak: more work
        else:
            return  # inside the band: hold (hysteresis)
        if o.mode == "steps":
            new = min(o.max_steps, max(o.min_steps, self.level + direction))
        else:
            new = min(o.max_fraction, max(o.min_fraction, self.level + direction * o.fraction_step))
        if new != self.level:
            self.level = float(new)
            self.since_change = 0
            self.changes += 1

    def state_dict(self) -> dict[str, Any]:
        return {"level": self.level, "smoothed": self.smoothed, "since_change": self.since_change,
                "changes": self.changes}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.level = float(state["level"])
        smoothed = state["smoothed"]  # None until the first observed step
        self.smoothed = None if smoothed is None else float(smoothed)
        self.since_change = int(state["since_change"])
        self.changes = int(state.get("changes", 0))


# --------------------------------------------------------------------------- learning rates


class LRScheduleOptions(Options):
    g_scale: float = Field(
        1.0, gt=0, le=100, description="constant factor on G's learning rate (TTUR)")
    d_scale: float = Field(
        1.0, gt=0, le=100, description="constant factor on D's learning rate (TTUR)")
    warmup: int = Field(
        0, ge=0, description="steps of linear warm-up from 1/warmup to the full rate")
    decay: Literal["none", "linear", "cosine"] = Field(
        "none", description="decay of both rates from `decay_start` to the end of training")
    decay_start: float = Field(
        0.5, ge=0, lt=1, description="fraction of training where the decay begins")
    final: float = Field(0.0, ge=0, le=1, description="factor reached at the end of the decay")


def lr_factor(o: LRScheduleOptions, step: int, progress: float) -> float:
    """The shared warm-up x decay factor at a step (before the per-network scales)."""
    factor = 1.0
    if o.warmup > 0:
        factor *= min(1.0, (step + 1) / o.warmup)
    if o.decay != "none" and progress > o.decay_start:
        t = (progress - o.decay_start) / (1.0 - o.decay_start)
        shape = 1.0 - t if o.decay == "linear" else 0.5 * (1.0 + math.cos(math.pi * t))
        factor *= o.final + (1.0 - o.final) * shape
    return factor


class LRSchedule(Schedule):
    """Learning-rate factors: separate G/D scales (TTUR), linear warm-up, linear/cosine decay."""

    name = "lr"
    Options = LRScheduleOptions
    knobs = ("lr_g_scale", "lr_d_scale")

    def values(self, state: TrainState) -> dict[str, float]:
        f = lr_factor(self.options, state.step, state.progress)
        return {"lr_g_scale": f * self.options.g_scale, "lr_d_scale": f * self.options.d_scale}


class TTUROptions(LRScheduleOptions):
    g_scale: float = Field(
        0.5, gt=0, le=100, description="constant factor on G's learning rate (TTUR)")
    d_scale: float = Field(
        2.0, gt=0, le=100, description="constant factor on D's learning rate (TTUR)")


class TTUR(LRSchedule):
    """Two time-scale update rule (Heusel et al. 2017): D learns 4x faster than G by default."""

    name = "ttur"
    Options = TTUROptions


# --------------------------------------------------------------------------- ada


class AdaptiveAugmentOptions(Options):
    target: float = Field(
        0.6, ge=0, le=1, description="E[sign D(x)] on real images to hold (paper: 0.6); above it "
        "D is overfitting and augmentation increases")
    interval: int = Field(4, ge=1, le=10000, description="adjust p every this many steps")
    ramp_steps: int = Field(
        500, ge=1, description="steps p needs to go from 0 to 1 when always pushed one way")
    p_max: float = Field(0.8, ge=0, le=1, description="upper bound on p")


class AdaptiveAugment(Schedule):
    """Adaptive augmentation probability (Karras et al. 2020): raises p while D overfits."""

    name = "ada"
    Options = AdaptiveAugmentOptions
    knobs = ("augment_p",)

    def __init__(self, options: Options | None = None):
        super().__init__(options)
        self.p = 0.0
        self.signs: list[float] = []

    def values(self, state: TrainState) -> dict[str, float]:
        return {"augment_p": self.p}

    def observe(self, state: TrainState, stats: dict[str, float]) -> None:
        value = stats.get("d_real_sign")
        if value is None or not math.isfinite(value):
            return
        self.signs.append(value)
        o = self.options
        if len(self.signs) < o.interval:
            return
        r = sum(self.signs) / len(self.signs)
        self.signs = []
        step = math.copysign(o.interval / o.ramp_steps, r - o.target) if r != o.target else 0.0
        self.p = min(o.p_max, max(0.0, self.p + step))

    def state_dict(self) -> dict[str, Any]:
        return {"p": self.p, "signs": list(self.signs)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.p = float(state["p"])
        self.signs = [float(v) for v in state["signs"]]


@gan_zoo.hookimpl
def register_schedules(register):
    for cls in (NoiseAnneal, LossBalance, LRSchedule, TTUR, AdaptiveAugment):
        register(cls)
