"""Keep RUN/curves.png and RUN/evolution.png current while a run trains.

Attached to every run through api.CALLBACK_FACTORIES. Redrawn when a sample grid is saved, at
most every `min_interval` seconds between grids (so a long gap between grids still shows
progress), and at the end. A plot that fails is a warning, never the end of a training run.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .curves import load_run, plot_curves
from .evolution import evolution_strip

if TYPE_CHECKING:
    from ..training.trainer import Callbacks, Trainer

# Redraw curves between sample grids at most this often: a render costs ~0.3 s of CPU.
MIN_INTERVAL_S = 60.0


class LivePlots:
    def __init__(self, trainer: Trainer, min_interval: float = MIN_INTERVAL_S):
        self.trainer = trainer
        self.min_interval = min_interval
        self.last_draw = time.monotonic()
        self.drawn: tuple[int, int] | None = None  # (step, metrics size) of the last drawing
        self.warned = False

    def _warn(self, what: str, exc: BaseException) -> None:
        if not self.warned:  # once per run: a full disk would otherwise repeat every step
            self.warned = True
            self.trainer.notify(f"warning: {what} not updated: {exc}")

    def curves(self) -> None:
        run = self.trainer.run
        if run is None:
            return
        self.last_draw = time.monotonic()
        try:
            size = run.metrics_path.stat().st_size if run.metrics_path.exists() else 0
            if self.drawn == (self.trainer.step, size):
                return  # nothing new since the last drawing (the end follows the last grid)
            plot_curves(load_run(run.path), run.path / "curves.png")
            self.drawn = (self.trainer.step, size)
        except Exception as exc:  # noqa: BLE001 - a picture must not end hours of training
            self._warn("curves.png", exc)

    def evolution(self) -> None:
        run = self.trainer.run
        if run is None:
            return
        try:
            evolution_strip(run.path, n_images=self.trainer.config.sample_grid)
        except Exception as exc:  # noqa: BLE001
            self._warn("evolution.png", exc)

    def _draw_last_at_end(self) -> None:
        # Other features log at the end too (a final evaluation): the closing drawing must come
        # after every other on_end callback. All factories have attached once steps run.
        ends = self.trainer.callbacks.on_end
        if ends and ends[-1] != self.on_end and self.on_end in ends:
            ends.remove(self.on_end)
            ends.append(self.on_end)

    # callbacks
    def on_sample(self, trainer: Trainer, path: Any) -> None:
        self.evolution()
        self.curves()

    def on_step(self, trainer: Trainer, stats: dict[str, float]) -> None:
        self._draw_last_at_end()
        if trainer.step % trainer.config.log_every == 0 and \
                time.monotonic() - self.last_draw >= self.min_interval:
            self.curves()

    def on_end(self, trainer: Trainer) -> None:
        self.curves()


def attach(trainer: Trainer, callbacks: Callbacks) -> None:
    """CALLBACK_FACTORIES entry: live curves and sample evolution for runs that have a folder."""
    if trainer.run is None:
        return
    live = LivePlots(trainer)
    callbacks.on_sample.append(live.on_sample)
    callbacks.on_step.append(live.on_step)
    callbacks.on_end.append(live.on_end)
