"""The one way to watch the training loop: lists of callbacks, each called with the trainer.

Engine features (live plots, TensorBoard, evaluation) attach through api.CALLBACK_FACTORIES;
api.train's `progress` and the command line's progress bar are on_step callbacks; messages for
the user (rollbacks, evaluation results, resume notes) go to on_message.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .trainer import Trainer

Progress = Callable[[int, int, dict[str, float], float], None]  # step, total, stats, seconds


@dataclass
class Callbacks:
    """Hooks for code around the loop, called in list order."""

    on_step: list[Callable[[Trainer, dict[str, float]], None]] = field(default_factory=list)
    on_sample: list[Callable[[Trainer, Any], None]] = field(default_factory=list)
    on_checkpoint: list[Callable[[Trainer, Any], None]] = field(default_factory=list)
    on_end: list[Callable[[Trainer], None]] = field(default_factory=list)
    on_message: list[Callable[[Trainer, str], None]] = field(default_factory=list)


def progress_callback(progress: Progress) -> Callable[[Trainer, dict[str, float]], None]:
    """An on_step callback calling progress(step, total_steps, stats, seconds since train())."""

    def on_step(trainer: Trainer, stats: dict[str, float]) -> None:
        progress(trainer.step, trainer.total_steps, stats, time.perf_counter() - trainer.started)

    return on_step
