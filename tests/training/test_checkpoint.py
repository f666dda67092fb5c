"""Checkpoints: safetensors round trip, atomic writes, checksum, resume equals uninterrupted."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gan_zoo import api
from gan_zoo.errors import CheckpointError
from gan_zoo.training import checkpoint as ckpt

from .test_training_step import TINY, tiny_data


def _run(tmp_path, name, steps, **extra):
    cfg = {"arch": "conv32", "batch_size": 8, "steps": steps, "options": TINY,
           "checkpoint_every": 2, "sample_every": 100, **extra}
    return api.train(cfg, out=tmp_path / name, data=tiny_data())


def test_round_trip_restores_everything(tmp_path):
    result = _run(tmp_path, "a", 2)
    path = result.run_dir / "checkpoints" / "step-0000002.safetensors"
    tensors, meta = ckpt.load(path)
    assert meta["step"] == 2 and meta["arch"]["name"] == "conv32"
    assert meta["arch"]["options"]["width"] == 8
    assert meta["arch"]["distribution"] == "gan-zoo" and "conv" in meta["plugins"]
    assert {"rng.torch", "rng.sampler", "fixed_z"} <= set(tensors)
    assert any(k.startswith("opt_g.") for k in tensors) and any(k.startswith("opt_d.") for k in tensors)
    G = result.trainer.G
    for k, v in G.state_dict().items():
        assert torch.equal(tensors[f"G.{k}"], v)


def test_resume_equals_uninterrupted_bit_for_bit(tmp_path):
    straight = _run(tmp_path, "straight", 6)
    _run(tmp_path, "split", 3)
    resumed = api.train(resume=tmp_path / "split", steps=6, data=tiny_data())
    assert resumed.step == 6
    for module in ("G", "D", "G_ema"):
        a = getattr(straight.trainer, module).state_dict()
        b = getattr(resumed.trainer, module).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), module
    sa, sb = straight.trainer.opt_g.state_dict(), resumed.trainer.opt_g.state_dict()
    assert all(torch.equal(sa["state"][0][k], sb["state"][0][k]) for k in ("exp_avg", "exp_avg_sq"))


def test_metrics_continue_on_resume(tmp_path):
    _run(tmp_path, "r", 4, log_every=1)
    api.train(resume=tmp_path / "r", steps=6, data=tiny_data())
    from gan_zoo.training.rundir import RunDir

    steps = [r["step"] for r in RunDir(tmp_path / "r").read_metrics()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_keeps_last_k(tmp_path):
    result = _run(tmp_path, "k", 8, keep_checkpoints=2)
    names = sorted(p.name for p in (result.run_dir / "checkpoints").glob("step-*"))
    assert names == ["step-0000006.safetensors", "step-0000008.safetensors"]


def test_damaged_file_is_rejected(tmp_path):
    result = _run(tmp_path, "d", 2)
    path = result.run_dir / "checkpoints" / "step-0000002.safetensors"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    bad = tmp_path / "flipped.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        ckpt.load(bad)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="damaged or truncated"):
        ckpt.load(cut)


def test_pickle_files_are_refused(tmp_path):
    p = tmp_path / "model.pt"
    p.write_bytes(b"\x80\x04not loaded")
    with pytest.raises(CheckpointError, match="never unpickles"):
        ckpt.load(p)


def test_atomic_save_never_leaves_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "c.safetensors"
    ckpt.save(target, {"a": torch.zeros(3)}, {"step": 1})
    before = target.read_bytes()

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt.os, "fsync", boom)
    with pytest.raises(OSError):
        ckpt.save(target, {"a": torch.ones(3)}, {"step": 2})
    assert target.read_bytes() == before
    assert list(tmp_path.iterdir()) == [target]


def test_load_generator_and_sample(tmp_path):
    result = _run(tmp_path, "s", 2)
    G, meta = api.load_generator(result.run_dir)
    assert not G.training and meta["step"] == 2
    images = api.sample(G, 5, seed=1)
    assert images.shape == (5, 3, 32, 32)
    assert torch.equal(images, api.sample(G, 5, seed=1))
    arr = np.asarray(images)
    assert arr.min() >= -1 and arr.max() <= 1
