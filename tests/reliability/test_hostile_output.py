"""An output folder that is read-only, or whose disk fills up: one clear message, a non-zero exit
code, and nothing already saved is lost (the checkpoints on disk still verify, no half-written
file is left, and the run resumes once there is room again).

Read-only is real where the platform allows (`chmod` for ordinary users; for root, who ignores
permissions, the immutable attribute via `chattr +i`); a full disk is simulated by making the
writes of one module fail with ENOSPC, exactly as the kernel reports it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gan_zoo import api
from gan_zoo.cli import cli
from gan_zoo.errors import CheckpointError
from gan_zoo.training.rundir import RunDir
from gan_zoo.training.trainer import Callbacks
from gan_zoo.util.regular_files import open_regular

from .helpers import TINY_ARGS, assert_all_checkpoints_sound, replaced_by, tiny_config, tiny_data


@pytest.fixture(autouse=True)
def _no_plots(monkeypatch):
    """Live curves and evolution strips are not what these tests are about: skip their CPU."""
    monkeypatch.setattr("gan_zoo.api.CALLBACK_FACTORIES", [])


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == (1 if result.exit_code else 0), result.output
    return result.exit_code, result.output


@contextlib.contextmanager
def read_only(*folders: Path) -> Iterator[None]:
    """Make folders unwritable for real, or skip where this platform cannot."""
    if os.geteuid() != 0:
        modes = [f.stat().st_mode for f in folders]
        for f in folders:
            f.chmod(0o555)
        try:
            yield
        finally:
            for f, mode in zip(folders, modes, strict=True):
                f.chmod(mode)
        return
    chattr = shutil.which("chattr")
    done: list[Path] = []
    try:
        for f in folders:
            if chattr is None or subprocess.run([chattr, "+i", str(f)],
                                                capture_output=True).returncode:
                pytest.skip("running as root without a file system that supports chattr +i")
            done.append(f)
        yield
    finally:
        for f in done:
            subprocess.run([chattr, "-i", str(f)], check=True)


@pytest.fixture
def tiny_loader(monkeypatch):
    monkeypatch.setattr("gan_zoo.api.load_dataset", lambda data, res: tiny_data(res=res))


def _snapshot(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for _, p in RunDir(run).step_checkpoints()}


def test_new_run_in_a_read_only_folder(tmp_path, tiny_loader):
    parent = tmp_path / "locked"
    parent.mkdir()
    with read_only(parent):
        code, out = _invoke("train", *TINY_ARGS, "--steps", "2", "--out", str(parent / "run"))
    assert code == 1 and "cannot write to output folder" in out
    assert not (parent / "run").exists()


def test_resume_when_the_run_became_read_only_loses_nothing(tmp_path, tiny_loader):
    run = tmp_path / "run"
    api.train(tiny_config(sample_grid=4, steps=4, checkpoint_every=2), out=run, data=tiny_data())
    before = _snapshot(run)
    metrics = RunDir(run).metrics_path.read_bytes()
    with read_only(run, RunDir(run).checkpoints_dir):
        code, out = _invoke("train", "--resume", str(run), "--steps", "6")
    assert code == 1 and "cannot write" in out
    assert _snapshot(run) == before and RunDir(run).metrics_path.read_bytes() == metrics
    # Writable again: the resume continues where the run stopped.
    code, out = _invoke("train", "--resume", str(run), "--steps", "6", "-q")
    assert code == 0 and [s for s, _ in RunDir(run).step_checkpoints()] == [6, 4, 2]


def test_checkpoints_folder_turning_read_only_mid_run(tmp_path):
    run = tmp_path / "run"
    lock = contextlib.ExitStack()

    def lock_after_step_3(trainer, stats):
        if trainer.step == 3:
            lock.enter_context(read_only(RunDir(run).checkpoints_dir))

    with lock, pytest.raises(CheckpointError) as info:
        api.train(tiny_config(sample_grid=4, steps=8, checkpoint_every=2), out=run, data=tiny_data(),
                  callbacks=Callbacks(on_step=[lock_after_step_3]))
    message = str(info.value)
    assert "cannot write the checkpoint of step 4" in message and "already saved are intact" in message
    assert assert_all_checkpoints_sound(run) == 1 and not list(run.rglob(".*.tmp"))
    result = api.train(resume=run, data=tiny_data())
    assert result.step == 8


class _DiskFull:
    """Stands in for `open` in gan_zoo.util.atomic (which writes every file under a temporary name
    `.NAME.ganzoo-XXXXXXXX.tmp`): the n-th file whose NAME ends with `suffix` hits ENOSPC after half its
    bytes (as a real full disk does), like every one after it."""

    def __init__(self, nth: int, suffix: str):
        self.nth, self.suffix, self.opened = nth, suffix, 0

    def __call__(self, file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        fh = open(file, mode, *args, **kwargs)  # noqa: SIM115 (the caller closes it)
        if not replaced_by(file).endswith(self.suffix):
            return fh
        self.opened += 1
        if self.opened < self.nth:
            return fh
        real_write = fh.write

        def write(data: bytes) -> int:
            real_write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        fh.write = write
        return fh


def test_disk_full_while_writing_a_checkpoint(tmp_path, tiny_loader, monkeypatch):
    run = tmp_path / "run"
    monkeypatch.setattr("gan_zoo.util.atomic.open", _DiskFull(3, ".safetensors"), raising=False)
    code, out = _invoke("train", *TINY_ARGS, "--steps", "10", "--checkpoint-every", "2",
                        "--batch-size", "8", "--out", str(run), "-q")
    assert code == 1 and "cannot write the checkpoint of step 6" in out
    assert "No space left on device" in out and f"ganzoo train --resume {run}" in out
    assert [s for s, _ in RunDir(run).step_checkpoints()] == [4, 2]
    assert assert_all_checkpoints_sound(run) == 2 and not list(run.rglob(".*.tmp"))
    monkeypatch.delattr("gan_zoo.util.atomic.open")  # room again
    code, out = _invoke("train", "--resume", str(run), "-q")
    assert code == 0 and [s for s, _ in RunDir(run).step_checkpoints()] == [10, 8, 6]


def test_disk_full_while_writing_metrics_or_samples(tmp_path, tiny_loader, monkeypatch):
    # Metrics: the append fails.
    run = tmp_path / "m"
    calls = {"n": 0}

    def full_open(path, mode="rb", *args, **kwargs):
        if "a" in mode:
            calls["n"] += 1
            if calls["n"] >= 3:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return open_regular(path, mode, *args, **kwargs)

    monkeypatch.setattr("gan_zoo.training.rundir.open_regular", full_open)
    cfg = tmp_path / "every-step.toml"
    cfg.write_text("log_every = 1\nsample_grid = 4\n")
    code, out = _invoke("train", *TINY_ARGS, "--config", str(cfg), "--steps", "6",
                        "--checkpoint-every", "1", "--batch-size", "8", "--out", str(run), "-q")
    assert code == 1 and "cannot write metrics" in out and "No space left on device" in out
    assert assert_all_checkpoints_sound(run) >= 1
    monkeypatch.undo()
    monkeypatch.setattr("gan_zoo.api.load_dataset", lambda data, res: tiny_data(res=res))
    # Sample grids: the PNG write fails.
    run = tmp_path / "s"
    monkeypatch.setattr("gan_zoo.util.atomic.open", _DiskFull(2, ".png"), raising=False)
    code, out = _invoke("train", *TINY_ARGS, "--steps", "6", "--checkpoint-every", "1",
                        "--sample-every", "2", "--batch-size", "8", "--out", str(run), "-q")
    assert code == 1 and "No space left on device" in out
    assert assert_all_checkpoints_sound(run) >= 1 and not list(run.rglob(".*.tmp"))
