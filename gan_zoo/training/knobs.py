"""Training knobs: the values schedules may drive, with their neutral defaults."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError


@dataclass(frozen=True)
class Knob:
    default: float
    description: str


KNOBS: dict[str, Knob] = {
    "noise_std_real": Knob(0.0, "std of Gaussian instance noise added to real images at D's input"),
    "noise_std_fake": Knob(0.0, "std of Gaussian instance noise added to fake images at D's input"),
    "d_steps": Knob(1.0, "discriminator updates per generator update (rounded, at least 1)"),
    "d_batch_fraction": Knob(1.0, "share of the batch used for each discriminator update (0, 1]"),
    "lr_g_scale": Knob(1.0, "factor on the generator's learning rate"),
    "lr_d_scale": Knob(1.0, "factor on the discriminator's learning rate"),
    "augment_p": Knob(1.0, "probability that augmentation is applied to an image"),
}


def default_knobs() -> dict[str, float]:
    return {name: knob.default for name, knob in KNOBS.items()}


def check_knob_owners(schedules: list) -> None:
    """Fail at start when a knob is unknown or driven by two schedules, naming both."""
    owners: dict[str, str] = {}
    for schedule in schedules:
        for knob in schedule.knobs:
            if knob not in KNOBS:
                raise UsageError(
                    f"schedule {schedule.name!r} drives unknown knob {knob!r}; "
                    f"known knobs: {', '.join(KNOBS)}"
                )
            if knob in owners:
                raise UsageError(
                    f"schedules {owners[knob]!r} and {schedule.name!r} both drive the knob "
                    f"{knob!r}; use only one of them"
                )
            owners[knob] = schedule.name
