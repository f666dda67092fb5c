"""Training curves from a run's metrics.jsonl: one run, or several overlaid for comparison.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no global backend switch), so
plotting inside a training process or a notebook never changes the user's matplotlib state.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from ..training.knobs import KNOBS
from ..training.metrics_file import MetricsReading, iter_metrics
from ..training.rundir import RunDir
from ..util.atomic import SHARED_MODE, write_bytes
from ..util.textsafe import cap, escape
from ..util.tomlio import read_toml

# Training records carry these; anything numeric in other records is an evaluation metric.
TRAIN_KEYS = ("loss_d", "loss_g", "d_real", "d_fake", "d_acc", "d_steps", "img_per_s")
# Numbers in evaluation records that are bookkeeping, not quality values.
NOT_METRICS = {"step", "epoch", "time", "seconds", "elapsed", "n", "n_samples", "num_samples",
               "samples", "lr_factor", "rollbacks", "patience", "best_step", "bad_evals",
               "evals_without_improvement", "max_real", "eval_seconds"}
# Extras beside a headline value: sample counts, spreads, thresholds, timings.
NOT_METRIC_SUFFIXES = ("_n", "_n_real", "_std", "_threshold", "_seconds", "_time", "_samples")
# Knobs drawn in the learning-rate panel rather than the knob panel.
LR_KNOBS = ("lr_g_scale", "lr_d_scale")
# Evaluation metrics drawn in one figure (a file can name thousands); the report lists them all.
MAX_METRICS_DRAWN = 12
PLOT_LIMIT = 1e100

Series = tuple[np.ndarray, np.ndarray]


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` so a viewer never sees half a picture; readable like any other file."""
    write_bytes(path, data, mode=SHARED_MODE)


@dataclass
class RunSeries:
    """A run's logged history as arrays: training statistics, knobs, evaluation metrics."""

    name: str
    config: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Series] = field(default_factory=dict)
    evals: dict[str, Series] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    lr_factor: Series | None = None
    path: Path | None = None
    notes: list[str] = field(default_factory=list)  # what could not be read, for the reader

    @property
    def last_step(self) -> int:
        steps = [int(s[0][-1]) for s in (*self.train.values(), *self.evals.values()) if len(s[0])]
        return max(steps, default=0)

    def last(self, key: str) -> float | None:
        series = self.train.get(key) or self.evals.get(key)
        return float(series[1][-1]) if series is not None and len(series[1]) else None

    def best(self, metric: str) -> tuple[int, float] | None:
        """(step, value) of the best evaluation of `metric`, by the metric's direction."""
        if metric not in self.evals or not len(self.evals[metric][1]):
            return None
        steps, values = self.evals[metric]
        finite = np.isfinite(values)
        if not finite.any():
            return None
        pick = np.where(finite, values, -np.inf if higher_is_better(metric) else np.inf)
        i = int(np.argmax(pick) if higher_is_better(metric) else np.argmin(pick))
        return int(steps[i]), float(values[i])

    def learning_rates(self) -> dict[str, Series]:
        """Effective learning rates: config rate x schedule scale x rollback factor."""
        out = {}
        for who in ("g", "d"):
            scale = self.train.get(f"knob.lr_{who}_scale")
            base = self.config.get(f"lr_{who}")
            if scale is None or not isinstance(base, int | float):
                continue
            steps, values = scale
            values = values * float(base)
            if self.lr_factor is not None and len(self.lr_factor[0]):
                at, factor = self.lr_factor
                idx = np.searchsorted(at, steps, side="left") - 1
                values = values * np.where(idx >= 0, factor[np.clip(idx, 0, None)], 1.0)
            out[f"lr_{who}"] = (steps, values)
        return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def higher_is_better(metric: str) -> bool:
    """A metric's direction from its registered plugin; unknown names count as lower-is-better
    (FID, KID and most distances)."""
    from ..plugins import get_registry

    name = metric.split(".")[-1]
    try:
        registry = get_registry()
        if name in registry.names("metric"):
            return bool(registry.get("metric", name).higher_is_better)
    except Exception:  # a broken plugin must not stop a plot; the default direction is fine
        pass
    return name in ("is", "inception_score") or name.endswith(
        ("precision", "recall", "density", "coverage", "accuracy"))


def series_from_records(records: Iterable[dict[str, Any]], name: str = "run",
                        config: dict[str, Any] | None = None) -> RunSeries:
    """Arrays from metrics records. A step logged again after a rollback or resume replaces the
    later history, so curves never run backwards."""
    train: dict[str, list[tuple[int, float]]] = {}
    evals: dict[str, list[tuple[int, float]]] = {}
    events: list[dict[str, Any]] = []
    lr_factor: list[tuple[int, float]] = []
    last_step = -1
    for record in records:
        if not isinstance(record, dict) or not _is_number(record.get("step")):
            continue
        step = int(record["step"])
        if "loss_d" in record:
            if step <= last_step:
                for points in train.values():
                    points[:] = [p for p in points if p[0] < step]
            last_step = step
            for key, value in record.items():
                if _is_number(value) and (key in TRAIN_KEYS or key == "time"
                                          or key.startswith("knob.")):
                    train.setdefault(key, []).append((step, float(value)))
            continue
        event = record.get("event")
        if event == "rollback":
            events.append(record)
            if _is_number(record.get("lr_factor")):
                lr_factor.append((step, float(record["lr_factor"])))
            continue
        if isinstance(event, str) and not any(w in event for w in ("eval", "metric", "fid")):
            events.append(record)
            continue
        prefix = str(record["metric"]) + "." if isinstance(record.get("metric"), str) else ""
        for key, value in record.items():
            if not _is_number(value) or key in NOT_METRICS or key.startswith("knob."):
                continue
            if key.endswith(NOT_METRIC_SUFFIXES):
                continue
            # {"metric": "fid", "value": 41.0} names the value by its metric
            label = str(record["metric"]) if key == "value" and prefix else key
            evals.setdefault(label, []).append((step, float(value)))

    def arrays(points: list[tuple[int, float]]) -> Series:
        return (np.array([p[0] for p in points], dtype=np.int64),
                np.array([p[1] for p in points], dtype=np.float64))

    return RunSeries(
        name=name, config=dict(config or {}),
        train={k: arrays(v) for k, v in train.items() if v},
        evals={k: arrays(v) for k, v in evals.items() if v},
        events=events,
        lr_factor=arrays(sorted(lr_factor)) if lr_factor else None,
    )


def read_config(path: str | os.PathLike) -> tuple[dict[str, Any], str | None]:
    """A run's config.toml and a note when it could not be read (then the config is empty).
    Read as every config is (tomlio.read_toml: a regular UTF-8 file within its size cap, so a
    FIFO or a huge file cannot stall); a missing one is no problem."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return {}, None
    try:
        return read_toml(path, "run config"), None
    except UsageError as exc:
        return {}, str(exc)


def load_run(path: str | os.PathLike, name: str | None = None) -> RunSeries:
    """A run directory's metrics and config. What cannot be read (a damaged config, bad lines
    in metrics.jsonl, a metrics.jsonl that is not a regular file) is left out and noted in
    the series' `notes`."""
    from ..errors import GanZooError

    run = RunDir(path)
    config, config_note = read_config(run.config_path)
    reading = MetricsReading()
    records: list[dict[str, Any]] = []
    notes = [config_note] if config_note else []
    try:
        records = list(iter_metrics(run.metrics_path, reading))
    except GanZooError as exc:
        notes.append(f"metrics.jsonl: {exc}")
    series = series_from_records(records, name or run.path.name or str(run.path), config)
    series.path = run.path
    metrics_note = reading.note()
    series.notes = notes + ([metrics_note] if metrics_note else [])
    if len(series.evals) > MAX_METRICS_DRAWN:
        series.notes.append(f"{len(series.evals)} evaluation metrics logged: the curves show the "
                            f"first {MAX_METRICS_DRAWN} by name, the tables show all")
    return series


def mpl_text(value: object, limit: int = 80) -> str:
    """Text from a run (a name, a metric, a config value) as matplotlib must be given it: `$`
    escaped (it would start mathtext, which raises on `$\\frac{`), control characters made
    visible, capped, and never starting with `_` (legends hide such labels)."""
    text = cap(escape(str(value)), limit).replace("$", r"\$")
    return " " + text if text.startswith("_") else text


# --------------------------------------------------------------------------------- drawing

RUN_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b",
               "#e377c2", "#7f7f7f", "#bcbd22")
QUANTITY_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd")
STYLES = ("-", "--", ":", "-.")


def smooth(values: np.ndarray, points: int = 60) -> np.ndarray:
    """Centred moving average over about 1/points of the series (edges use what exists)."""
    n = len(values)
    w = max(1, n // points)
    if w <= 1 or n < 3:
        return values
    finite = np.isfinite(values)
    v = np.where(finite, values, 0.0)
    kernel = np.ones(2 * w + 1)
    total = np.convolve(v, kernel, mode="same")
    count = np.convolve(finite.astype(float), kernel, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def plottable(values: np.ndarray) -> np.ndarray:
    """Values as drawn: beyond +-PLOT_LIMIT left out like NaN (matplotlib cannot place ticks
    on an axis from -1e308 to 1e308; such a value means the run diverged, and the tables show
    it as logged)."""
    with np.errstate(invalid="ignore"):
        return np.where(np.abs(values) <= PLOT_LIMIT, values, np.nan)


def _knob_keys(runs: list[RunSeries]) -> list[str]:
    """Knobs some schedule moved away from its neutral default in some run."""
    keys = []
    for knob, spec in KNOBS.items():
        if knob in LR_KNOBS:
            continue
        for run in runs:
            series = run.train.get(f"knob.{knob}")
            if series is not None and np.any(np.abs(series[1] - spec.default) > 1e-12):
                keys.append(knob)
                break
    return keys


class _Drawer:
    def __init__(self, runs: list[RunSeries]):
        self.runs = runs
        self.single = len(runs) == 1

    def style(self, run_i: int, q_i: int, dashed: bool = False) -> dict[str, Any]:
        if self.single:  # dashed: quantities that often coincide (noise on real and fake)
            return {"color": QUANTITY_COLOURS[q_i % len(QUANTITY_COLOURS)],
                    "linestyle": STYLES[q_i % 2] if dashed else "-"}
        return {"color": RUN_COLOURS[run_i % len(RUN_COLOURS)],
                "linestyle": STYLES[q_i % len(STYLES)]}

    def lines(self, ax, getter, labels: list[tuple[str, str]], raw: bool = True,
              dashed: bool = False) -> bool:
        drawn = False
        for run_i, run in enumerate(self.runs):
            for q_i, (key, label) in enumerate(labels):
                series = getter(run, key)
                if series is None or not len(series[0]):
                    continue
                steps, values = series[0], plottable(series[1])
                st = self.style(run_i, q_i, dashed)
                name = label if self.single else f"{mpl_text(run.name)}: {label}"
                if raw and self.single and len(values) > 30:
                    ax.plot(steps, values, color=st["color"], alpha=0.22, linewidth=0.8)
                    ax.plot(steps, smooth(values), label=f"{name} (smoothed)", linewidth=1.8, **st)
                else:
                    ax.plot(steps, smooth(values) if not self.single else values, label=name,
                            linewidth=1.6, marker="o" if len(steps) < 3 else None, **st)
                drawn = True
        return drawn


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=10,
            color="#555555", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def _legend(ax) -> None:
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=8, loc="best", framealpha=0.8)


def render_curves(runs: list[RunSeries], title: str | None = None) -> bytes:
    """PNG bytes of the curves of one run, or several overlaid (colour = run)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not runs:
        raise ValueError("no runs to plot")
    fig = Figure(figsize=(13, 11), dpi=100)
    # Fixed margins: a constrained layout costs as much as the drawing itself.
    fig.subplots_adjust(left=0.06, right=0.94, top=0.93, bottom=0.05, wspace=0.22, hspace=0.3)
    FigureCanvasAgg(fig)
    axes = fig.subplots(3, 2)
    draw = _Drawer(runs)
    train = lambda run, key: run.train.get(key)  # noqa: E731

    ax = axes[0, 0]
    if draw.lines(ax, train, [("loss_d", "D loss"), ("loss_g", "G loss")]):
        for run_i, run in enumerate(runs):
            for event in run.events:
                if event.get("event") == "rollback":
                    ax.axvline(event["step"], color=draw.style(run_i, 3)["color"], alpha=0.6,
                               linestyle=":", linewidth=1)
        _legend(ax)
    else:
        _empty(ax, "no training steps logged yet")
    ax.set_title("Losses")

    for ax, labels, panel_title in (
        (axes[0, 1], [("d_real", "D(x) real"), ("d_fake", "D(G(z)) fake")],
         "Discriminator outputs (mean sigmoid)"),
        (axes[1, 0], [("d_acc", "D accuracy")], "Discriminator accuracy (0.5 = chance)"),
    ):
        if draw.lines(ax, train, labels):  # both in [0, 1], 0.5 = D undecided
            ax.axhline(0.5, color="#999999", linewidth=0.8, linestyle="--")
            ax.set_ylim(-0.02, 1.02)
            _legend(ax)
        else:
            _empty(ax, "no training steps logged yet")
        ax.set_title(panel_title)

    ax = axes[1, 1]
    knobs = _knob_keys(runs)
    left = [k for k in knobs if k != "d_steps"]
    if left:
        draw.lines(ax, lambda run, key: run.train.get(f"knob.{key}"), [(k, k) for k in left],
                   raw=False, dashed=True)
        _legend(ax)
    if "d_steps" in knobs:
        twin = ax.twinx() if left else ax
        draw_d = _Drawer(runs)
        offset = len(left)
        for run_i, run in enumerate(runs):
            series = run.train.get("d_steps")
            if series is not None:
                st = draw_d.style(run_i, offset)
                twin.step(series[0], plottable(series[1]), where="post", linewidth=1.4,
                          label="D updates per G step" if draw.single
                          else f"{mpl_text(run.name)}: D updates",
                          **st)
        twin.set_ylabel("D updates per G step")
        _legend(twin)
    if not knobs:
        _empty(ax, "no schedule moved a knob\n(noise, D updates, augmentation: all at defaults)")
    ax.set_title("Schedule knobs")

    ax = axes[2, 0]
    lrs = {id(run): run.learning_rates() for run in runs}
    if draw.lines(ax, lambda run, key: lrs[id(run)].get(key), [("lr_g", "G lr"), ("lr_d", "D lr")],
                  raw=False, dashed=True):
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        ax.set_ylim(bottom=0)
        _legend(ax)
    else:
        _empty(ax, "no learning rates logged yet")
    ax.set_title("Learning rates")

    ax = axes[2, 1]
    metrics = sorted({m for run in runs for m in run.evals})[:MAX_METRICS_DRAWN]
    if metrics:
        for run_i, run in enumerate(runs):
            for q_i, metric in enumerate(metrics):
                if metric not in run.evals:
                    continue
                steps, values = run.evals[metric][0], plottable(run.evals[metric][1])
                st = draw.style(run_i, q_i)
                ax.plot(steps, values, marker="o", markersize=3, linewidth=1.4,
                        label=mpl_text(metric) if draw.single
                        else f"{mpl_text(run.name)}: {mpl_text(metric)}", **st)
                best = run.best(metric)
                if best is not None:
                    ax.plot([best[0]], plottable(np.array([best[1]])), marker="*",
                            markersize=13, color=st["color"],
                            markeredgecolor="black", linestyle="none")
        _legend(ax)
        ax.set_title("Evaluation (star = best)")
    else:
        _empty(ax, "no evaluation metric logged\n(train with --eval-every N --metric NAME)")
        ax.set_title("Evaluation")

    for a in axes.flat:
        if a.get_xticks().size:
            a.set_xlabel("step")
        a.grid(True, alpha=0.3)
    if title is None:
        if draw.single:
            run = runs[0]
            arch = run.config.get("arch", "")
            title = mpl_text(run.name) + (f"  ({mpl_text(arch, 40)}, step {run.last_step})"
                                          if arch else "")
        else:
            title = f"{len(runs)} runs: " + ", ".join(mpl_text(r.name, 40) for r in runs)
    else:
        title = mpl_text(title, 160)
    fig.suptitle(title, fontsize=13)
    buf = io.BytesIO()
    with warnings.catch_warnings():  # a name in a script the font lacks: drawn as boxes
        warnings.filterwarnings("ignore", "Glyph .* missing from", UserWarning)
        fig.savefig(buf, format="png")
    return buf.getvalue()


def plot_curves(runs: RunSeries | list[RunSeries], out: str | os.PathLike,
                title: str | None = None) -> Path:
    """Write curves.png (atomically: a viewer never sees half a file)."""
    runs = [runs] if isinstance(runs, RunSeries) else list(runs)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, render_curves(runs, title))
    return out

