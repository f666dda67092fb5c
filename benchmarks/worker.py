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
from pathlib import Path
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

    def timed_real_batch(n: int | None = None) -> torch.Tensor:
        t = time.perf_counter()
        x = real_batch(n)
        wait[0] += time.perf_counter() - t
        return x

    trainer.real_batch = timed_real_batch  # type: ignore[method-assign]
    trainer.G.train()
    trainer.D.train()
    for _ in range(spec["warmup"]):
        trainer.train_step()
    flops = None
    if spec.get("flops") and not trainer.config.compile:
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            trainer.train_step()
        flops = counter.get_total_flops() / spec["batch"]
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
        cpu = tree_cpu_seconds()
        totals, waits, losses = timed_steps(loop, batches, spec["steps"])
        cpu = tree_cpu_seconds() - cpu
    return {**_summary(totals, waits, spec["batch"], cpu), "peak_mib": mem.peak, "start_mib": base,
            "losses": losses if spec.get("record_losses") else None}


# ------------------------------------------------------------------------------------ sampling, FID
def run_sample(spec: dict[str, Any]) -> dict[str, Any]:
    from gan_zoo import api
    from gan_zoo.training.assembly import build

    options = {"width": spec["width"]} if spec.get("width") else {}
    G = build("arch", spec["arch"], options).build_generator().eval()
    n = spec["n"]
    api.sample(G, spec["batch"], batch_size=spec["batch"])  # warm-up
    t = time.perf_counter()
    api.sample(G, n, batch_size=spec["batch"])
    return {"img_per_s": n / (time.perf_counter() - t)}


def _random_inception():
    """clean-fid's Inception network with random weights (the real ones are a download this
    machine cannot make); throughput does not depend on the weights' values."""
    import cleanfid.inception_pytorch as ip
    from torch import nn

    sentinel: dict = {}
    original = nn.Module.load_state_dict

    def skip(self, state_dict, *args, **kwargs):
        return None if state_dict is sentinel else original(self, state_dict, *args, **kwargs)

    saved = ip.load_state_dict_from_url
    ip.load_state_dict_from_url = lambda *a, **k: sentinel
    nn.Module.load_state_dict = skip  # type: ignore[method-assign]
    try:
        model = ip.InceptionV3(output_blocks=[3], resize_input=False).eval()
    finally:
        ip.load_state_dict_from_url = saved
        nn.Module.load_state_dict = original  # type: ignore[method-assign]
    return lambda x: model(x / 255)[0].squeeze(-1).squeeze(-1)


def run_fid(spec: dict[str, Any]) -> dict[str, Any]:
    """Feature-extraction throughput: clean-fid's folder path on the PNGs, and gan-zoo's
    evaluation module on its decoded cache when that module is installed."""
    from cleanfid import fid

    files = sorted(Path(spec["data"]).rglob("*.png"))[: spec["n"]]
    model = _random_inception()
    out: dict[str, Any] = {"n": len(files)}
    with torch.no_grad():
        t = time.perf_counter()
        feats = fid.get_files_features(files, model, num_workers=spec.get("workers", 2),
                                       batch_size=spec["batch"], device=torch.device("cpu"),
                                       mode="clean", verbose=False)
        out["cleanfid_img_per_s"] = len(feats) / (time.perf_counter() - t)
    try:
        out.update(_ganzoo_fid(spec, model, files))
    except ImportError as exc:  # the evaluation engine is another issue's; absent = not measured
        out["ganzoo_img_per_s"] = None
        out["ganzoo_note"] = f"gan_zoo.evaluation not usable: {exc}"
    return out


def _ganzoo_fid(spec: dict[str, Any], model, files: list[Path]) -> dict[str, Any]:
    """gan-zoo's extraction pipeline (folder source, threaded clean-fid resize, batches) with
    the same random-weight network in place of the TorchScript one."""
    from gan_zoo.evaluation import FolderSource, extract_all
    from gan_zoo.evaluation.features import INCEPTION_SIZE, FeatureExtractor

    class SameNetwork(FeatureExtractor):
        name, dim, input_size, resize = "bench-inception", 2048, INCEPTION_SIZE, "clean"

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return model(x)

    source = FolderSource(spec["data"])
    t = time.perf_counter()
    feats = extract_all(SameNetwork(), source.batches(spec["batch"], limit=spec["n"]))
    return {"ganzoo_img_per_s": len(feats) / (time.perf_counter() - t)}


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
         "epoch": run_epoch}


def main(argv: list[str]) -> None:
    spec = json.loads(argv[0])
    torch.set_num_threads(int(spec.get("threads") or os.cpu_count() or 1))
    result = KINDS[spec["kind"]](spec)
    print(json.dumps({"spec": spec, **result}))


if __name__ == "__main__":
    main(sys.argv[1:])
