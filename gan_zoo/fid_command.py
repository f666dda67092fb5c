"""`ganzoo fid`: FID (and KID) of a run or checkpoint against a data folder, or of two folders.

    ganzoo fid runs/x                       # vs the run's own training data, N=1000
    ganzoo fid runs/x --best --data faces --n 5000 --kid --json
    ganzoo fid samples/ faces/              # two image folders

Samples stream from the generator straight into the feature extractor; reference features
are cached by content (see gan_zoo.evaluation.core). The result is printed and appended to
the run's metrics.jsonl as an ``"event": "fid"`` record.

Only a known FID Inception export is loaded (TorchScript runs code when loaded); --trust-weights,
on this command line only, lets another file through (gan_zoo.evaluation.weights).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .errors import UsageError
from .evaluation.weights import ENV_VAR, MODES, TRUST_FLAG, find_weights, read_weights
from .textsafe import escape

if TYPE_CHECKING:
    from .rundir import RunDir


def _is_run_or_checkpoint(path: Path) -> bool:
    from .rundir import RunDir

    if path.is_file():
        return True
    return path.is_dir() and (RunDir(path).config_path.exists() or RunDir(path).checkpoints_dir.is_dir())


def _run_of(checkpoint: Path) -> RunDir | None:
    """The run directory a checkpoint file belongs to (RUN/checkpoints/x.safetensors)."""
    from .rundir import RunDir

    run = RunDir(checkpoint.parent.parent)
    return run if checkpoint.parent.name == "checkpoints" and run.config_path.exists() else None


@click.command("fid")
@click.argument("target", type=click.Path())
@click.argument("other", type=click.Path(), required=False)
@click.option("--data", type=click.Path(), help="Reference image folder (default: the run's "
              "training data), decoded at the generator's resolution as for training.")
@click.option("-n", "--n", "n", type=click.IntRange(2, 1_000_000), default=None,
              help="Generated samples (default 1000; folder mode: every image). Always report N.")
@click.option("--mode", type=click.Choice(MODES), default="clean", show_default=True,
              help="clean-fid preprocessing mode.")
@click.option("--kid", is_flag=True, help="Also compute KID.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line.")
@click.option("--best", is_flag=True, help="Use the run's best checkpoint instead of the latest.")
@click.option("--no-ema", is_flag=True, help="Use the raw generator weights, not the EMA.")
@click.option("--inception-weights", type=click.Path(), default=None,
              help=f"Inception TorchScript file (or set {ENV_VAR}).")
@click.option(TRUST_FLAG, "trust_weights", is_flag=True,
              help="Load an Inception file that is not a known FID export (TorchScript can run "
              "code when loaded): only for a file you made or checked.")
@click.option("--max-real", type=click.IntRange(2), default=None,
              help="Use at most this many reference images (the first ones).")
@click.option("--seed", type=int, default=0, show_default=True, help="Latent noise seed.")
@click.option("--batch-size", type=click.IntRange(1, 4096), default=50, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Resize threads (default: half the cores, at most 4).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
              show_default=True)
@click.option("--no-log", is_flag=True, help="Do not append the result to the run's metrics.")
def fid(target: str, other: str | None, data: str | None, n: int | None, mode: str, kid: bool,
        as_json: bool, best: bool, no_ema: bool, inception_weights: str | None,
        trust_weights: bool, max_real: int | None, seed: int, batch_size: int,
        workers: int | None, device: str, no_log: bool) -> None:
    """FID of a run/checkpoint vs image folder (or its training data), or of two folders."""
    started, started_cpu = time.perf_counter(), time.process_time()
    # First, and before importing PyTorch (seconds): with no weights, or weights that are not
    # a known export (and no --trust-weights), this fails at once. The extractor checks again
    # the bytes it loads; this early read only makes the refusal fast.
    weights = find_weights(inception_weights)
    read_weights(weights, trust_weights)
    from . import api
    from .data import load_dataset
    from .evaluation import ArraySource, EvalContext, FolderSource, build_metric, evaluate
    from .evaluation.features import InceptionExtractor
    from .trainer import resolve_device

    dev = resolve_device(device)
    echo = (lambda m: None) if as_json else (lambda m: click.echo(m, err=True))
    tpath = Path(target)
    run: RunDir | None = None
    record: dict[str, Any] = {}
    if other is not None:
        if best or no_ema or data:
            raise UsageError("with two folders, --best/--no-ema/--data do not apply")
        samples, reference = FolderSource(target), FolderSource(other)
        context = EvalContext(None, reference, samples=samples, device=dev, seed=seed,
                              batch_size=batch_size, workers=workers, log=echo,
                              trust_weights=trust_weights)
        record.update({"samples": str(tpath), "data": str(other)})
    else:
        if not _is_run_or_checkpoint(tpath):
            raise UsageError(
                f"{target!r} is neither a run directory nor a checkpoint file; to compare two "
                "image folders give both: ganzoo fid DIR_A DIR_B")
        generator, meta = api.load_generator(target, "best" if best else "latest", dev, not no_ema)
        ckpt_path = Path(meta["path"])
        run = _run_of(ckpt_path)
        ref = data if data is not None else (meta.get("config") or {}).get("data")
        array = load_dataset(ref, generator.resolution)
        context = EvalContext(generator, ArraySource(array.images, array.source), device=dev,
                              seed=seed, batch_size=batch_size, workers=workers, log=echo,
                              trust_weights=trust_weights)
        record.update({"checkpoint": str(ckpt_path), "step": meta["step"], "data": array.source,
                       "ema": meta.get("has_ema", False) and not no_ema})
    options = {"mode": mode, "weights": str(weights.path), "max_real": max_real,
               "n": n if n is not None else (1_000_000 if other is not None else 1000)}
    metrics = [build_metric("fid", options)]
    if kid:
        metrics.append(build_metric("kid", options))
    values = evaluate(metrics, context)
    fx = context.extractor("inception", mode, str(weights.path))
    assert isinstance(fx, InceptionExtractor)
    record.update(values)
    record.update({"mode": mode, "weights": str(weights.path), "weights_sha1": fx.sha1,
                   "weights_sha256": fx.sha256,
                   "weights_verified": fx.verified or f"unknown file, trusted by {TRUST_FLAG}",
                   "reference_cached": all(s.cached for s in context._real.values()),
                   "seconds": round(time.perf_counter() - started, 2),
                   "cpu_seconds": round(time.process_time() - started_cpu, 2)})
    if run is not None and not no_log:
        run.log({"step": record["step"], "event": "fid", **record})
    if as_json:
        click.echo(json.dumps(record))
        return
    click.echo(f"FID {values['fid']:.4f}  (N={values['fid_n']} generated vs "
               f"{values['fid_n_real']} real; mode {mode}; {escape(os.path.basename(weights.path))})")
    if kid:
        click.echo(f"KID {values['kid']:.6f} ± {values['kid_std']:.6f}  (N={values['kid_n']})")
    echo(f"{time.perf_counter() - started:.1f}s"
         + (f"; appended to {run.metrics_path}" if run is not None and not no_log else ""))
