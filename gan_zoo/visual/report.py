"""`ganzoo report RUN [RUN ...] --out report.html`: one self-contained HTML page per set of runs.

Per run: its config, final and best metrics, the curves, the sample evolution and the final grid;
with several runs, a comparison table and the curves overlaid. Pictures are drawn afresh from
each run's metrics.jsonl and samples/ (so an old or interrupted run reports correctly) and
embedded as data: URLs; the page loads nothing from the network and runs no script.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from ..errors import GanZooError, UsageError
from ..training.rundir import RunDir
from ..util.textsafe import safe_message, shown
from .curves import RunSeries, higher_is_better, load_run, render_curves, write_atomic
from .evolution import render_evolution, sample_steps
from .pictures import PictureSkipped, read_png

# Final-value columns of the comparison table: (key, heading, digits).
FINAL_STATS = (("loss_d", "D loss", 3), ("loss_g", "G loss", 3), ("d_real", "D(x)", 2),
               ("d_fake", "D(G(z))", 2), ("d_acc", "D acc", 2))
CONFIG_SUMMARY = ("arch", "loss", "schedules", "augment", "batch_size", "lr_g", "lr_d")


@dataclass
class RunReport:
    """What the page shows of one run."""

    name: str
    path: Path
    series: RunSeries
    curves_png: bytes | None
    evolution_png: bytes | None
    grid_png: bytes | None
    checkpoints: list[int]
    has_best: bool
    notes: list[str] = field(default_factory=list)  # what was left out, and why
    per_class: dict[str, Any] | None = None  # the last `--per-class` evaluation's record

    @property
    def config(self) -> dict[str, Any]:
        return self.series.config

    @property
    def planned_steps(self) -> int | None:
        steps = self.config.get("steps")
        return steps if isinstance(steps, int) else None


def _mean_of_last(series: RunSeries, key: str, frac: float = 0.1) -> float | None:
    """Mean over the last tenth of the run: a single step's loss is mostly noise."""
    if key not in series.train:
        return None
    values = series.train[key][1]
    tail = values[-max(1, int(len(values) * frac)):]
    tail = tail[[math.isfinite(v) for v in tail]]
    return float(tail.mean()) if len(tail) else None


def collect(path: str | os.PathLike, name: str | None = None) -> RunReport:
    """Read a run directory and draw its pictures; a folder that is not a run is a UsageError."""
    run = RunDir(path)
    if not run.path.exists():
        raise UsageError(f"run directory {shown(str(path))} does not exist")
    if not run.path.is_dir() or (not run.config_path.exists() and not run.metrics_path.exists()):
        raise UsageError(f"{shown(str(path))} is not a run directory (no config.toml or metrics.jsonl)")
    series = load_run(run.path, name)
    notes = list(series.notes)
    curves = render_curves([series]) if series.train or series.evals else None
    grids = sample_steps(run.samples_dir)
    n_images = series.config.get("sample_grid", 64)
    evolution = None
    if grids:
        try:
            evolution = render_evolution(grids, n_images if isinstance(n_images, int) else 64,
                                         notes=notes)
        except ValueError:  # every grid unreadable (each has its note)
            evolution = None
    grid_png = None
    final_grid = run.path / "samples.png"
    candidates = ([final_grid] if final_grid.exists() or final_grid.is_symlink() else [])
    for path in candidates + [p for _, p in grids[-1:]]:
        try:
            grid_png = read_png(path)
            break
        except PictureSkipped as exc:
            if str(exc) not in notes:
                notes.append(str(exc))
    return RunReport(series.name, run.path, series, curves, evolution, grid_png,
                     sorted(step for step, _ in run.step_checkpoints()), run.best_path.exists(),
                     notes, last_per_class(run.metrics_path))


PER_CLASS_LIMIT = 1000  # classes a per-class table shows at most (gan_zoo.data.classes.MAX_CLASSES)


def last_per_class(path: Path) -> dict[str, Any] | None:
    """The last record of metrics.jsonl with a well-formed `per_class` list (`ganzoo fid/eval
    --per-class`), or None. Malformed lines and entries are ignored: the file may come from
    anyone."""
    from ..training.metrics_file import iter_metrics

    found = None
    try:
        for record in iter_metrics(path):
            lines = record.get("per_class")
            if isinstance(lines, list) and 0 < len(lines) <= PER_CLASS_LIMIT and all(
                    isinstance(x, dict) and isinstance(x.get("name"), str)
                    and isinstance(x.get("n_real"), int) for x in lines):
                found = record
    except GanZooError:
        return None
    return found


def _per_class_table(record: dict[str, Any]) -> str:
    """The per-class evaluation as a table: one row per class, one column per metric."""
    named = record.get("metrics")
    metrics = [m for m in (named if isinstance(named, list) else ["fid", "kid"])
               if isinstance(m, str)]
    lines = record["per_class"]
    metrics = [m for m in metrics if any(isinstance(x.get(m), int | float) for x in lines)]
    head = "".join(f"<th>{_e(m)}</th>" for m in metrics)
    rows = ""
    for x in lines:
        n = x.get(f"{metrics[0]}_n") if metrics else None
        cells = (f"<td colspan={len(metrics)} class=dim>skipped: {_e(x.get('skipped', ''))}</td>"
                 if "skipped" in x else
                 "".join(f"<td>{_fmt(x.get(m) if isinstance(x.get(m), int | float) else None)}"
                         "</td>" for m in metrics))
        rows += (f"<tr><th>{_e(x['name'])}</th><td>{_fmt(n if isinstance(n, int) else None)}"
                 f"</td><td>{x['n_real']}</td>{cells}</tr>")
    step = record.get("step")
    means = "; ".join(f"mean {_e(m)} {_fmt(record[f'{m}_class_mean'])}" for m in metrics
                      if isinstance(record.get(f"{m}_class_mean"), float))
    return (f"<h3>Per class <span class=dim>(step {_e(step)}; samples of each class against "
            f"its real images)</span></h3><table class=kv><tr><th>class</th><th>N</th>"
            f"<th>N real</th>{head}</tr>{rows}</table>" + (f"<p>{means}</p>" if means else ""))


def _grid_caption(config: dict[str, Any]) -> str:
    """A conditional run's final grid: which class each row shows."""
    classes, n = config.get("classes"), config.get("sample_grid", 64)
    if not (config.get("conditional") and isinstance(classes, list) and classes
            and all(isinstance(c, str) for c in classes) and isinstance(n, int) and n > 0):
        return ""
    from ..data.classes import grid_row_classes
    from ..data.images import grid_layout

    rows = grid_row_classes(n, grid_layout(n, 1, 1)[0], len(classes))
    names = ", ".join(_e(classes[r]) for r in rows[:64])
    return f'<p class="dim">One class per row, the same noise down each column: {names}</p>'


def _unique_names(paths: list[Path]) -> list[str]:
    """Folder names, with parents added where two runs share one."""
    base = [p.resolve().name or str(p) for p in paths]
    names = ["/".join(p.resolve().parts[-2:]) if base.count(b) > 1 else b
             for p, b in zip(paths, base, strict=True)]
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        seen[n] = seen.get(n, 0) + 1
        if seen[n] > 1:
            names[i] = f"{n} ({seen[n]})"
    return names


# ------------------------------------------------------------------------------ HTML pieces

def _e(value: Any) -> str:
    """HTML-escaped, with control and format characters (ESC, bidi overrides) made visible:
    names and values on the page come from other people's runs."""
    return html.escape(safe_message(str(value), limit=1_000_000), quote=True)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.{digits}g}"
        text = f"{value:.{digits}f}"
        return text.rstrip("0").rstrip(".") if "." in text else text
    if isinstance(value, list):
        return ", ".join(_fmt(v, digits) for v in value) or "–"
    return str(value)


def _img(png: bytes | None, alt: str, cls: str = "") -> str:
    if png is None:
        return f'<p class="missing">{_e(alt)}: not available yet</p>'
    data = base64.b64encode(png).decode("ascii")
    return (f'<img class="{cls}" alt="{_e(alt)}" src="data:image/png;base64,{data}">')


def _config_rows(config: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for key, value in config.items():
        if isinstance(value, dict):
            for component, opts in value.items():
                if isinstance(opts, dict):
                    rows += [(f"{key}.{component}.{k}", _fmt(v)) for k, v in opts.items()]
                else:
                    rows.append((f"{key}.{component}", _fmt(opts)))
        else:
            rows.append((key, _fmt(value)))
    return rows


def _metric_cells(r: RunReport, metric: str) -> tuple[str, str]:
    best = r.series.best(metric)
    last = r.series.last(metric)
    best_s = f"{_fmt(best[1])} <span class=dim>@ {best[0]}</span>" if best else "–"
    return _fmt(last), best_s


def _run_section(r: RunReport, anchor: str) -> str:
    s = r.series
    done = s.last_step
    planned = r.planned_steps
    status = f"{done} of {planned} steps" if planned else f"{done} steps"
    if planned and done < planned:
        status += " (unfinished or still training)"
    wall = s.last("time") if "time" in s.train else None
    speed = s.train.get("img_per_s")
    checkpoints = ", ".join(str(c) for c in r.checkpoints) or "none"
    if r.has_best:
        checkpoints += " + best"
    facts = [("status", status), ("run directory", str(r.path)), ("checkpoints", checkpoints)]
    if speed is not None and len(speed[1]):
        facts.append(("speed", f"{_fmt(float(sorted(speed[1])[len(speed[1]) // 2]), 1)} img/s "
                               "(median)"))
    if wall is not None:
        facts.append(("wall time logged", f"{wall:.0f} s"))
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts)
    finals = "".join(
        f"<tr><th>{_e(label)}</th><td>{_fmt(_mean_of_last(s, key), digits)}</td>"
        f"<td>{_fmt(s.last(key), digits)}</td></tr>" for key, label, digits in FINAL_STATS)
    metric_rows = ""
    for metric in sorted(s.evals):
        last, best = _metric_cells(r, metric)
        direction = "higher is better" if higher_is_better(metric) else "lower is better"
        metric_rows += (f"<tr><th>{_e(metric)} <span class=dim>({direction})</span></th>"
                        f"<td>{last}</td><td>{best}</td></tr>")
    metrics_table = (
        "<table class=kv><tr><th>metric</th><th>final</th><th>best @ step</th></tr>"
        f"{metric_rows}</table>" if metric_rows else
        '<p class="dim">No evaluation metric was logged (train with <code>--eval-every N '
        "--metric NAME</code>).</p>")
    config_rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>"
                          for k, v in _config_rows(r.config))
    notes = "".join(f"<li>{_e(note)}</li>" for note in r.notes)
    notes = f'<h3>Left out</h3><ul class="missing">{notes}</ul>' if notes else ""
    return f"""
<section class="run" id="{anchor}">
  <h2>{_e(r.name)}</h2>
  <div class="cols">
    <div>
      <h3>Run</h3><table class="kv">{rows}</table>
      <h3>Final statistics</h3>
      <table class="kv"><tr><th></th><th>mean of last 10%</th><th>last logged</th></tr>{finals}</table>
      <h3>Evaluation</h3>{metrics_table}{notes}
    </div>
    <div>
      <h3>Config</h3>
      <table class="kv config">{config_rows or '<tr><td>no config.toml</td></tr>'}</table>
    </div>
  </div>
  <h3>Curves</h3>
  {_img(r.curves_png, f"training curves of {r.name}", "curves")}
  <h3>Sample evolution <span class="dim">(same fixed noise in every row)</span></h3>
  {_img(r.evolution_png, f"sample evolution of {r.name}", "evolution")}
  <h3>Final samples</h3>
  {_grid_caption(r.config)}
  {_img(r.grid_png, f"final sample grid of {r.name}", "grid")}
  {_per_class_table(r.per_class) if r.per_class else ""}
</section>"""


def _comparison(reports: list[RunReport], anchors: list[str]) -> str:
    metrics = sorted({m for r in reports for m in r.series.evals})
    head = "".join(f"<th>{_e(k)}</th>" for k in ("run", *CONFIG_SUMMARY, "steps"))
    head += "".join(f"<th>{_e(label)}</th>" for _, label, _ in FINAL_STATS)
    head += "".join(f"<th>{_e(m)} best</th><th>{_e(m)} final</th>" for m in metrics)
    # mark the best run of each metric
    winners: dict[str, int] = {}
    for m in metrics:
        scored = [(r.series.best(m), i) for i, r in enumerate(reports)]
        scored = [(b[1], i) for b, i in scored if b is not None]
        if scored:
            pick = max(scored) if higher_is_better(m) else min(scored)
            winners[m] = pick[1]
    body = ""
    for i, (r, anchor) in enumerate(zip(reports, anchors, strict=True)):
        cells = f'<td><a href="#{anchor}">{_e(r.name)}</a></td>'
        cells += "".join(f"<td>{_e(_fmt(r.config.get(k)))}</td>" for k in CONFIG_SUMMARY)
        cells += f"<td>{r.series.last_step}</td>"
        cells += "".join(f"<td>{_fmt(_mean_of_last(r.series, k), d)}</td>"
                         for k, _, d in FINAL_STATS)
        for m in metrics:
            last, best = _metric_cells(r, m)
            mark = ' class="win"' if winners.get(m) == i else ""
            cells += f"<td{mark}>{best}</td><td>{last}</td>"
        body += f"<tr>{cells}</tr>"
    note = ("Losses and D statistics are means over each run's last 10% of logged steps. "
            "Highlighted: the best value of each metric across runs.")
    return (f'<section id="comparison"><h2>Comparison</h2><div class="scroll">'
            f'<table class="cmp"><tr>{head}</tr>{body}</table></div><p class="dim">{note}</p>'
            "</section>")


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d1d1f;
     background:#f5f5f7}
header{background:#1d1d1f;color:#fff;padding:18px 28px}
header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#bbb;font-size:13px}
main{padding:12px 28px 40px;max-width:1400px}
section{background:#fff;border-radius:10px;padding:10px 22px 22px;margin:18px 0;
        box-shadow:0 1px 3px rgba(0,0,0,.08)}
h2{font-size:19px;border-bottom:1px solid #e5e5e5;padding-bottom:6px}
h3{font-size:15px;margin:18px 0 6px}
nav a{margin-right:14px}
table{border-collapse:collapse;font-size:13px}
th,td{padding:3px 10px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
table.kv th{font-weight:600;color:#333}
table.cmp td,table.cmp th{white-space:nowrap}
table.config{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
td.win{background:#d9f2d9;font-weight:600}
.cols{display:flex;gap:40px;flex-wrap:wrap}
.scroll{overflow-x:auto}
.dim{color:#777;font-weight:normal}
.missing{color:#a33}
img{max-width:100%;height:auto;display:block;border:1px solid #ddd;border-radius:4px}
img.grid{image-rendering:pixelated;width:min(100%,640px)}
img.evolution{image-rendering:pixelated}
"""


def render_html(reports: list[RunReport], title: str | None = None) -> str:
    anchors = [f"run-{i + 1}" for i in range(len(reports))]
    title = title or ("gan-zoo report: " + ", ".join(r.name for r in reports))
    made = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    parts = []
    if len(reports) > 1:
        nav = "".join(f'<a href="#{a}">{_e(r.name)}</a>' for r, a in zip(reports, anchors,
                                                                        strict=True))
        parts.append(f"<nav>Runs: {nav}</nav>")
        parts.append(_comparison(reports, anchors))
        series = [r.series for r in reports if r.series.train or r.series.evals]
        if series:
            overlay = render_curves(series, title=f"{len(series)} runs overlaid (colour = run)")
            parts.append(f'<section id="overlay"><h2>Curves overlaid</h2>'
                         f'{_img(overlay, "curves of all runs overlaid", "curves")}</section>')
    parts += [_run_section(r, a) for r, a in zip(reports, anchors, strict=True)]
    from .. import __version__

    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<link rel="icon" href="data:,">
<style>{CSS}</style>
</head>
<body>
<header><h1>{_e(title)}</h1><p>{len(reports)} run(s) · made {made} by gan-zoo {__version__}
· self-contained: every picture is embedded</p></header>
<main>
{"".join(parts)}
</main>
</body>
</html>
"""


def build_report(runs: list[str | os.PathLike], out: str | os.PathLike = "report.html",
                 title: str | None = None, warn: Callable[[str], None] | None = None) -> Path:
    """Write the HTML report of `runs` to `out` and return its path. What a run's folder held
    but the page leaves out (bad metrics lines, unsafe pictures) is on the page and passed to
    `warn`, one line each."""
    if not runs:
        raise UsageError("give at least one run directory")
    if not os.fspath(out):
        raise UsageError("--out is empty; give a file name such as report.html")
    paths = [Path(p) for p in runs]
    out = Path(out)
    try:
        out_is_dir = out.is_dir()
    except OSError as exc:  # a name too long for the file system
        raise UsageError(f"cannot write --out {shown(str(out))}: {exc.strerror or exc}") from None
    if out_is_dir:
        raise UsageError(f"--out {shown(str(out))} is a folder; give a file name such as "
                         "report.html")
    reports = []
    try:
        names = _unique_names(paths)
        for p, n in zip(paths, names, strict=True):
            reports.append(collect(p, n))
    except OSError as exc:  # a name too long, a folder that cannot be listed
        where = shown(str(exc.filename)) if exc.filename else "a run"
        raise UsageError(f"cannot read {where}: {exc.strerror or exc}") from None
    for r in reports:
        for note in r.notes if warn else ():
            warn(safe_message(f"warning: run {shown(r.name)}: {note}"))
    text = render_html(reports, title)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(out, text.encode("utf-8"))
    except OSError as exc:
        raise GanZooError(f"cannot write {shown(str(out))}: {exc.strerror or exc}") from None
    return out


@click.command("report")
@click.argument("runs", nargs=-1, required=True, type=click.Path())
@click.option("--out", type=click.Path(), default="report.html", show_default=True,
              help="HTML file to write (self-contained: images embedded).")
@click.option("--title", help="Page title (default: the run names).")
def report_command(runs: tuple[str, ...], out: str, title: str | None) -> None:
    """Write one self-contained HTML page about runs: config, metrics, curves and samples;
    with several runs, a comparison table and the curves overlaid.

    What a run folder holds but the page cannot show is left out with a warning, here and on
    the page: lines of metrics.jsonl that are not a record with a whole-number step, sample
    grids that are not a PNG, over 25 megapixels or 64 MB, and anything that is not a regular
    file (a FIFO is never opened)."""
    path = build_report(list(runs), out, title, warn=lambda m: click.echo(m, err=True))
    click.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {len(runs)} run(s))")
