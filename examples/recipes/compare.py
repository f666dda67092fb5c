"""Run several recipes for the same CPU time each on one image folder and draw the evidence.

    OMP_NUM_THREADS=1 python examples/recipes/compare.py --data ../shared/data/faces128 \
        --cpu-seconds 150 --width 32 --out runs/recipes --images docs/images

Every recipe runs at conv32 (``--arch conv32`` retargets the aircraft network) with the given
width, so the comparison is about the training recipe, not the network's size. The number of
steps is set after a few calibration steps so that each run gets about the same CPU time, which
keeps progress-based schedules (the noise staircase) correct. Writes, per recipe, its run
directory and ``recipes-<name>.png`` (final sample grid, EMA weights where the recipe uses
them), then ``recipes-curves.png`` (D and G losses) and ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from gan_zoo import api
from gan_zoo.data import load_dataset
from gan_zoo.training.recipes import available, start_values
from gan_zoo.training.trainer import Callbacks, Trainer

CALIBRATION_STEPS = 4


def run_recipe(name: str, data, args: argparse.Namespace) -> dict:
    values = start_values(None, name, "conv32")
    values.update(arch="conv32", steps=100_000, log_every=5, checkpoint_every=100_000,
                  sample_every=100_000, seed=args.seed)
    values.pop("epochs", None)
    values["options"] = {**values.get("options", {})}
    values["options"]["conv32"] = {**values["options"].get("conv32", {}), "width": args.width}
    start = {"cpu": 0.0}

    def calibrate(trainer: Trainer, stats: dict) -> None:
        if trainer.step == 1:
            start["cpu"] = time.process_time()  # the first step pays one-time costs
        elif trainer.step == CALIBRATION_STEPS:
            per_step = (time.process_time() - start["cpu"]) / (CALIBRATION_STEPS - 1)
            trainer.total_steps = max(CALIBRATION_STEPS + 1, int(args.cpu_seconds / per_step))
            trainer.config = trainer.config.model_copy(
                update={"steps": trainer.total_steps, "sample_every": trainer.total_steps})
            trainer.run.write_config(trainer.config.to_toml())

    out = Path(args.out) / name
    if out.exists():
        shutil.rmtree(out)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = api.train(values, out=out, data=data, callbacks=Callbacks(on_step=[calibrate]))
    return {"recipe": name, "steps": result.step, "cpu_seconds": round(time.process_time() - cpu0, 1),
            "wall_seconds": round(time.perf_counter() - wall0, 1),
            "batch_size": result.trainer.config.batch_size,
            "images_seen": result.step * result.trainer.config.batch_size,
            "last": result.last, "run": str(out)}


def smooth(values: list[float], k: int = 9) -> list[float]:
    out = []
    for i in range(len(values)):
        window = values[max(0, i - k + 1): i + 1]
        out.append(sum(window) / len(window))
    return out


def plot_curves(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 4
    n_rows = (len(rows) + cols - 1) // cols
    fig, axes = plt.subplots(n_rows, cols, figsize=(4 * cols, 3 * n_rows), squeeze=False)
    for ax, row in zip(axes.flat, rows, strict=False):
        records = [json.loads(x) for x in (Path(row["run"]) / "metrics.jsonl").read_text()
                   .splitlines() if x.strip()]
        records = [r for r in records if "loss_d" in r]
        steps = [r["step"] for r in records]
        ax.plot(steps, smooth([r["loss_d"] for r in records]), label="D loss")
        ax.plot(steps, smooth([r["loss_g"] for r in records]), label="G loss")
        ax.set_title(row["recipe"], fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(rows):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--cpu-seconds", type=float, default=150)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/recipes")
    parser.add_argument("--images", default="docs/images")
    parser.add_argument("recipes", nargs="*", help="recipe names (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    names = args.recipes or sorted(available())
    data = load_dataset(args.data, 32)
    images = Path(args.images)
    images.mkdir(parents=True, exist_ok=True)
    rows = []
    summary = Path(args.out) / "summary.json"
    for name in names:
        row = run_recipe(name, data, args)
        shutil.copy(Path(row["run"]) / "samples.png", images / f"recipes-{name}.png")
        rows.append(row)
        print(json.dumps(row), flush=True)
        summary.write_text(json.dumps(rows, indent=2))
    plot_curves(rows, images / "recipes-curves.png")


if __name__ == "__main__":
    main()
