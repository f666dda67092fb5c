"""bf16 "no loss of quality" check: the same run (seed, data, steps) in fp32 and bf16.

    python -m benchmarks.quality --steps 250 --out /tmp/quality   # then see the PNGs written

Trains conv64 on the faces (or --data) twice, identical but for --precision, then writes
loss curves of both (benchmarks/quality-bf16-losses.png), their last sample grids side by side
(benchmarks/quality-bf16-samples.png) and, when the evaluation engine is installed, the
offline metrics that need no download (coverage in random-conv features, duplicate rate).
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


def train(precision: str, args: argparse.Namespace) -> tuple[Path, subprocess.Popen]:
    """Start one run (both precisions run at once, each on its own thread budget)."""
    out = args.out / precision
    cmd = [sys.executable, "-m", "gan_zoo", "train", "--arch", args.arch, "--data", str(args.data),
           "--steps", str(args.steps), "--precision", precision, "--seed", "0", "--out", str(out),
           "--sample-every", str(max(1, args.steps // 5)), "--checkpoint-every", str(args.steps), "-q"]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    return out, subprocess.Popen(cmd, env=env)


def losses(run: Path) -> dict[str, list[float]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]
    rows = [r for r in rows if "loss_d" in r]
    return {k: [r[k] for r in rows] for k in ("step", "loss_d", "loss_g", "d_real", "d_fake")}


def offline_metrics(run: Path, args: argparse.Namespace) -> dict[str, float] | str:
    try:
        from gan_zoo import api
        from gan_zoo.data import load_folder
        from gan_zoo.evaluation import ArraySource, EvalContext, build_metric, evaluate
    except ImportError as exc:
        return f"not measured: {exc}"
    G, _ = api.load_generator(run)
    data = load_folder(args.data, G.resolution)
    ctx = EvalContext(generator=G, reference=ArraySource(data.images), cache=None)
    return evaluate([build_metric("coverage", {"n": args.n_eval}),
                     build_metric("dup_rate", {"n": args.n_eval})], ctx)


def plot(runs: dict[str, Path], curves: dict[str, dict[str, list[float]]]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key in zip(axes, ("loss_d", "loss_g"), strict=True):
        for prec, c in curves.items():
            ax.plot(c["step"], c[key], label=prec)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.legend()
    fig.tight_layout()
    loss_png = HERE / "quality-bf16-losses.png"
    fig.savefig(loss_png, dpi=80)
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
    p.add_argument("--out", type=Path, required=True, help="folder for the two runs")
    args = p.parse_args(argv)
    started = {prec: train(prec, args) for prec in ("fp32", "bf16")}
    for prec, (_, proc) in started.items():
        if proc.wait() != 0:
            print(f"error: the {prec} run failed", file=sys.stderr)
            return 1
    runs = {prec: out for prec, (out, _) in started.items()}
    curves = {prec: losses(run) for prec, run in runs.items()}
    summary: dict[str, Any] = {}
    for prec, c in curves.items():
        tail = max(1, len(c["loss_d"]) // 4)  # the last quarter of the run
        summary[prec] = {"loss_d_last_quarter": sum(c["loss_d"][-tail:]) / tail,
                         "loss_g_last_quarter": sum(c["loss_g"][-tail:]) / tail,
                         "metrics": offline_metrics(runs[prec], args)}
    summary["pictures"] = [str(p.relative_to(HERE.parent)) for p in plot(runs, curves)]
    print(json.dumps(summary, indent=1))
    (args.out / "quality.json").write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
