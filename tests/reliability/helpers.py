"""Shared pieces of the reliability suite: a tiny model, tiny data, temporary plugins."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gan_zoo.data import ImageArray
from gan_zoo.plugins import plugin_system
from gan_zoo.training import checkpoint as ckpt
from gan_zoo.training.rundir import RunDir
from gan_zoo.training.trainer import Callbacks
from gan_zoo.util import atomic

TINY = {"conv32": {"width": 8, "latent_dim": 16}}
# Command-line form of TINY, for subprocess runs.
TINY_ARGS = ["--arch", "conv32", "-o", "conv32.width=8", "-o", "conv32.latent_dim=16"]
REPO = Path(__file__).resolve().parents[2]


def tiny_data(n: int = 32, res: int = 32, seed: int = 0) -> ImageArray:
    rng = np.random.default_rng(seed)
    return ImageArray(rng.integers(0, 256, (n, res, res, 3), dtype=np.uint8), "test")


def labelled_data(n: int = 24, classes: tuple[str, ...] = ("a", "b", "c")) -> ImageArray:
    """tiny_data(n) labelled for a conditional run: image i is of classes[i % len(classes)]."""
    return ImageArray(tiny_data(n).images, "labelled",
                      labels=np.arange(n, dtype=np.int64) % len(classes), classes=classes)


def final_checkpoint(run: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and metadata of a run's latest checkpoint, which must be sound."""
    _, tensors, meta, problems = RunDir(run).latest_valid()
    assert not problems
    return tensors, meta


def stop_at(step: int) -> Callbacks:
    """Callbacks that stop a run after `step` steps (the first half of a resume test)."""
    def stop(trainer: Any, stats: dict[str, float]) -> None:
        if trainer.step == step:
            trainer.stop_reason = "test stop"

    return Callbacks(on_step=[stop])


def replaced_by(temporary: Any) -> str:
    """The name of the file a gan_zoo.util.atomic temporary file `.NAME.ganzoo-XXXXXXXX.tmp` will
    replace ('' for any other file)."""
    return atomic.temporary_target(Path(temporary).name) or ""


def tiny_config(**extra: Any) -> dict[str, Any]:
    return {"arch": "conv32", "batch_size": 8, "steps": 8, "options": dict(TINY),
            "checkpoint_every": 2, "sample_every": 1000, "log_every": 1, **extra}


@contextlib.contextmanager
def temp_plugin(plugin: object, name: str) -> Iterator[None]:
    """Register an in-process plugin for the duration of a test."""
    plugin_system().add_plugin(plugin, name)
    try:
        yield
    finally:
        plugin_system().remove_plugin(name)


def state_of(tensors: dict[str, torch.Tensor], prefixes=("G.", "D.", "G_ema.", "opt_")) -> dict:
    return {k: v for k, v in tensors.items() if k.startswith(prefixes)}


def assert_bit_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"differ: {different[:5]}"


def checkpoint_steps(run: Path) -> list[int]:
    return sorted(step for step, _ in RunDir(run).step_checkpoints())


def assert_all_checkpoints_sound(run: Path) -> int:
    """Every step checkpoint verifies and holds only finite numbers; returns how many."""
    found = RunDir(run).step_checkpoints()
    for step, path in found:
        tensors, meta = ckpt.load(path)
        assert meta["step"] == step
        for name, t in tensors.items():
            assert not t.is_floating_point() or torch.isfinite(t).all(), (path, name)
    return len(found)


def cli_env() -> dict[str, str]:
    """Environment of `ganzoo` subprocesses: one thread each (the cores are shared), and the
    same thread count everywhere so runs are bit-comparable."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def ganzoo(*args: str, **kw: Any) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gan_zoo", *args], env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@contextlib.contextmanager
def no_hang(seconds: float = 30) -> Iterator[None]:
    """Fail (instead of waiting forever) when the block hangs, e.g. opening a FIFO or decoding
    without end: the alarm interrupts a blocked system call in this, the main, thread. A bound
    on a hang, not a speed test: it is far above any normal duration."""

    def hung(signum, frame):
        raise AssertionError(f"hung for {seconds} s (blocked on a FIFO?)")

    old = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
