"""The Python API end to end: train, load the generator, sample, save, report.

    python examples/api_train_sample.py                       # built-in shapes, ~2 min on 2 cores
    python examples/api_train_sample.py --data ../shared/data/faces128 --steps 1500
    python examples/api_train_sample.py --steps 20 --width 8  # a smoke run in seconds

Writes the run to --out (default runs/api-example), a 16-image grid next to it, and
report.html with the curves and the sample evolution.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gan_zoo import api
from gan_zoo.visual.report import build_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="folder of images (default: the built-in shapes)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--width", type=int, default=32, help="conv32 channel width")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path("runs/api-example"))
    args = parser.parse_args()

    # A config is a dict (or a TrainConfig): the same keys as a TOML config file.
    config = {
        "arch": "conv32",
        "data": args.data,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "sample_every": max(1, args.steps // 6),  # six rows in evolution.png
        "log_every": max(1, args.steps // 100),
        "schedules": ["noise-anneal"],            # instance noise 0.3 -> 0.1 -> 0 by thirds
        "options": {"conv32": {"width": args.width}},
    }

    def progress(step: int, total: int, stats: dict[str, float], elapsed: float) -> None:
        if step % max(1, total // 10) == 0 or step == total:
            print(f"step {step}/{total}  D {stats['loss_d']:.3f}  G {stats['loss_g']:.3f}  "
                  f"D(x) {stats['d_real']:.2f}  D(G(z)) {stats['d_fake']:.2f}  {elapsed:.0f}s")

    result = api.train(config, out=args.out, progress=progress, log=print)
    print(f"trained {result.step} steps in {result.seconds:.0f}s -> {result.run_dir}")

    # Load the generator back (EMA weights when the run kept them) and draw new samples.
    generator, meta = api.load_generator(result.run_dir)
    images = api.sample(generator, 16, seed=123)  # (16, 3, 32, 32) in [-1, 1]
    grid = api.save_images(images, result.run_dir / "api-samples.png", nrow=4)
    print(f"16 new samples from step {meta['step']}: {grid}")

    report = build_report([result.run_dir], result.run_dir / "report.html")
    print(f"report: {report}  (curves: {result.run_dir / 'curves.png'})")


if __name__ == "__main__":
    main()
