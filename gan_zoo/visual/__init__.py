"""Pictures of runs: training curves, the evolution of the fixed-noise samples, live updates of
both in the run directory while training goes on, and optional TensorBoard logging.

    RUN/curves.png      losses, D(x) and D(G(z)), D accuracy, schedule knobs, learning rates and
                        evaluation metrics against step (rewritten as training goes)
    RUN/evolution.png   a strip: one row per saved sample grid, the same fixed-noise images
"""

from __future__ import annotations

from .curves import RunSeries, load_run, plot_curves
from .evolution import evolution_strip, sample_steps

__all__ = ["RunSeries", "evolution_strip", "load_run", "plot_curves", "sample_steps"]
