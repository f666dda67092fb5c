"""Offline quality numbers for finished runs: coverage (with density, precision, recall) and the
near-duplicate rate, in the random-conv feature space, which needs no downloaded weights.

    OMP_NUM_THREADS=1 python examples/recipes/evaluate_runs.py --data ../shared/data/faces128 \
        --n 1000 runs/recipes/*/face-*

Each run's latest checkpoint is sampled (EMA weights where the run kept them) and compared with
the training images decoded at the generator's resolution. Prints one JSON line per run.
"""

from __future__ import annotations

import argparse
import json

import torch

from gan_zoo import api
from gan_zoo.data import load_dataset
from gan_zoo.evaluation import ArraySource, EvalContext, build_metric, evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--n", type=int, default=1000, help="samples (and real images) per run")
    parser.add_argument("runs", nargs="+")
    args = parser.parse_args()
    torch.set_num_threads(1)
    references: dict[int, ArraySource] = {}
    for run in args.runs:
        generator, meta = api.load_generator(run)
        res = generator.resolution
        if res not in references:
            references[res] = ArraySource(load_dataset(args.data, res).images, f"{args.data}@{res}")
        metrics = [build_metric("coverage", {"n": args.n, "max_real": args.n}),
                   build_metric("dup_rate", {"n": min(args.n, 500)})]
        context = EvalContext(generator, references[res], seed=0, cache=None)
        result = evaluate(metrics, context)
        print(json.dumps({"run": run, "step": meta["step"],
                          **{k: round(v, 4) for k, v in result.items()}}), flush=True)


if __name__ == "__main__":
    main()
