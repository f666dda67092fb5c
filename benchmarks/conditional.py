"""Conditional against unconditional on the built-in shapes (labelled by kind): the evidence in
docs/conditional.md.

    ganzoo train --config C.toml --conditional --out runs/cond     # the same config and budget
    ganzoo train --config C.toml --out runs/uncond
    python -m benchmarks.conditional cond=runs/cond uncond=runs/uncond --res 64 --n 1000

For each run's final generator (EMA): FID, KID and coverage over all classes (N samples against
N real shapes), then per class -- a conditional generator's samples of class c against the real
images of class c (intra-class FID, N per class = min(N, the class's images)); an unconditional
generator's samples sorted into classes by a kind classifier trained on the shapes themselves
(benchmarks.shape_kinds), each class's share against the real images of that class. Also the
classifier's verdict: how often a conditional generator draws the class it was asked for, and
the class mix an unconditional one draws. The real-vs-real floor: the first N shapes against
the next N.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.zoo import DOCS, cpu_name


def _metrics(n: int, max_real: int | None = None) -> list[Any]:
    from gan_zoo.evaluation import build_metric

    opts: dict[str, Any] = {"n": n} | ({"max_real": max_real} if max_real else {})
    return [build_metric("fid", opts), build_metric("kid", opts),
            build_metric("coverage", opts)]


def _context(generator: Any, reference: Any, samples: Any = None) -> Any:
    from gan_zoo.evaluation import EvalContext

    return EvalContext(generator, reference, samples=samples, precision="auto",
                       log=lambda m: print(m, flush=True))


def evaluate_run(path: str, data: Any, classifier: Any, n: int) -> dict[str, Any]:
    """Whole-data and per-class metrics of one run, and its classes as the classifier sees them."""
    from benchmarks.shape_kinds import classify
    from gan_zoo import api
    from gan_zoo.evaluation import ArraySource, evaluate
    from gan_zoo.evaluation.per_class import SubsetSource, evaluate_per_class, summary

    G, meta = api.load_generator(path)
    out: dict[str, Any] = {"run": path, "step": meta["step"],
                           "conditional": bool(getattr(G, "num_classes", 0))}
    reference = ArraySource(data.images, "shapes")
    out["all"] = evaluate(_metrics(n, n), _context(G, reference))
    names = list(data.classes)
    labels = np.asarray(data.labels)
    if out["conditional"]:
        per = evaluate_per_class(_metrics(n), _context(G, reference), data, names)
        out["per_class"] = summary(per, ["fid", "kid", "coverage"])["per_class"]
        images = api.sample(G, 300, seed=1, classes=list(range(len(names))))
        asked = torch.arange(300) % len(names)
        seen = classify(classifier, images)
        out["asked_class_drawn"] = float((seen == asked).float().mean())
        out["class_mix"] = torch.bincount(seen, minlength=len(names)).tolist()
        return out
    # Unconditional: draw until each class has n samples (or 6n were drawn), sort by kind.
    images = api.sample(G, 6 * n, seed=1)
    seen = classify(classifier, images).numpy()
    out["class_mix"] = np.bincount(seen[:300], minlength=len(names)).tolist()
    rows = []
    for c, name in enumerate(names):
        mine = images[torch.from_numpy(seen == c)][:n]
        idx = np.flatnonzero(labels == c)
        row: dict[str, Any] = {"class": c, "name": name, "n_real": len(idx)}
        if len(mine) < 50:
            row["skipped"] = f"{len(mine)} samples of this class in {6 * n}"
        else:
            from gan_zoo.data.images import to_uint8

            samples = ArraySource(to_uint8(mine), f"samples of {name}")
            k = min(len(mine), len(idx))
            row.update(evaluate(_metrics(k), _context(None, SubsetSource(data.images, idx, name),
                                                      samples)))
        rows.append(row)
    out["per_class"] = rows
    return out


def real_floor(data: Any, n: int) -> dict[str, float]:
    from gan_zoo.evaluation import ArraySource, evaluate

    ctx = _context(None, ArraySource(data.images[:n], "shapes a"),
                   ArraySource(data.images[n:2 * n], "shapes b"))
    return evaluate(_metrics(n), ctx)


def table(results: dict[str, dict[str, Any]], floor: dict[str, float]) -> str:
    lines = ["| run | FID | KID×10³ | coverage | per-class FID (N) | mean per-class FID | "
             "asked class drawn | class mix of 300 |", "|---|---:|---:|---:|---|---:|---:|---|"]
    for name, r in results.items():
        a = r["all"]
        per = [x for x in r["per_class"] if "fid" in x]
        cells = ", ".join(f"{x['name']} {x['fid']:.1f} ({x['fid_n']})" for x in per)
        mean = f"{np.mean([x['fid'] for x in per]):.1f}" if per else "–"
        asked = f"{r['asked_class_drawn']:.0%}" if "asked_class_drawn" in r else "–"
        lines.append(f"| {name} (step {r['step']}) | {a['fid']:.1f} | {a['kid'] * 1e3:.1f} | "
                     f"{a['coverage']:.2f} | {cells} | {mean} | {asked} | {r['class_mix']} |")
    lines.append(f"| real vs real | {floor['fid']:.1f} | {floor['kid'] * 1e3:.1f} | "
                 f"{floor['coverage']:.2f} | | | | |")
    return "\n".join(lines)


def pictures(run: str, folder: Path, name: str) -> list[Path]:
    """docs/conditional.md's pictures of one run: its class grid (8 columns), a truncation
    strip of the last class (rows PSI 1, 0.7, 0.5, 0.3; the same latents in every row) and a
    walk through 4 latents of that class."""
    from gan_zoo import api
    from gan_zoo.sampling import draw_latents, images_for

    G, _ = api.load_generator(run)
    folder.mkdir(parents=True, exist_ok=True)
    grid = folder / f"conditional-{name}-class-grid.png"
    api.save_images(api.class_grid(G, columns=8, seed=0), grid, nrow=8)
    rows = []
    y = torch.full((8,), G.num_classes - 1, dtype=torch.long)
    for psi in (1.0, 0.7, 0.5, 0.3):
        z = draw_latents(G, 8, psi, torch.Generator().manual_seed(0))
        with torch.no_grad():
            rows.append(images_for(G.eval(), z, psi, y=y).clamp(-1, 1))
    strip = folder / f"conditional-{name}-truncation.png"
    api.save_images(torch.cat(rows), strip, nrow=8)
    walk = api.interpolate(G, 4, folder / f"conditional-{name}-walk.gif",
                           class_=G.num_classes - 1)
    return [grid, strip, walk]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.conditional", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="NAME=RUN")
    p.add_argument("--res", type=int, default=64, choices=(32, 64, 128))
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--out", default="runs/conditional.json")
    p.add_argument("--pictures", metavar="NAME", help="also draw this run's pictures for "
                   "docs/conditional.md into docs/images/")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    from benchmarks.shape_kinds import train_kind_classifier
    from gan_zoo.data.folders import load_builtin

    if args.pictures:
        runs = dict(item.partition("=")[::2] for item in args.runs)
        for path in pictures(runs[args.pictures], DOCS / "images", args.pictures):
            print(f"wrote {path}")
    data = load_builtin(args.res)
    classifier, accuracy = train_kind_classifier(args.res, steps=300)
    print(f"kind classifier: {accuracy:.1%} on held-out shapes", flush=True)
    results = {}
    for item in args.runs:
        name, _, path = item.partition("=")
        results[name] = evaluate_run(path, data, classifier, args.n)
    floor = real_floor(data, args.n)
    text = table(results, floor)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"results": results, "floor": floor,
                                          "classifier_accuracy": accuracy, "cpu": cpu_name(),
                                          "date": time.strftime("%Y-%m-%d"), "n": args.n}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
