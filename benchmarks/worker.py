"""One measurement in a fresh process: ``python -m benchmarks.worker '<json spec>'``.

Each measurement runs in its own process so that its peak memory is its own and one
variant's warm caches or allocator state cannot flatter the next. The last line printed is a
JSON object with the result.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import torch


# ------------------------------------------------------------------------------------ memory
def _pss_kib(pid: int | str) -> int:
    """Proportional set size of a process: shared pages split between their users, so the sum
    over a parent and its DataLoader workers is the memory they really take together."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[str]:
    out: list[str] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out += fh.read().split()
    except OSError:
        pass
    return out


def process_tree_mib() -> float:
    """Memory of this process and its children, in MiB (Linux; 0 elsewhere)."""
    me = os.getpid()
    return (_pss_kib(me) + sum(_pss_kib(c) for c in _children(me))) / 1024


def tree_cpu_seconds() -> float:
    """CPU seconds used so far by this process (all threads) and its live children: a cost
    that other programs' load on the machine barely changes, unlike wall-clock time."""
    t = os.times()
    total = t.user + t.system
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for child in _children(os.getpid()):
        try:
            with open(f"/proc/{child}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total


class PeakMemory:
    """Samples process_tree_mib() in a background thread and keeps the peak."""

    def __init__(self, interval: float = 0.05):
        self.interval, self.peak, self._stop = interval, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, process_tree_mib())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self.peak = process_tree_mib()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, process_tree_mib())


# ------------------------------------------------------------------------------------ training
def count_flops(fn: Callable[[], Any]) -> float:
    """FLOPs of one call as torch counts them (2 per multiply-add of convolutions and matrix
    products, forward and backward; elementwise work is not counted). Run outside any timing:
    the counting mode slows the call down."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def _summary(totals: list[float], waits: list[float], batch: int, cpu: float) -> dict[str, float]:
    total = sum(totals)
    return {
        "img_per_s": batch * len(totals) / total,
        "cpu_s_per_image": cpu / (batch * len(totals)),
        "step_s_median": statistics.median(totals),
        "data_wait_share": sum(waits) / total,
    }


def _engine_trainer(spec: dict[str, Any]):
    from gan_zoo.data import load_folder
    from gan_zoo.training.assembly import build_components
    from gan_zoo.training.config import make_config
    from gan_zoo.training.trainer import Trainer

    arch = spec["arch"]
    values: dict[str, Any] = {
        "arch": arch, "batch_size": spec["batch"], "precision": spec.get("precision", "fp32"),
        "device": spec.get("device", "cpu"), "seed": spec.get("seed", 0),
        "ema_decay": spec.get("ema_decay", 0.999),
    }
    if spec.get("width"):
        values["options"] = {arch: {"width": spec["width"]}}
    values.update(spec.get("engine", {}))  # lever switches: channels_last, compile, ...
    cfg = make_config(values)
    comps = build_components(cfg)
    data = load_folder(spec["data"], comps.arch.resolution)
    return Trainer(cfg, comps, data, run=None)


def run_engine(spec: dict[str, Any]) -> dict[str, Any]:
    trainer = _engine_trainer(spec)
    wait = [0.0]
    real_batch = trainer.real_batch

    def timed_real_batch(n: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        t = time.perf_counter()
        batch = real_batch(n)
        wait[0] += time.perf_counter() - t
        return batch

    trainer.real_batch = timed_real_batch  # type: ignore[method-assign]
    trainer.G.train()
    trainer.D.train()
    for _ in range(spec["warmup"]):
        trainer.train_step()
    flops = None
    if spec.get("flops") and not trainer.config.compile:  # a compiled graph hides its ops
        flops = count_flops(trainer.train_step) / spec["batch"]
    sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
    sync()
    totals, waits, losses = [], [], []
    with PeakMemory() as mem:
        base = mem.peak
        cpu = tree_cpu_seconds()
        for _ in range(spec["steps"]):
            wait[0] = 0.0
            t = time.perf_counter()
            stats = trainer.train_step()  # .item() on the losses syncs a GPU each step
            totals.append(time.perf_counter() - t)
            waits.append(wait[0])
            losses.append({"loss_d": stats["loss_d"], "loss_g": stats["loss_g"]})
        cpu = tree_cpu_seconds() - cpu
    out = {**_summary(totals, waits, spec["batch"], cpu), "peak_mib": mem.peak, "start_mib": base,
           "losses": losses if spec.get("record_losses") else None, "flops_per_image": flops}
    if trainer.device.type == "cuda":
        out["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        peak = peak_flops(torch.cuda.get_device_name(), spec.get("precision", "fp32"))
        if flops and peak:
            out["mfu"] = flops * out["img_per_s"] / peak
    return out


# Dense tensor-core peaks (FLOP/s) from the vendors' data sheets, without sparsity.
PEAK_FLOPS = {("H100", "bf16"): 989e12, ("H100", "fp16"): 989e12, ("H100", "fp32"): 67e12,
              ("H200", "bf16"): 989e12, ("H200", "fp16"): 989e12, ("H200", "fp32"): 67e12,
              ("A100", "bf16"): 312e12, ("A100", "fp16"): 312e12, ("A100", "fp32"): 19.5e12}


def peak_flops(device_name: str, precision: str) -> float | None:
    for (gpu, prec), value in PEAK_FLOPS.items():
        if gpu in device_name and prec == precision:
            return value * (756 / 989 if "PCIe" in device_name else 1.0)
    return None


def run_reference(spec: dict[str, Any]) -> dict[str, Any]:
    from benchmarks.reference import ReferenceLoop, endless, make_loader, timed_steps
    from gan_zoo.training.assembly import build

    options = {"width": spec["width"]} if spec.get("width") else {}
    torch.manual_seed(spec.get("seed", 0))
    arch = build("arch", spec["arch"], options)
    netG, netD = arch.build_generator(), arch.build_discriminator()
    loop = ReferenceLoop(netG, netD, netG.latent_dim)
    loader = make_loader(spec["data"], arch.resolution, spec["batch"],
                         workers=spec.get("workers", 2), seed=spec.get("seed", 0))
    with PeakMemory() as mem:
        base = mem.peak
        batches = endless(loader)
        timed_steps(loop, batches, spec["warmup"])
        flops = count_flops(lambda: loop.step(next(batches))) / spec["batch"] if spec.get("flops") else None
        cpu = tree_cpu_seconds()
        totals, waits, losses = timed_steps(loop, batches, spec["steps"])
        cpu = tree_cpu_seconds() - cpu
    return {**_summary(totals, waits, spec["batch"], cpu), "peak_mib": mem.peak, "start_mib": base,
            "losses": losses if spec.get("record_losses") else None, "flops_per_image": flops}


# ------------------------------------------------------------------------------------ sampling, FID
def run_sample(spec: dict[str, Any]) -> dict[str, Any]:
    from gan_zoo import api
    from gan_zoo.training.assembly import build

    options = {"width": spec["width"]} if spec.get("width") else {}
    G = build("arch", spec["arch"], options).build_generator().eval()
    n = spec["n"]
    with torch.no_grad():
        z = G.sample_latent(spec["batch"])
        flops = count_flops(lambda: G(z)) / spec["batch"]
    api.sample(G, spec["batch"], batch_size=spec["batch"])  # warm-up
    t = time.perf_counter()
    api.sample(G, n, batch_size=spec["batch"])
    return {"img_per_s": n / (time.perf_counter() - t), "flops_per_image": flops}


def plain_inception(device: str = "cpu") -> torch.nn.Module:
    """The FID Inception's network as the TorchScript file holds it: fp32, NCHW, untouched by
    anything gan_zoo.evaluation does to make it faster (the "before" of the FID rows). Only
    the known export is loaded (gan_zoo.evaluation.weights.read_weights checks its digests)."""
    import io
    import warnings

    from gan_zoo.evaluation.weights import find_weights, read_weights

    checked = read_weights(find_weights(None))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.load's deprecation notice
        module = torch.jit.load(io.BytesIO(checked.data), map_location=torch.device(device))
    layers = module.layers if hasattr(module, "layers") else module.net.layers
    return layers.eval()


def _clean_resize(images: list, workers: int) -> torch.Tensor:
    """clean-fid's 299x299 resize of each image, threaded, as gan-zoo did before issue 16."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    from cleanfid.resize import build_resizer

    fn = build_resizer("clean")
    with ThreadPoolExecutor(workers) as pool:
        out = list(pool.map(fn, images))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


def extractor_precision(extractor: Any) -> str:
    """The precision the current Inception extractor computes in (fp32 unless it says)."""
    prec = getattr(extractor, "precision", None)
    if isinstance(prec, str) and prec in ("fp32", "bf16", "fp16"):
        return prec
    dtype = getattr(extractor, "dtype", None)
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")  # type: ignore[arg-type]


def run_fid(spec: dict[str, Any]) -> dict[str, Any]:
    """Inception-feature cost per image on spec['n'] PNGs, the real FID network, rounds of
    before / after interleaved: "before" is the plain TorchScript fp32 NCHW forward on
    clean-fid-resized batches (resize and forward timed apart); "after" is gan-zoo's current
    path, public API only (FolderSource -> build_extractor("inception") -> extract_all), so it
    measures whatever gan_zoo.evaluation does now. FLOPs: FlopCounterMode over one batch."""
    from gan_zoo.errors import GanZooError
    from gan_zoo.evaluation import FolderSource, build_extractor, extract_all

    device = spec.get("device", "cpu")
    try:
        plain = plain_inception(device)
        extractor = build_extractor("inception", device=device)
    except GanZooError as exc:  # no weights on this machine: the section says so
        return {"note": str(exc).split(". ")[0]}
    source = FolderSource(spec["data"])
    n, batch = min(spec["n"], len(source)), spec["batch"]
    workers = max(1, min(4, (os.cpu_count() or 1) // 2))
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def before() -> tuple[float, float, float]:
        resize = forward = 0.0
        cpu = time.process_time()
        for images in source.batches(batch, limit=n):
            t = time.perf_counter()
            x = _clean_resize(images, workers).to(device)
            t1 = time.perf_counter()
            with torch.inference_mode():
                plain((x - 128) / 128).reshape(len(x), -1).float().cpu()
            sync()
            resize, forward = resize + t1 - t, forward + time.perf_counter() - t1
        return resize, forward, time.process_time() - cpu

    def after() -> tuple[float, float, int]:
        cpu = time.process_time()
        t = time.perf_counter()
        feats = extract_all(extractor, source.batches(batch, limit=n))
        sync()
        return time.perf_counter() - t, time.process_time() - cpu, len(feats)

    warm = next(source.batches(min(batch, n)))
    x = _clean_resize(warm, workers).to(device)
    with torch.inference_mode():
        flops = count_flops(lambda: plain((x[:2] - 128) / 128)) / 2
        for _ in range(2):  # TorchScript's profiling runs optimize the graph on the first calls
            plain((x - 128) / 128)
    extract_all(extractor, iter([warm]))
    extract_all(extractor, iter([warm]))
    rounds: dict[str, list[float]] = {k: [] for k in ("resize", "forward", "before_cpu", "after",
                                                      "after_cpu")}
    for _ in range(spec.get("rounds", 1)):
        resize, forward, cpu = before()
        rounds["resize"].append(resize)
        rounds["forward"].append(forward)
        rounds["before_cpu"].append(cpu)
        wall, cpu, got = after()
        rounds["after"].append(wall)
        rounds["after_cpu"].append(cpu)
    med = {k: statistics.median(v) / n for k, v in rounds.items()}
    return {"n": n, "features": got, "batch": batch, "flops_per_image": flops,
            "after_precision": extractor_precision(extractor),
            "before_resize_s": med["resize"], "before_forward_s": med["forward"],
            "before_s": med["resize"] + med["forward"], "before_cpu_s": med["before_cpu"],
            "after_s": med["after"], "after_cpu_s": med["after_cpu"],
            "rounds": {k: [round(x / n, 5) for x in v] for k, v in rounds.items()}}


def run_roofline(spec: dict[str, Any]) -> dict[str, Any]:
    from benchmarks.roofline import measure

    return measure(spec.get("device", "cpu"), spec.get("threads"), spec.get("size", "full"))


# ------------------------------------------------------------------------------------ data path
def run_epoch(spec: dict[str, Any]) -> dict[str, Any]:
    """Seconds for one epoch of the engine's data path (gather from the memory-mapped cache
    and conversion) and of the reference's loader, on a dataset of spec['n'] images."""
    from gan_zoo.data import EpochSampler, gather, load_folder
    from gan_zoo.data.images import from_uint8

    out: dict[str, Any] = {}
    data = load_folder(spec["data"], spec["resolution"])
    sampler = EpochSampler(len(data), spec["batch"], 0)
    with PeakMemory() as mem:
        t = time.perf_counter()
        for _ in range(sampler.batches_per_epoch):
            from_uint8(gather(data.images, sampler.next_indices()))
        out["engine_epoch_s"] = time.perf_counter() - t
    out["engine_peak_mib"] = mem.peak
    if spec.get("reference", True):
        from benchmarks.reference import make_loader

        loader = make_loader(spec["data"], spec["resolution"], spec["batch"],
                             workers=spec.get("workers", 2))
        t = time.perf_counter()
        for _ in loader:
            pass
        out["reference_epoch_s"] = time.perf_counter() - t
    return out


KINDS = {"engine": run_engine, "reference": run_reference, "sample": run_sample, "fid": run_fid,
         "epoch": run_epoch, "roofline": run_roofline}


def main(argv: list[str]) -> None:
    spec = json.loads(argv[0])
    torch.set_num_threads(int(spec.get("threads") or os.cpu_count() or 1))
    result = KINDS[spec["kind"]](spec)
    print(json.dumps({"spec": spec, **result}))


if __name__ == "__main__":
    main(sys.argv[1:])
