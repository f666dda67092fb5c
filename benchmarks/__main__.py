"""Benchmark the gan-zoo engine against the plain-PyTorch reference loop.

    python -m benchmarks --quick          # conv64 targets, sampling, data path: < 3 min
    python -m benchmarks                  # everything: all sizes, levers, scaling, FID, GPU
    python -m benchmarks --smoke --out /tmp/r.md   # seconds; what the test suite runs

Every number comes from a fresh process (benchmarks/worker.py). Engine and reference runs are
interleaved (R E R E ...) so that load from other programs hits both alike, and results are
given as ratios of medians. Results go to benchmarks/RESULTS.md (or --out).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FACES = Path(os.environ.get("GANZOO_FACES", REPO.parent / "shared" / "data" / "faces128"))
HISTORY = Path(__file__).with_name("levers_history.md")


# ---------------------------------------------------------------------------------- running
class Bench:
    def __init__(self, args: argparse.Namespace, data: Path, tmp: Path):
        self.args, self.data, self.tmp = args, data, tmp
        self.log_lines: list[str] = []

    def worker(self, spec: dict[str, Any]) -> dict[str, Any]:
        spec = {"data": str(self.data), "threads": self.args.threads, **spec}
        env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"] or os.cpu_count() or 1)}
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        proc = subprocess.run([sys.executable, "-m", "benchmarks.worker", json.dumps(spec)],
                              cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=self.args.timeout)
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise RuntimeError(f"benchmark worker failed for {spec}: " + " | ".join(tail))
        result = json.loads(lines[-1])
        self.progress(spec, result)
        return result

    def progress(self, spec: dict[str, Any], result: dict[str, Any]) -> None:
        what = " ".join(f"{k}={v}" for k, v in spec.items() if k not in ("data", "kind"))
        rate = result.get("img_per_s")
        msg = f"[{time.strftime('%H:%M:%S')}] {spec['kind']:9s} {what}" + (
            f" -> {rate:.1f} img/s" if isinstance(rate, float) else "")
        print(msg, file=sys.stderr, flush=True)

    def train_specs(self, arch: str, batch: int, variants: dict[str, dict[str, Any]]
                    ) -> dict[str, list[dict[str, Any]]]:
        """Run the reference and each engine variant `repeats` times, interleaved."""
        a = self.args
        base = {"arch": arch, "batch": batch, "steps": a.steps, "warmup": a.warmup,
                "width": a.width, "workers": a.ref_workers}
        runs: dict[str, list[dict[str, Any]]] = {"reference": [], **{k: [] for k in variants}}
        for _ in range(a.repeats):
            runs["reference"].append(self.worker({"kind": "reference", **base}))
            for name, extra in variants.items():
                runs[name].append(self.worker({"kind": "engine", **base, **extra}))
        return runs


def med(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def paired_ratio(runs: list[dict[str, Any]], ref: list[dict[str, Any]]) -> float:
    """Median over rounds of engine/reference images/s measured next to each other."""
    return statistics.median(e["img_per_s"] / r["img_per_s"] for e, r in zip(runs, ref, strict=True))


# ---------------------------------------------------------------------------------- sections
ENGINE_FP32 = {"precision": "fp32"}
ENGINE_BF16 = {"precision": "bf16"}


def train_table(b: Bench, arch: str, batch: int, variants: dict[str, dict[str, Any]],
                targets: dict[str, float] | None = None) -> tuple[list[str], dict[str, Any]]:
    runs = b.train_specs(arch, batch, variants)
    ref = runs["reference"]
    ref_mem = med(ref, "peak_mib")
    rows = ["| loop | images/s | ratio vs reference | target | CPU-time ratio | data wait "
            "| peak memory (MiB) | memory vs reference |", "|---|---|---|---|---|---|---|---|"]
    out: dict[str, Any] = {}
    for name, rs in runs.items():
        ratio = 1.0 if name == "reference" else paired_ratio(rs, ref)
        target = (targets or {}).get(name)
        mark = "" if target is None else (f"≥ {target:.2f}× " + ("✅" if ratio >= target else "❌"))
        mem = med(rs, "peak_mib")
        cpu_ratio = med(ref, "cpu_s_per_image") / med(rs, "cpu_s_per_image")
        rows.append(f"| {name} | {med(rs, 'img_per_s'):.1f} | {ratio:.2f}× | {mark} | {cpu_ratio:.2f}× | "
                    f"{100 * med(rs, 'data_wait_share'):.1f}% | {mem:.0f} | "
                    f"{100 * (mem / ref_mem - 1):+.0f}% |")
        out[name] = {"img_per_s": med(rs, "img_per_s"), "ratio": ratio, "cpu_ratio": cpu_ratio,
                     "data_wait": med(rs, "data_wait_share"), "peak_mib": mem,
                     "all_img_per_s": [round(r["img_per_s"], 2) for r in rs]}
    rows.append("")
    rows.append("Per-round images/s: " + "; ".join(
        f"{k} {v['all_img_per_s']}" for k, v in out.items()))
    return rows, out


def section_targets(b: Bench) -> list[str]:
    a = b.args
    lines = [f"## Targets: {a.arch}, batch {a.batch}, CPU", ""]
    rows, _ = train_table(b, a.arch, a.batch, {"engine fp32": ENGINE_FP32, "engine bf16": ENGINE_BF16},
                          {"engine fp32": 1.15, "engine bf16": 2.0})
    lines += rows
    lines += ["", "Ratios are of images/s measured in adjacent processes, median over rounds. "
              "CPU-time ratio: reference CPU seconds per image / engine's (process and DataLoader "
              "workers), which load from other programs changes much less than wall-clock time. "
              "Data wait target: < 5% of step time. Memory target: ≤ reference + 10% "
              "(proportional set size of the process and its DataLoader workers).", ""]
    return lines


def section_archs(b: Bench) -> list[str]:
    lines = ["## Every size, batch 64, CPU", ""]
    for arch in ("conv32", "conv128"):
        rows, _ = train_table(b, arch, b.args.batch, {"engine fp32": ENGINE_FP32,
                                                      "engine bf16": ENGINE_BF16})
        lines += [f"### {arch}", ""] + rows + [""]
    return lines


def section_levers(b: Bench) -> list[str]:
    """Each lever switched off from the engine's defaults (and --compile switched on), as CPU
    time per step in one process (benchmarks/levers.py)."""
    a = b.args
    out = b.tmp / "levers.json"
    cmd = [sys.executable, "-m", "benchmarks.levers", "--arch", a.arch, "--batch", str(a.batch),
           "--data", str(b.data), "--rounds", str(a.repeats + 1), "--json", str(out)]
    if a.width:
        cmd += ["--width", str(a.width)]
    if a.smoke:
        cmd += ["--steps", "1", "--warmup", "1", "--precisions", "fp32"]
    if not (a.quick or a.smoke):
        cmd.append("--compile")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd, cwd=REPO, env=env, check=True, timeout=a.timeout, stdout=subprocess.DEVNULL)
    from benchmarks.levers import table

    return [f"## Levers, one at a time ({a.arch}, batch {a.batch})", "",
            "Command: `python -m benchmarks.levers" + (" --compile" if "--compile" in cmd else "")
            + "`. Each row changes one thing from the engine's defaults.", "",
            *table(json.loads(out.read_text())), ""]


def section_batch(b: Bench) -> list[str]:
    a = b.args
    lines = [f"## Images/s across batch sizes ({a.arch}, CPU)", "",
             "| batch | reference | engine fp32 | engine bf16 | fp32 ratio | bf16 ratio |",
             "|---|---|---|---|---|---|"]
    for batch in (16, 32, 64, 128, 256):
        runs = b.train_specs(a.arch, batch, {"fp32": ENGINE_FP32, "bf16": ENGINE_BF16})
        r = runs["reference"]
        lines.append(f"| {batch} | {med(r, 'img_per_s'):.1f} | {med(runs['fp32'], 'img_per_s'):.1f} "
                     f"| {med(runs['bf16'], 'img_per_s'):.1f} | {paired_ratio(runs['fp32'], r):.2f}× "
                     f"| {paired_ratio(runs['bf16'], r):.2f}× |")
    return lines + [""]


def section_sampling(b: Bench) -> list[str]:
    lines = ["## Sampling throughput (`api.sample`, fp32, batch 64)", "",
             "| arch | images/s |", "|---|---|"]
    for arch in b.args.sample_archs:
        r = b.worker({"kind": "sample", "arch": arch, "n": b.args.sample_n, "batch": 64,
                      "width": b.args.width})
        lines.append(f"| {arch} | {r['img_per_s']:.0f} |")
    return lines + [""]


def section_fid(b: Bench) -> list[str]:
    r = b.worker({"kind": "fid", "n": b.args.fid_n, "batch": 32, "workers": b.args.ref_workers})
    ours = r.get("ganzoo_img_per_s")
    ours_s = f"{ours:.1f}" if ours else f"not measured ({r.get('ganzoo_note')})"
    ratio = f"{ours / r['cleanfid_img_per_s']:.2f}×" if ours else "–"
    return ["## FID feature extraction (Inception, 299×299, CPU)", "",
            "Same network for both (clean-fid's Inception-v3 with random weights: the real ones "
            "are a download this machine cannot make; speed does not depend on weight values).", "",
            "| path | images/s | ratio |", "|---|---|---|",
            f"| clean-fid `get_files_features` on {r['n']} PNGs | {r['cleanfid_img_per_s']:.1f} | 1.00× |",
            f"| gan-zoo evaluation | {ours_s} | {ratio} |", ""]


def make_png_folder(root: Path, n: int, size: int = 128, seed: int = 0) -> Path:
    """n smooth random PNGs (synthetic stand-ins for faces when the real set is absent)."""
    import numpy as np
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    have = len(list(root.glob("*.png")))
    for i in range(have, n):
        base = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        Image.fromarray(base).resize((size, size), Image.Resampling.BICUBIC).save(root / f"{i:06d}.png")
    return root


def section_epochs(b: Bench) -> list[str]:
    """Time per epoch of the data path alone, engine (memory-mapped uint8 cache) vs the
    reference's DataLoader, as the dataset grows; plus the one-off decode into the cache."""
    from gan_zoo.data import load_folder

    lines = ["## Data path: time per epoch as the dataset grows (64 px, batch 64)", "",
             "| images | first decode into cache (s) | engine epoch (s) | reference epoch (s) "
             "| engine µs/image | reference µs/image | engine peak memory (MiB) |",
             "|---|---|---|---|---|---|---|"]
    folder = b.tmp / "epoch-data"
    for n in b.args.epoch_sizes:
        make_png_folder(folder, n)
        t = time.perf_counter()
        load_folder(folder, 64)
        decode = time.perf_counter() - t
        r = b.worker({"kind": "epoch", "data": str(folder), "resolution": 64, "batch": 64,
                      "workers": b.args.ref_workers})
        lines.append(f"| {n} | {decode:.1f} | {r['engine_epoch_s']:.2f} | {r['reference_epoch_s']:.2f} "
                     f"| {1e6 * r['engine_epoch_s'] / n:.0f} | {1e6 * r['reference_epoch_s'] / n:.0f} "
                     f"| {r['engine_peak_mib']:.0f} |")
    return lines + [""]


def section_gpu(b: Bench) -> list[str]:
    import torch

    head = ["## GPU", ""]
    if not torch.cuda.is_available():
        return head + ["No CUDA device on this machine: GPU rows **not measured**.", "",
                       "| arch | batch | precision | images/s | MFU |", "|---|---|---|---|---|",
                       "| conv64 | 256 | bf16 | not measured | not measured |",
                       "| conv128 | 256 | bf16 | not measured | not measured |", ""]
    lines = head + [f"Device: {torch.cuda.get_device_name(0)}", "",
                    "| arch | batch | precision | compile | images/s | train GFLOP/image | MFU |",
                    "|---|---|---|---|---|---|---|"]
    flops: dict[str, float] = {}  # counted on the eager run; the same network when compiled
    for arch in ("conv64", "conv128"):
        for prec, comp in (("bf16", False), ("bf16", True), ("fp16", True), ("fp32", False)):
            r = b.worker({"kind": "engine", "arch": arch, "batch": 256, "steps": b.args.steps,
                          "warmup": b.args.warmup + 3, "precision": prec, "device": "cuda",
                          "width": b.args.width, "flops": True, "engine": {"compile": comp}})
            if r.get("flops_per_image"):
                flops[arch] = r["flops_per_image"]
            from benchmarks.worker import peak_flops

            peak = peak_flops(torch.cuda.get_device_name(), prec)
            mfu = r.get("mfu") or (flops[arch] * r["img_per_s"] / peak if arch in flops and peak else None)
            r["flops_per_image"] = flops.get(arch, float("nan"))
            lines.append(f"| {arch} | 256 | {prec} | {comp} | {r['img_per_s']:.0f} | "
                         f"{r['flops_per_image'] / 1e9:.2f} | "
                         f"{'–' if mfu is None else f'{100 * mfu:.0f}%'} |")
    return lines + [""]


# ---------------------------------------------------------------------------------- main
def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, Python "
            f"{platform.python_version()}; load average at start {load}")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="conv64 targets + small extras (< 3 min)")
    mode.add_argument("--smoke", action="store_true", help="tiny everything, seconds (for tests)")
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    p.add_argument("--data", type=Path, help="image folder (default: the faces set, else synthetic)")
    p.add_argument("--repeats", type=int, help="interleaved rounds per comparison")
    p.add_argument("--steps", type=int, help="timed steps per run")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--ref-workers", type=int, default=2, help="reference DataLoader workers")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per worker run")
    p.add_argument("--sections", help="comma-separated subset of: " + ", ".join(SECTIONS))
    args = p.parse_args(argv)
    args.arch, args.batch, args.width = "conv64", 64, None
    args.sample_archs, args.sample_n, args.fid_n = ["conv32", "conv64", "conv128"], 512, 256
    args.epoch_sizes, args.warmup = [1000, 4000, 16000], 3
    default_sections = list(SECTIONS)
    if args.quick:
        args.repeats, args.steps = args.repeats or 2, args.steps or 6
        args.sample_n, args.fid_n, args.epoch_sizes, args.warmup = 128, 64, [500, 2000], 2
        default_sections = ["targets", "levers", "sampling", "epochs", "gpu"]
    elif args.smoke:
        args.repeats, args.steps, args.warmup = args.repeats or 1, args.steps or 2, 1
        args.arch, args.batch, args.width = "conv32", 8, 8
        args.sample_archs, args.sample_n, args.fid_n, args.epoch_sizes = ["conv32"], 16, 4, [80]
        default_sections = ["targets", "levers", "sampling", "epochs", "fid", "gpu"]
    args.repeats, args.steps = args.repeats or 3, args.steps or 12
    args.sections = args.sections.split(",") if args.sections else default_sections
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown:
        p.error(f"unknown section {unknown[0]!r}; choose from {', '.join(SECTIONS)}")
    return args


SECTIONS = {"targets": section_targets, "archs": section_archs, "levers": section_levers,
            "batch": section_batch, "sampling": section_sampling, "fid": section_fid,
            "epochs": section_epochs, "gpu": section_gpu}


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ganzoo-bench-") as tmp_name:
        tmp = Path(tmp_name)
        data = args.data or (FACES if FACES.is_dir() and not args.smoke else None)
        if data is None:
            data = make_png_folder(tmp / "synthetic", 96 if args.smoke else 1024)
        if not data.is_dir():
            print(f"error: --data {str(data)!r} is not a folder", file=sys.stderr)
            return 2
        from gan_zoo.data import load_folder

        archs = {args.arch, *(["conv32", "conv128"] if "archs" in args.sections else []),
                 *(args.sample_archs if "sampling" in args.sections else [])}
        for arch in sorted(archs):  # decode into the cache before anything is timed
            load_folder(data, int(arch.removeprefix("conv")))
        bench = Bench(args, data, tmp)
        command = "python -m benchmarks " + " ".join(argv if argv is not None else sys.argv[1:])
        lines = ["# Benchmark results", "",
                 f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
                 f"- command: `{command.strip()}`",
                 f"- machine: {machine()}",
                 f"- data: {data} ; repeats {args.repeats}, {args.steps} timed steps after "
                 f"{args.warmup} warm-up steps per run; reference DataLoader workers {args.ref_workers}",
                 ""]
        for name in args.sections:
            lines += SECTIONS[name](bench)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text("\n".join(lines) + "\n")  # partial results survive a crash
        lines.append(f"Total benchmark time: {time.perf_counter() - started:.0f} s.")
        if HISTORY.exists() and not args.smoke:
            lines += ["", HISTORY.read_text()]
        args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
