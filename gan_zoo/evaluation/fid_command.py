"""`ganzoo fid`: FID (and KID) of a run or checkpoint against a data folder, or of two folders.

    ganzoo fid runs/x                       # vs the run's own training data, N=1000
    ganzoo fid runs/x --best --data faces --n 5000 --kid --json
    ganzoo fid samples/ faces/              # two image folders

Samples stream from the generator straight into the feature extractor; reference features
are cached by content (see gan_zoo.evaluation.core). The result is printed and appended to
the run's metrics.jsonl as an ``"event": "fid"`` record.

It is `ganzoo eval --metric fid [--metric kid]` (gan_zoo.evaluation.eval_command, the shared machinery)
with fid's defaults and its own output.

Only a known FID Inception export is loaded (TorchScript runs code when loaded); --trust-weights,
on this command line only, lets another file through (gan_zoo.evaluation.weights).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import click

from ..util.textsafe import escape
from .eval_command import (
    RECORD_KEYS,
    build_metrics,
    check_conditional,
    check_folder_mode,
    check_per_class,
    finish,
    inception_record,
    open_target,
    per_class_part,
    shared_options,
)
from .weights import MODES, find_weights, read_weights


@click.command("fid")
@click.option("-n", "--n", "n", type=click.IntRange(2, 1_000_000), default=None,
              help="Generated samples (default 1000; folder mode: every image). Always report N.")
@click.option("--mode", type=click.Choice(MODES), default="clean", show_default=True,
              help="clean-fid preprocessing mode.")
@click.option("--kid", is_flag=True, help="Also compute KID.")
@shared_options
def fid(target: str, other: str | None, data: str | None, n: int | None, mode: str, kid: bool,
        as_json: bool, best: bool, no_ema: bool, inception_weights: str | None,
        trust_weights: bool, max_real: int | None, seed: int, batch_size: int,
        workers: int | None, precision: str, device: str, no_log: bool, per_class: bool) -> None:
    """FID of a run/checkpoint vs image folder (or its training data), or of two folders."""
    started = (time.perf_counter(), time.process_time())
    # First, and before importing PyTorch (seconds): with no weights, or weights that are not
    # a known export (and no --trust-weights), this fails at once. The extractor checks again
    # the bytes it loads; this early read only makes the refusal fast.
    weights = find_weights(inception_weights)
    read_weights(weights, trust_weights)
    from . import evaluate

    check_folder_mode(other, best, no_ema, data)
    check_per_class(per_class, other)
    flags = {"--mode": ("mode", mode), "--inception-weights": ("weights", str(weights.path)),
             "--max-real": ("max_real", max_real),
             "--n": ("n", n if n is not None else (1_000_000 if other is not None else 1000))}
    metrics = build_metrics(["fid", "kid"] if kid else ["fid"], {}, flags)
    echo = (lambda m: None) if as_json else (lambda m: click.echo(m, err=True))
    tgt = open_target(target, other, command="fid", data=data, best=best, no_ema=no_ema,
                      device=device, seed=seed, batch_size=batch_size, workers=workers, log=echo,
                      trust_weights=trust_weights, precision=precision)
    check_conditional(tgt, per_class)
    values = evaluate(metrics, tgt.context, taken=RECORD_KEYS)
    part, per_class_table = per_class_part(tgt, metrics, per_class)
    record: dict[str, Any] = {**tgt.record, **values, **part, **inception_record(tgt.context)}
    logged = finish(tgt, record, "fid", no_log, started)
    if as_json:
        click.echo(json.dumps(record))
        return
    click.echo(f"FID {values['fid']:.4f}  (N={values['fid_n']} generated vs "
               f"{values['fid_n_real']} real; mode {mode}; {record['features_precision']}; "
               f"{escape(os.path.basename(weights.path))})")
    if kid:
        click.echo(f"KID {values['kid']:.6f} ± {values['kid_std']:.6f}  (N={values['kid_n']})")
    if per_class_table:
        click.echo("per class (samples of each class vs its real images):\n" + per_class_table)
    echo(f"{time.perf_counter() - started[0]:.1f}s"
         + (f"; appended to {tgt.run.metrics_path}" if logged and tgt.run else ""))
