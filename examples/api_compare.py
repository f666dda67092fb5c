"""Compare training variants with the Python API and put them on one HTML page.

    python examples/api_compare.py --data ../shared/data/faces128 --steps 600
    python examples/api_compare.py --steps 10 --width 8      # a smoke run in seconds

Trains the same conv32 network on the same data with the same seed three ways — the plain
baseline, the face seed's instance-noise annealing plus D dropout, and hinge loss with spectral
norm and DiffAugment — and writes compare.html: a comparison table, the curves overlaid and each
run's samples. With --metric, each run is also evaluated during training (offline metrics such
as coverage or dup_rate need no download).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gan_zoo import api
from gan_zoo.visual.report import build_report

VARIANTS = {
    "baseline": {},
    "noise-dropout": {"schedules": ["noise-anneal"], "options": {"conv32": {"dropout": 0.2}}},
    "hinge-sn-diffaug": {"loss": "hinge", "augment": ["diffaugment"],
                         "options": {"conv32": {"d_norm": "spectral"}}},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="folder of images (default: the built-in shapes)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--metric", help="evaluate this metric 4 times per run, e.g. coverage")
    parser.add_argument("--out", type=Path, default=Path("runs/api-compare"))
    args = parser.parse_args()

    runs = []
    for name, variant in VARIANTS.items():
        options = {"conv32": {"width": args.width, **variant.get("options", {}).get("conv32", {})}}
        config = {"arch": "conv32", "data": args.data, "steps": args.steps,
                  "batch_size": args.batch_size,
                  "seed": 0, "sample_every": max(1, args.steps // 5),
                  "log_every": max(1, args.steps // 100),
                  **{k: v for k, v in variant.items() if k != "options"}, "options": options}
        if args.metric:
            config.update(eval_every=max(1, args.steps // 4), metric=args.metric)
        result = api.train(config, out=args.out / name)
        print(f"{name}: {result.step} steps in {result.seconds:.0f}s, last D loss "
              f"{result.last['loss_d']:.3f}")
        runs.append(result.run_dir)

    page = build_report(runs, args.out / "compare.html", title="gan-zoo: three ways to train conv32")
    print(f"comparison: {page}")


if __name__ == "__main__":
    main()
