"""Each engine lever's effect, measured in one process as CPU time per training step.

    python -m benchmarks.levers [--arch conv64] [--batch 64] [--rounds 4] [--threads 1]

Wall-clock time is meaningless on a machine whose cores other programs are using; the CPU
time a step consumes (one thread, so no spinning OpenMP workers inflate it) is not, to first
order. Every variant is built once, warmed up, then timed in interleaved rounds (A B C A B C
...). Each variant differs from the engine's defaults in one lever. The reference loop
(benchmarks/reference.py) runs in the same process with DataLoader workers=0 so that its data
loading is counted in the same CPU clock.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch


def unfused_adam(trainer) -> None:
    """Adam as torch builds it by default on CPU (a loop of separate tensor operations)."""
    cfg = trainer.config
    trainer.opt_g = torch.optim.Adam(trainer.G.parameters(), lr=cfg.lr_g,
                                     betas=(cfg.beta1_g, cfg.beta2_g))
    trainer.opt_d = torch.optim.Adam(trainer.D.parameters(), lr=cfg.lr_d,
                                     betas=(cfg.beta1_d, cfg.beta2_d))


def variants(precision: str, with_compile: bool) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {
        f"engine {precision} (defaults)": {"precision": precision},
        "channels_last off": {"precision": precision, "engine": {"channels_last": False}},
        "fused Adam off": {"precision": precision, "patch": unfused_adam},
        # The face seed's joint real+fake D batch (the default until 2026-11-23): one D pass
        # fewer in the D step, one more in the G step with a batch-norm D.
        "d_update=joint": {"precision": precision, "engine": {"d_update": "joint"}},
    }
    if with_compile:
        out["--compile"] = {"precision": precision, "engine": {"compile": True}}
    return out


def measure(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict[str, Any]:
    from benchmarks.reference import ReferenceLoop, endless, make_loader
    from benchmarks.worker import _engine_trainer, count_flops
    from gan_zoo.training.assembly import build

    torch.set_num_threads(args.threads)
    steppers: dict[str, Callable[[], None]] = {}
    base = {"arch": args.arch, "batch": args.batch, "data": args.data, "width": args.width}
    torch.manual_seed(0)
    arch = build("arch", args.arch, {"width": args.width} if args.width else {})
    ref = ReferenceLoop(arch.build_generator(), arch.build_discriminator(),
                        arch.build_generator().latent_dim)
    batches = endless(make_loader(args.data, arch.resolution, args.batch, workers=0))
    steppers["reference (DCGAN example)"] = lambda: ref.step(next(batches))
    for precision in args.precisions:
        for name, v in variants(precision, args.compile).items():
            label = name if name.startswith("engine") else f"{precision}: {name}"
            trainer = _engine_trainer({**base, "precision": v["precision"],
                                       "engine": v.get("engine", {})})
            if "patch" in v:
                v["patch"](trainer)
            steppers[label] = trainer.train_step
    flops: dict[str, float] = {}  # per step, counted once outside the timed rounds
    for label, step in steppers.items():
        if "compile" not in label:  # a compiled graph hides its ops; it is the eager network
            flops[label] = count_flops(step)
    for label, step in steppers.items():  # warm-up (compilation happens here)
        t = time.perf_counter()
        for _ in range(args.warmup):
            step()
        log(f"warm-up {label}: {time.perf_counter() - t:.1f} s")
    cpu: dict[str, list[float]] = {k: [] for k in steppers}
    for r in range(args.rounds):
        for label, step in steppers.items():
            t = time.process_time()
            for _ in range(args.steps):
                step()
            cpu[label].append((time.process_time() - t) / args.steps)
        log(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in cpu.items()))
    ref_s = statistics.median(cpu["reference (DCGAN example)"])
    rows = {k: {"cpu_s_per_step": statistics.median(v), "speedup_vs_reference": ref_s / statistics.median(v),
                "precision": precision_of(k), "rounds": [round(x, 4) for x in v],
                "flops_per_step": flops.get(k) or flops.get(f"engine {precision_of(k)} (defaults)")}
            for k, v in cpu.items()}
    return {"arch": args.arch, "batch": args.batch, "threads": args.threads, "rows": rows}


def precision_of(label: str) -> str:
    """'engine bf16 (defaults)' and 'bf16: ...' are bf16; the reference is fp32."""
    if label.startswith("engine "):
        return label.split()[1]
    return label.split(":")[0] if ":" in label else "fp32"


def table(result: dict[str, Any], peaks: dict[str, float] | None = None) -> list[str]:
    """Markdown rows; `peaks` (GFLOP/s per precision at the levers' thread count, from the
    roofline) adds each variant's FLOP rate as a % of the convolution peak in its precision."""
    from benchmarks.roofline import percent

    rows = result["rows"]
    lines = [f"CPU seconds per step, {result['arch']}, batch {result['batch']}, "
             f"{result['threads']} thread(s), median of interleaved rounds. % of peak: FLOPs "
             "per step (FlopCounterMode) / CPU s per step over the convolution peak at the same "
             "thread count in the row's precision.", "",
             "| variant | CPU s/step | speed vs reference | effect of the lever | GFLOP/image "
             "| % of peak |", "|---|---|---|---|---|---|"]
    defaults = {k.split()[1]: v for k, v in rows.items() if k.endswith("(defaults)")}
    for name, r in rows.items():
        effect = ""
        prec = name.split(":")[0] if ":" in name else None
        if prec in defaults and "d_update" in name:
            effect = f"{defaults[prec]['cpu_s_per_step'] / r['cpu_s_per_step']:.2f}× the defaults' speed"
        elif prec in defaults:  # the lever switched off (or --compile on) against the defaults
            ratio = r["cpu_s_per_step"] / defaults[prec]["cpu_s_per_step"]
            effect = f"defaults are {ratio:.2f}× faster"
            if "compile" in name:
                effect = f"--compile is {1 / ratio:.2f}× the defaults' speed"
        flops = r.get("flops_per_step")
        per_image = "–" if not flops else f"{flops / result['batch'] / 1e9:.2f}"
        pct = percent(flops and flops / r["cpu_s_per_step"], (peaks or {}).get(r.get("precision", "")))
        lines.append(f"| {name} | {r['cpu_s_per_step']:.3f} | {r['speedup_vs_reference']:.2f}× | {effect} "
                     f"| {per_image} | {pct} |")
    return lines


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    from benchmarks.__main__ import FACES

    p = argparse.ArgumentParser(prog="python -m benchmarks.levers", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="conv64")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--data", default=str(FACES))
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--steps", type=int, default=2, help="steps per variant per round")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    p.add_argument("--compile", action="store_true", help="also measure --compile (slow to build)")
    p.add_argument("--json", help="write the result here too")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from benchmarks import roofline

    args = parse(argv)
    result = measure(args, lambda m: print(m, file=sys.stderr, flush=True))
    peaks = roofline.measure("cpu", args.threads, "quick")["conv_peak"]  # for the % of peak
    print("\n".join(table(result, peaks)))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
