"""This machine's own peaks: what a training or evaluation figure is a fraction of.

    python -m benchmarks.roofline [--device cpu|cuda] [--threads N] [--size full|quick|smoke]

Measures, on one device at one thread count:

* convolution: channels-last 3x3 convolutions at a few representative shapes (the inner layers
  of conv64/conv128), no autograd, per precision (fp32, bf16; fp16 too on CUDA); the best shape
  is the "peak";
* matmul: a square matrix product (2048² on CPU, 8192² on CUDA) per precision;
* memory bandwidth: STREAM-like copy (b = a) and triad (a = b + s·c) over arrays far larger
  than the last-level cache (STREAM's byte count: read + write, no write-allocate traffic).

Each figure is the best of several timed calls (a peak is what the machine can do; load from
other programs only ever makes a call slower), in CPU time at one CPU thread (as the levers'
figures), wall-clock time otherwise. ``python -m benchmarks`` runs ``measure`` in a
fresh worker process (benchmarks/worker.py, kind "roofline") and prints ``table``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# (channels, height = width) of a 3x3, stride-1, channels-in = channels-out convolution.
CONV_SHAPES = ((256, 16), (128, 32), (64, 64))
SIZES: dict[str, dict[str, Any]] = {
    # batch of the conv shapes, matmul side, floats per bandwidth array, timed calls
    "full": {"conv_batch": 64, "matmul": 2048, "stream": 2**26, "repeats": 7},
    "quick": {"conv_batch": 64, "matmul": 2048, "stream": 2**25, "repeats": 4},
    "smoke": {"conv_batch": 2, "matmul": 256, "stream": 2**18, "repeats": 2},
}
CUDA_SCALE = {"conv_batch": 4, "matmul": 4, "stream": 8}  # a GPU needs more work per call


def conv_flops(batch: int, channels: int, size: int, kernel: int = 3) -> float:
    """Multiply-adds x 2 of a same-padding conv with channels in = out (FlopCounterMode's count)."""
    return 2.0 * batch * channels * channels * kernel * kernel * size * size


def clock(device: torch.device) -> Callable[[], float]:
    """CPU time on one CPU thread (what the levers' one-thread figures are in, and what other
    programs' load barely changes); wall-clock time otherwise (several threads, a GPU)."""
    return time.process_time if device.type == "cpu" and torch.get_num_threads() == 1 else time.perf_counter


def best_seconds(fn: Callable[[], Any], device: torch.device, repeats: int, inner: int = 1) -> float:
    """Fastest of `repeats` timings of `inner` calls, per call, after one warm-up call."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    now = clock(device)
    fn()
    sync()
    best = float("inf")
    for _ in range(repeats):
        t = now()
        for _ in range(inner):
            fn()
        sync()
        best = min(best, (now() - t) / inner)
    return best


def _inner(device: torch.device) -> int:
    """Calls per timing: a GPU call is microseconds (launch overhead must not count)."""
    return 20 if device.type == "cuda" else 1


def precisions(device: torch.device) -> list[str]:
    return ["fp32", "bf16", "fp16"] if device.type == "cuda" else ["fp32", "bf16"]


def measure_conv(device: torch.device, size: dict[str, Any]) -> dict[str, dict[str, float]]:
    """GFLOP/s per precision and shape (channels-last input and weight, inference mode)."""
    out: dict[str, dict[str, float]] = {}
    batch = size["conv_batch"]
    for prec in precisions(device):
        dtype = DTYPES[prec]
        out[prec] = {}
        for channels, hw in CONV_SHAPES:
            x = torch.randn(batch, channels, hw, hw, device=device, dtype=dtype)
            w = torch.randn(channels, channels, 3, 3, device=device, dtype=dtype) * 0.05
            x = x.contiguous(memory_format=torch.channels_last)
            w = w.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                s = best_seconds(lambda x=x, w=w: F.conv2d(x, w, padding=1), device,
                                 size["repeats"], _inner(device))
            out[prec][conv_label(batch, channels, hw)] = conv_flops(batch, channels, hw) / s / 1e9
    return out


def conv_label(batch: int, channels: int, hw: int) -> str:
    return f"{batch}×{channels}×{hw}×{hw} 3×3"


def measure_matmul(device: torch.device, size: dict[str, Any]) -> dict[str, float]:
    n = size["matmul"]
    out: dict[str, float] = {}
    for prec in precisions(device):
        a = torch.randn(n, n, device=device, dtype=DTYPES[prec])
        b = torch.randn(n, n, device=device, dtype=DTYPES[prec])
        with torch.inference_mode():
            s = best_seconds(lambda a=a, b=b: a @ b, device, size["repeats"], _inner(device))
        out[prec] = 2.0 * n**3 / s / 1e9
    return out


def measure_bandwidth(device: torch.device, size: dict[str, Any]) -> dict[str, float]:
    """GB/s (10^9 bytes) of copy and triad on fp32 arrays of size['stream'] elements."""
    n = size["stream"]
    a = torch.zeros(n, device=device)
    b = torch.rand(n, device=device)
    c = torch.rand(n, device=device)
    nbytes = a.element_size() * n
    with torch.inference_mode():
        copy = best_seconds(lambda: a.copy_(b), device, size["repeats"], _inner(device))
        triad = best_seconds(lambda: torch.add(b, c, alpha=3.0, out=a), device, size["repeats"],
                             _inner(device))
    return {"copy": 2 * nbytes / copy / 1e9, "triad": 3 * nbytes / triad / 1e9,
            "array_mib": nbytes / 2**20}


def measure(device: str = "cpu", threads: int | None = None, size: str = "full") -> dict[str, Any]:
    """Every peak on one device (CPU at `threads` threads). Peaks in GFLOP/s, bandwidth in GB/s."""
    dev = torch.device(device)
    if threads:
        torch.set_num_threads(threads)
    dims = dict(SIZES[size])
    if dev.type == "cuda":
        dims.update({k: dims[k] * v for k, v in CUDA_SCALE.items()})
    conv = measure_conv(dev, dims)
    return {
        "device": dev.type,
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_name(),
        "threads": torch.get_num_threads() if dev.type == "cpu" else None,
        "clock": "CPU time" if clock(dev) is time.process_time else "wall-clock time",
        "size": size,
        "conv": conv,
        "conv_peak": {prec: max(shapes.values()) for prec, shapes in conv.items()},
        "matmul": measure_matmul(dev, dims),
        "matmul_n": dims["matmul"],
        "bandwidth": measure_bandwidth(dev, dims),
    }


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def percent(flops_per_s: float | None, peak_gflops: float | None) -> str:
    """A rate as a percentage of a peak (GFLOP/s), or '–' when either is unknown."""
    if not flops_per_s or not peak_gflops:
        return "–"
    return f"{100 * flops_per_s / (peak_gflops * 1e9):.0f}%"


def table(result: dict[str, Any], datasheet: dict[str, float] | None = None) -> list[str]:
    """Markdown rows: one per measured figure; `datasheet` (GFLOP/s per precision) adds the
    vendor's number beside the measured conv/matmul peaks (GPUs)."""
    where = (f"{result['device_name']}, {result['threads']} thread(s)" if result["device"] == "cpu"
             else result["device_name"])
    ds = datasheet or {}
    lines = [f"Roofline of {where} (best of timed calls in {result.get('clock', 'wall-clock time')}; "
             "channels-last 3×3 convolutions with as many channels out as in, no autograd):", "",
             "| what | precision | measured | data sheet | measured / data sheet |",
             "|---|---|---|---|---|"]

    def row(what: str, prec: str, value: float, unit: str) -> None:
        sheet = ds.get(prec) if "peak" in what or "matmul" in what else None
        lines.append(f"| {what} | {prec} | {value:,.0f} {unit} | "
                     + (f"{sheet:,.0f} {unit} | {100 * value / sheet:.0f}% |" if sheet else "– | – |"))

    for prec, shapes in result["conv"].items():
        for shape, value in shapes.items():
            row(f"conv {shape}", prec, value, "GFLOP/s")
        row("**conv peak** (best shape)", prec, result["conv_peak"][prec], "GFLOP/s")
    for prec, value in result["matmul"].items():
        n = result["matmul_n"]
        row(f"matmul {n}×{n}", prec, value, "GFLOP/s")
    bw = result["bandwidth"]
    for kind in ("copy", "triad"):
        row(f"memory {kind} ({bw['array_mib']:.0f} MiB arrays)", "fp32", bw[kind], "GB/s")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.roofline",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--size", choices=list(SIZES), default="full")
    p.add_argument("--json", action="store_true", help="print the result as JSON instead")
    args = p.parse_args(argv)
    result = measure(args.device, args.threads, args.size)
    print(json.dumps(result) if args.json else "\n".join(table(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
