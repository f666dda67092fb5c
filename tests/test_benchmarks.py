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
    text = "\n".join(levers.table(result))
    assert text.count("\n| ") == len(names) + 1  # header + one row each
    assert "defaults are" in text


def test_harness_smoke_writes_results_with_ratios(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                  ) -> None:
    out = tmp_path / "RESULTS.md"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the workers' setting; this process keeps its own
    assert main(["--smoke", "--sections", "targets,gpu", "--out", str(out)]) == 0
    text = out.read_text()
    assert "- command: `python -m benchmarks --smoke" in text
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| (reference|engine \w+) \| [\d.]+ \| ([\d.]+)×",
                                                         text, re.M)}
    assert set(rows) == {"reference", "engine fp32", "engine bf16"}
    assert rows["reference"] == "1.00" and float(rows["engine bf16"]) > 0
    if not torch.cuda.is_available():
        assert "not measured" in text


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
