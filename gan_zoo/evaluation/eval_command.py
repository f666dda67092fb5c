"""`ganzoo eval`: any registered metric on a run, a checkpoint or a folder of samples.

    ganzoo eval runs/x --metric coverage --metric dup_rate     # vs the run's training data
    ganzoo eval runs/x --best --metric fid --n 5000 -o fid.mode=legacy_pytorch --json
    ganzoo eval samples/ faces/ --metric coverage               # two image folders

The metrics are the plugins `--eval-every` runs during training (plugins/metrics.py and any
installed plugin's), built by name with their options validated, evaluated on one EvalContext
(gan_zoo.evaluation): samples stream from the generator once per feature space and reference
features come from the cache. The result is printed and appended to the run's metrics.jsonl as
an ``"event": "eval-command"`` record -- not ``"eval"``, which is training's own evaluation
that a resumed run reads back for its best value and patience. `ganzoo fid` is this machinery
with fid (and kid) and its own output (fid_command.py).

Trust in an Inception file that is not a known export comes only from this command line's
--trust-weights (gan_zoo.evaluation.weights); `-o fid.weights=FILE` chooses a file, it cannot
trust it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import UsageError
from ..util.textsafe import escape, shown
from .weights import ENV_VAR, TRUST_FLAG

if TYPE_CHECKING:
    from ..interfaces import Metric
    from ..training.rundir import RunDir
    from . import EvalContext

EVENT = "eval-command"
# Keys the commands write beside the metrics' values: a metric returning one is an error,
# never a silently replaced step or checkpoint name.
RECORD_KEYS = frozenset({
    "event", "step", "checkpoint", "data", "ema", "samples", "metrics", "options", "mode",
    "weights", "weights_sha1", "weights_sha256", "weights_verified", "features_precision",
    "reference_cached", "per_class", "classes_evaluated",
    "seconds", "cpu_seconds"})


def _is_run_or_checkpoint(path: Path) -> bool:
    from ..training.rundir import RunDir

    if path.is_file():
        return True
    return path.is_dir() and (RunDir(path).config_path.exists() or RunDir(path).checkpoints_dir.is_dir())


def _run_of(checkpoint: Path) -> RunDir | None:
    """The run directory a checkpoint file belongs to (RUN/checkpoints/x.safetensors)."""
    from ..training.rundir import RunDir

    run = RunDir(checkpoint.parent.parent)
    return run if checkpoint.parent.name == "checkpoints" and run.config_path.exists() else None


def check_folder_mode(other: str | None, best: bool, no_ema: bool, data: str | None) -> None:
    if other is not None and (best or no_ema or data):
        raise UsageError("with two folders, --best/--no-ema/--data do not apply")


@dataclass
class Target:
    """What is evaluated: the context metrics run on, what the record says about it, and the
    run whose metrics.jsonl gets the result (None for a loose checkpoint or two folders)."""

    context: EvalContext
    record: dict[str, Any]
    run: RunDir | None
    data: Any = None  # the reference ImageArray (its labels serve --per-class)


def open_target(target: str, other: str | None, *, command: str, data: str | None, best: bool,
                no_ema: bool, device: str, seed: int, batch_size: int, workers: int | None,
                log: Callable[[str], None], trust_weights: bool, precision: str = "auto") -> Target:
    """TARGET (a run or checkpoint file) against --data or its training data, or the folder
    TARGET against the folder OTHER."""
    from .. import api
    from ..data.folders import load_dataset
    from ..training.trainer import resolve_device
    from . import ArraySource, EvalContext, FolderSource

    check_folder_mode(other, best, no_ema, data)
    dev = resolve_device(device)
    common = {"device": dev, "seed": seed, "batch_size": batch_size, "workers": workers,
              "log": log, "trust_weights": trust_weights, "precision": precision}
    if other is not None:
        context = EvalContext(None, FolderSource(other), samples=FolderSource(target), **common)
        return Target(context, {"samples": str(target), "data": str(other)}, None)
    if not _is_run_or_checkpoint(Path(target)):
        raise UsageError(
            f"{shown(target)} is neither a run directory nor a checkpoint file; to compare two "
            f"image folders give both: ganzoo {command} DIR_A DIR_B")
    generator, meta = api.load_generator(target, "best" if best else "latest", dev, not no_ema)
    ckpt_path = Path(meta["path"])
    ref = data if data is not None else (meta.get("config") or {}).get("data")
    array = load_dataset(ref, generator.resolution)
    context = EvalContext(generator, ArraySource(array.images, array.source), **common)
    record = {"checkpoint": str(ckpt_path), "step": meta["step"], "data": array.source,
              "ema": meta.get("has_ema", False) and not no_ema}
    return Target(context, record, _run_of(ckpt_path), array)


def build_metrics(names: Sequence[str], assignments: dict[str, dict[str, Any]],
                  flags: dict[str, tuple[str, Any]], defaults: dict[str, Any] | None = None
                  ) -> list[Metric]:
    """Each metric by name (an unknown one: did-you-mean, exit 2) with its options validated
    by its own Options model (exit 2). A metric's options are, in order of precedence, its
    `-o NAME.KEY=VALUE` (``assignments``), the command's flags that map to an option field
    (``flags``: {"--n": ("n", 20)}; a flag given that no chosen metric has is an error), then
    quiet ``defaults`` ({"n": 24}) for those that have the field."""
    from ..plugins import get_registry
    from . import build_metric

    registry = get_registry()
    classes = {name: registry.get("metric", name) for name in dict.fromkeys(names)}
    listed = ", ".join(classes)
    for component in assignments:
        if component not in classes:
            raise UsageError(f"-o {shown(component)}.…: {shown(component)} is not one of the "
                             f"metrics named by --metric ({listed})")
    given = {flag: fv for flag, fv in flags.items() if fv[1] is not None}
    for flag, (field, _) in given.items():
        if not any(field in cls.Options.model_fields for cls in classes.values()):
            raise UsageError(f"{flag}: none of the metrics ({listed}) has a `{field}` option "
                             f"(`ganzoo show NAME` lists a metric's options)")
    metrics = []
    for name, cls in classes.items():
        fields = cls.Options.model_fields
        values = {k: v for k, v in (defaults or {}).items() if k in fields}
        values.update({field: value for field, value in given.values() if field in fields})
        values.update(assignments.get(name, {}))
        metrics.append(build_metric(name, values))
    return metrics


def inception_record(context: EvalContext) -> dict[str, Any]:
    """Which Inception file the metrics used, its hashes and how it was trusted ({} if none)."""
    from .features import InceptionExtractor

    for fx in context.extractors_used():
        if isinstance(fx, InceptionExtractor):
            return {"mode": fx.mode, "weights": str(fx.weights.path), "weights_sha1": fx.sha1,
                    "weights_sha256": fx.sha256,
                    "weights_verified": fx.verified or f"unknown file, trusted by {TRUST_FLAG}",
                    "features_precision": fx.precision}
    return {}


def finish(target: Target, record: dict[str, Any], event: str, no_log: bool,
           started: tuple[float, float]) -> bool:
    """Time the evaluation, append it to the run's metrics (unless --no-log); True if logged."""
    record.update({"reference_cached": target.context.reference_cached(),
                   "seconds": round(time.perf_counter() - started[0], 2),
                   "cpu_seconds": round(time.process_time() - started[1], 2)})
    if target.run is None or no_log:
        return False
    target.run.log({"step": record["step"], "event": event, **record})
    return True


def per_class_part(tgt: Target, metrics: list[Metric], per_class: bool) -> tuple[dict, str]:
    """--per-class: each metric per class (gan_zoo.evaluation.per_class), as the record's part
    and a printable table; ({}, "") without the flag."""
    if not per_class:
        return {}, ""
    from .per_class import evaluate_per_class, summary, table

    names = [m.name for m in metrics]
    results = evaluate_per_class(metrics, tgt.context, tgt.data,
                                 None)
    part = summary(results, names)
    means = "; ".join(f"mean {m} over {part['classes_evaluated']} classes "
                      f"{part[f'{m}_class_mean']:.4g}" for m in names if f"{m}_class_mean" in part)
    return part, table(results, names) + ("\n" + means if means else "")


def check_per_class(per_class: bool, other: str | None) -> None:
    if per_class and other is not None:
        raise UsageError("--per-class evaluates a conditional run or checkpoint, not two folders")


def check_conditional(tgt: Target, per_class: bool) -> None:
    """--per-class on an unconditional generator: one message (before any evaluation)."""
    if per_class and not getattr(tgt.context.generator, "num_classes", 0):
        raise UsageError("--per-class needs a conditional generator (trained with "
                         "--conditional); this one has no classes")


def sizes(values: dict[str, Any], name: str) -> str:
    """"(N=20 generated vs 24 real)" from a metric's NAME_n / NAME_n_real extras."""
    n, n_real = values.get(f"{name}_n"), values.get(f"{name}_n_real")
    if n is None:
        return ""
    return f"  (N={n} generated" + (f" vs {n_real} real)" if n_real is not None else ")")


def shared_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The options `ganzoo eval` and `ganzoo fid` share (what to evaluate and how)."""
    for option in reversed([
        click.argument("target", type=click.Path()),
        click.argument("other", type=click.Path(), required=False),
        click.option("--data", type=click.Path(), help="Reference image folder (default: the "
                     "run's training data), decoded at the generator's resolution as for "
                     "training."),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON line."),
        click.option("--best", is_flag=True,
                     help="Use the run's best checkpoint instead of the latest."),
        click.option("--no-ema", is_flag=True,
                     help="Use the raw generator weights, not the EMA."),
        click.option("--inception-weights", type=click.Path(), default=None,
                     help=f"Inception TorchScript file (or set {ENV_VAR})."),
        click.option(TRUST_FLAG, "trust_weights", is_flag=True,
                     help="Load an Inception file that is not a known FID export (TorchScript "
                     "can run code when loaded): only for a file you made or checked."),
        click.option("--max-real", type=click.IntRange(2), default=None,
                     help="Use at most this many reference images (the first ones)."),
        click.option("--seed", type=int, default=0, show_default=True,
                     help="Latent noise seed."),
        click.option("--batch-size", type=click.IntRange(1, 4096), default=50,
                     show_default=True),
        click.option("--workers", type=click.IntRange(1, 64), default=None,
                     help="Resize threads (default: half the cores, at most 4)."),
        click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto",
                     show_default=True,
                     help="Inception features' precision: auto is bf16 where the CPU or GPU has "
                     "bf16 units (FID within 0.5% of fp32), else fp32."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
                     show_default=True),
        click.option("--no-log", is_flag=True,
                     help="Do not append the result to the run's metrics."),
        click.option("--per-class", is_flag=True,
                     help="Conditional runs: also each metric per class, samples of a class "
                     "against the real images of that class (intra-class FID); classes with "
                     "fewer than 50 real images are skipped. States N per class."),
    ]):
        func = option(func)
    return func


@click.command("eval")
@click.option("-m", "--metric", "metric_names", multiple=True, required=True, metavar="NAME",
              help="Metric to compute (`ganzoo list metric`); repeatable.")
@click.option("-o", "--option", "option_items", multiple=True, metavar="METRIC.KEY=VALUE",
              help="Metric option, e.g. -o coverage.k=3; repeatable (`ganzoo show NAME`).")
@click.option("-n", "--n", "n", type=click.IntRange(2, 1_000_000), default=None,
              help="Generated samples for every metric with an `n` option (default: each "
              "metric's own; folder mode: every image). Always report N.")
@shared_options
def eval_command(target: str, other: str | None, metric_names: tuple[str, ...],
                 option_items: tuple[str, ...], n: int | None, data: str | None, as_json: bool,
                 best: bool, no_ema: bool, inception_weights: str | None, trust_weights: bool,
                 max_real: int | None, seed: int, batch_size: int, workers: int | None,
                 precision: str, device: str, no_log: bool, per_class: bool) -> None:
    """Any metric of a run/checkpoint vs image folder (or its training data), or of two folders."""
    started = (time.perf_counter(), time.process_time())
    from ..options import parse_assignments
    from . import FolderSource, evaluate

    check_folder_mode(other, best, no_ema, data)
    check_per_class(per_class, other)
    # Everything the user typed is checked before a generator or a dataset is loaded; in
    # folder mode the sample count is known from a scan of file names.
    defaults = {"n": len(FolderSource(target))} if other is not None else {}
    flags = {"--n": ("n", n), "--max-real": ("max_real", max_real),
             "--inception-weights": ("weights", inception_weights)}
    metrics = build_metrics(metric_names, parse_assignments(option_items), flags, defaults)
    echo = (lambda m: None) if as_json else (lambda m: click.echo(escape(m), err=True))
    tgt = open_target(target, other, command="eval", data=data, best=best, no_ema=no_ema,
                      device=device, seed=seed, batch_size=batch_size, workers=workers, log=echo,
                      trust_weights=trust_weights, precision=precision)
    check_conditional(tgt, per_class)
    record: dict[str, Any] = dict(tgt.record)
    record["metrics"] = [m.name for m in metrics]
    values = evaluate(metrics, tgt.context, taken=RECORD_KEYS)
    record.update(values)
    part, per_class_table = per_class_part(tgt, metrics, per_class)
    record.update(part)
    record["options"] = {m.name: m.options.model_dump(mode="json") for m in metrics}
    record.update(inception_record(tgt.context))
    logged = finish(tgt, record, EVENT, no_log, started)
    if as_json:
        click.echo(json.dumps(record))
        return
    for m in metrics:
        click.echo(f"{escape(m.name)} {values[m.name]:.6g}{sizes(values, m.name)}")
    if per_class_table:
        click.echo(per_class_table)
    echo(f"{time.perf_counter() - started[0]:.1f}s"
         + (f"; appended to {tgt.run.metrics_path}" if logged and tgt.run else ""))
