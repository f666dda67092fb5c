"""What this machine runs fast: the choices behind `--precision auto`, channels-last and the
thread count, each with a one-line reason for the run header.

bf16 is chosen only where the hardware has bf16 matrix instructions (x86 AMX or AVX512_BF16,
CUDA compute capability >= 8.0): elsewhere oneDNN/cuDNN emulate bf16 and it runs slower than
fp32. Quality: the same run in bf16 and fp32 reaches the same FID within seed noise
(benchmarks/quality.py --compare-precision; figures in docs/performance.md)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import torch

CPUINFO = Path("/proc/cpuinfo")
CGROUP_ROOT = Path("/sys/fs/cgroup")
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _device(device: torch.device | str) -> torch.device:
    return device if isinstance(device, torch.device) else torch.device(device)


def cpu_flags(cpuinfo: Path | None = None) -> frozenset[str]:
    """The CPU feature flags the kernel reports (x86 `flags`, ARM `Features`); empty where
    /proc/cpuinfo does not exist (macOS, Windows) or cannot be read."""
    try:
        text = (cpuinfo or CPUINFO).read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def _torch_cpu_probe(name: str) -> bool:
    """torch.cpu's cpuinfo-based probes (private, so absent in some versions: then False)."""
    probe = getattr(torch.cpu, name, None)
    try:
        return bool(probe()) if callable(probe) else False
    except Exception:  # noqa: BLE001 - a failing probe only means "not known to be there"
        return False


def cpu_bf16_units() -> list[str]:
    """The bf16 matrix instruction sets of this CPU, fastest first: 'AMX-BF16', 'AVX512_BF16'.
    torch's probes work on every OS; /proc/cpuinfo flags cover torch versions without them."""
    flags = cpu_flags()
    units = []
    if _torch_cpu_probe("_is_amx_tile_supported") or "amx_bf16" in flags:
        units.append("AMX-BF16")
    if _torch_cpu_probe("_is_avx512_bf16_supported") or "avx512_bf16" in flags:
        units.append("AVX512_BF16")
    return units


def _cuda_capability(device: torch.device) -> tuple[int, int]:
    return torch.cuda.get_device_capability(device)


def _cuda_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device)


def bf16_fast(device: torch.device | str) -> tuple[bool, str]:
    """Whether bf16 runs faster than fp32 on `device`, and why (a phrase for the run header)."""
    device = _device(device)
    if device.type == "cpu":
        units = cpu_bf16_units()
        if units:
            return True, f"this CPU has {units[0]}"
        return False, ("this CPU has neither AMX nor AVX512_BF16, so bf16 would be emulated "
                       "and slower than fp32")
    if device.type == "cuda":
        major, minor = _cuda_capability(device)
        name = _cuda_name(device)
        if (major, minor) >= (8, 0):
            return True, f"{name} (compute capability {major}.{minor}) has bf16 tensor cores"
        return False, (f"{name} (compute capability {major}.{minor} < 8.0) has no bf16 "
                       "tensor cores")
    if device.type == "mps":
        return False, "Apple MPS: bf16 is not known to be faster than fp32 there"
    return False, f"bf16 speed on {device.type} devices is unknown"


TRAINING_BF16_CLAIM = "same FID as fp32 within seed noise"


def choose_precision(requested: str, device: torch.device | str,
                     claim: str = TRAINING_BF16_CLAIM) -> tuple[str, str]:
    """The concrete precision ('fp32', 'bf16' or 'fp16') for `requested` ('auto' or one of
    those) on `device`, and a one-line reason (with `claim`, what was measured of bf16 for
    this use, when auto picks it). Only 'auto' is decided here; a precision the user named
    is kept as is. Training, sampling and Inception features all decide through this."""
    if requested != "auto":
        return requested, "as requested"
    fast, why = bf16_fast(device)
    if fast:
        return "bf16", f"auto: {why}" + (f"; {claim}" if claim else "")
    return "fp32", f"auto: {why}"


def choose_channels_last(device: torch.device | str) -> tuple[bool, str]:
    """Whether convolutions should run channels-last (NHWC) on `device`, and why. The training
    config's `channels_last` (default on) is the user's word; this is the default for code
    without such a setting and the header's explanation."""
    device = _device(device)
    if device.type == "cpu":
        if torch.backends.mkldnn.is_available():
            return True, "oneDNN runs NHWC convolutions without layout reorders"
        return False, "this PyTorch build has no oneDNN, which is what makes NHWC fast on CPU"
    if device.type == "cuda":
        return True, "cuDNN's tensor-core convolutions take NHWC without transposes"
    return False, f"NHWC is not known to be faster on {device.type} devices"


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_cpu_limit(root: Path | None = None) -> float | None:
    """The CPU quota of this process's container in cores (cgroup v2 `cpu.max`, else v1
    `cpu.cfs_quota_us` / `cpu.cfs_period_us`), or None where there is no quota."""
    root = root or CGROUP_ROOT
    v2 = _read(root / "cpu.max")
    if v2 is not None:
        quota, _, period = v2.partition(" ")
        try:
            return int(quota) / int(period or "100000") if quota != "max" else None
        except (ValueError, ZeroDivisionError):
            return None
    for folder in ("cpu", "cpu,cpuacct"):
        quota, period = _read(root / folder / "cpu.cfs_quota_us"), \
            _read(root / folder / "cpu.cfs_period_us")
        if quota is None or period is None:
            continue
        try:
            q, p = int(quota), int(period)
        except ValueError:
            return None
        return q / p if q > 0 and p > 0 else None
    return None


def affinity_cores() -> int:
    """The cores this process may run on (its CPU affinity; os.cpu_count() where that is
    not available, e.g. macOS)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def usable_cores(root: Path | None = None) -> int:
    """Cores this process can actually use: its affinity, capped by a container CPU quota
    (rounded up: 1.5 cores of quota keep 2 threads busy part of the time)."""
    cores = affinity_cores()
    limit = cgroup_cpu_limit(root)
    if limit is not None:
        cores = min(cores, max(1, math.ceil(limit)))
    return cores


def _cores(n: int, adjective: str = "") -> str:
    return f"{n} {adjective}core{'s' if n != 1 else ''}"


def choose_threads(current: int | None = None, environ: Mapping[str, str] | None = None,
                   root: Path | None = None) -> tuple[int, str]:
    """PyTorch's intra-op thread count for training, and why. torch's own default already
    follows the CPU affinity but not a container's CPU quota, so only a quota lowers it.
    Never overridden: OMP_NUM_THREADS/MKL_NUM_THREADS, and a torch.set_num_threads above the
    affinity (torch's default never exceeds it, so such a count was set on purpose)."""
    current = torch.get_num_threads() if current is None else current
    environ = os.environ if environ is None else environ
    for var in THREAD_ENV_VARS:
        if environ.get(var):
            return current, f"{var}={environ[var]}"
    usable = usable_cores(root)
    if current > affinity_cores():
        return current, f"set by torch.set_num_threads; {_cores(usable, 'usable ')}"
    if current > usable:
        return usable, (f"lowered from {current}: the container's CPU quota allows "
                        f"{_cores(usable)}")
    return current, f"of {_cores(usable, 'usable ')}"


def apply_threads() -> tuple[int, str]:
    """Set torch's thread count to choose_threads()'s (at the start of a training) and return
    that choice."""
    threads, why = choose_threads()
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return threads, why


def run_header(precision: str, precision_reason: str, channels_last: bool,
               device: torch.device | str) -> list[str]:
    """The run header's lines on the speed settings and why, e.g. 'precision bf16 (auto: this
    CPU has AVX512_BF16; ...)' and 'channels-last (oneDNN ...), threads 2 (of 2 usable cores)'."""
    if channels_last:
        fast, why = choose_channels_last(device)
        layout = f"channels-last ({why if fast else 'as configured'})"
    else:
        layout = "channels-first (channels_last off)"
    threads, threads_why = choose_threads()  # after apply_threads: the count in use
    return [f"precision {precision} ({precision_reason})",
            f"{layout}, threads {threads} ({threads_why})"]
