"""The run directory (`train --out`, `--resume`) is the user's disk: gan-zoo writes a new run only
into a new or empty folder or one of its own runs, deletes only its own temporary files, never
waits on a FIFO named like one of its files or appends through a symbolic link, and lets one
training at a time write a run (a lock that names the process holding it and that a SIGKILL
does not leave behind).

Anything that could hang runs either in a subprocess with a timeout or under an alarm, so that a
hang fails the test instead of stopping the suite.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gan_zoo import api
from gan_zoo.errors import GanZooError, UsageError
from gan_zoo.training import runlock
from gan_zoo.training.rundir import RunDir
from gan_zoo.training.trainer import Callbacks
from gan_zoo.util import atomic

from ..conftest import write_images
from .helpers import REPO, TINY_ARGS, cli_env, no_hang, tiny_config, tiny_data
from .test_hostile_config import invoke

TIMEOUT = 120  # seconds for a subprocess; only reached when something hangs


@pytest.fixture(autouse=True)
def _no_plots(monkeypatch):
    """Live curves and evolution strips are not what these tests are about: skip their CPU."""
    monkeypatch.setattr("gan_zoo.api.CALLBACK_FACTORIES", [])


@pytest.fixture
def tiny_loader(monkeypatch):
    monkeypatch.setattr("gan_zoo.api.load_dataset", lambda data, res: tiny_data(res=res))


@pytest.fixture
def no_training(monkeypatch, tiny_loader):
    """For starts that must be refused: if one got through, fail at once instead of training."""

    def refuse(self, *args, **kwargs):
        raise AssertionError("the run was accepted and training started")

    monkeypatch.setattr("gan_zoo.training.trainer.Trainer.train", refuse)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_images(tmp_path_factory.mktemp("rundir-data") / "images", 16, size=32)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data) -> Path:
    """A finished 2-step run with a checkpoint at each step (copied by `run` for each test)."""
    out = tmp_path_factory.mktemp("rundir-base") / "run"
    api.train(tiny_config(data=str(data), steps=2, checkpoint_every=1, batch_size=4), out=out)
    return out


@pytest.fixture
def run(tmp_path, trained) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "run", symlinks=True))


def _new_run(out: Path, *extra: str) -> tuple[int, str]:
    return invoke("train", *TINY_ARGS, "--steps", "2", "--batch-size", "4", "--out", str(out),
                  "-q", *extra)


def _listing(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


# ---------------------------------------------------------------- 4. what --out may write into

FOREIGN = {
    "a hidden .tmp file": {".thesis.tmp": b"chapter 3, the only copy"},
    "another tool's config.toml": {"config.toml": b'[tool.black]\nline-length = 99\n'},
    "a config.toml gan-zoo could read": {"config.toml": b"steps = 3\n"},
    "a plain file": {"notes.txt": b"my notes"},
    "a subfolder": {"data/img.png": b"\x89PNG"},
    "a metrics.jsonl": {"metrics.jsonl": b'{"step": 1, "loss": 0.5}\n'},
    "our folder names, another's config": {"config.toml": b'name = "x"\n',
                                           "checkpoints/step-0000001.safetensors": b"theirs",
                                           "samples/a.png": b""},
    "a broken symbolic link": {"link": None},
}


@pytest.mark.parametrize("case", sorted(FOREIGN))
def test_new_run_refuses_a_folder_that_is_not_a_run(tmp_path, no_training, case):
    out = tmp_path / "out"
    for name, content in FOREIGN[case].items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            path.symlink_to(tmp_path / "nowhere")
        else:
            path.write_bytes(content)
    before = _listing(out)
    code, text = _new_run(out)
    assert code == 2 and "is not empty and is not a gan-zoo run" in text, text
    assert _listing(out) == before  # nothing deleted, overwritten or added (not even a lock)


def test_new_run_into_a_file_is_one_clear_error(tmp_path, no_training):
    out = tmp_path / "out"
    out.write_bytes(b"mine")
    code, text = _new_run(out)
    assert code == 2 and "exists and is not a folder" in text
    assert out.read_bytes() == b"mine"


def test_a_run_with_checkpoints_points_to_resume(run, no_training):
    code, text = _new_run(run)
    assert code == 2 and f"already holds a run; use --resume '{run}'" in text
    # --nproc: said once by the launcher, before any process starts.
    code, text = _new_run(run, "--nproc", "2")
    assert code == 2 and "already holds a run" in text and "starting 2 processes" not in text


@pytest.mark.parametrize("args", [["train", "--out", ""], ["train", "--resume", ""],
                                  ["train", "--out", " "], ["train", *TINY_ARGS, "--out", ""]])
def test_empty_paths_are_refused(tmp_path, monkeypatch, no_training, args):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    code, text = invoke(*args)
    assert code == 2 and "needs a folder name, not an empty path" in text, text
    assert list(cwd.iterdir()) == [] and not (tmp_path / "runs").exists()


def test_empty_paths_are_refused_by_the_api(tmp_path, monkeypatch, tiny_loader):
    monkeypatch.chdir(tmp_path)
    for kwargs in ({"out": ""}, {"resume": ""}):
        with pytest.raises(UsageError, match="not an empty path"):
            api.prepare_training(tiny_config(), **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_sample_to_an_empty_path_is_refused(run, tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    code, text = invoke("sample", str(run), "-n", "2", "--out", "")
    assert code == 2, text
    assert list(cwd.iterdir()) == []


def _crash_before_the_first_checkpoint(out: Path, data: Path) -> None:
    """A new run killed at step 2, before its first checkpoint (at step 100)."""

    def crash(trainer, stats):
        if trainer.step == 2:
            raise KeyboardInterrupt

    cfg = tiny_config(data=str(data), steps=4, checkpoint_every=100, batch_size=4)
    with pytest.raises(KeyboardInterrupt):
        api.train(cfg, out=out, callbacks=Callbacks(on_step=[crash]))


def test_the_same_command_restarts_a_run_that_crashed_before_its_first_checkpoint(tmp_path, data):
    out = tmp_path / "run"
    _crash_before_the_first_checkpoint(out, data)
    assert [r["step"] for r in RunDir(out).read_metrics()] == [1, 2]
    assert not RunDir(out).step_checkpoints() and (out / runlock.LOCK_NAME).exists()
    config = tmp_path / "log-every-step.toml"
    config.write_text("log_every = 1\n")
    code, text = _new_run(out, "--config", str(config), "--data", str(data), "--steps", "3",
                          "--checkpoint-every", "3")
    assert code == 0, text
    # The lost attempt's steps are not logged twice.
    assert [r["step"] for r in RunDir(out).read_metrics()] == [1, 2, 3]


@pytest.mark.parametrize("left", ["only the lock", "the lock and the folders",
                                  "a run of gan-zoo before the lock"])
def test_a_start_that_died_early_can_be_run_again(tmp_path, data, left):
    out = tmp_path / "run"
    out.mkdir()
    if left != "a run of gan-zoo before the lock":
        (out / runlock.LOCK_NAME).write_bytes(b"pid 999999999\nhost elsewhere\n")  # long dead
    if left != "only the lock":
        (out / "samples").mkdir()
        (out / "checkpoints").mkdir()
    if left == "a run of gan-zoo before the lock":
        (out / "config.toml").write_text(f'arch = "conv32"\ndata = "{data}"\n')
    code, text = _new_run(out, "--data", str(data), "--checkpoint-every", "2")
    assert code == 0, text
    assert [s for s, _ in RunDir(out).step_checkpoints()] == [2]
    assert (out / runlock.LOCK_NAME).read_bytes() == b""  # released, naming nobody


def test_resume_deletes_only_our_own_temporary_files(run, tiny_loader):
    users = {".thesis.tmp": b"the only copy", "checkpoints/.notes.tmp": b"n",
             "samples/.x.png.tmp": b"x", ".config.toml.abcd1234.tmp": b"not our name",
             ".step-0000009.safetensors.ganzoo-abcd1234.tmp": b"our name, wrong folder",
             ".mine.txt.ganzoo-abcd1234.tmp": b"our pattern, not a file a run writes",
             "samples/.step-0000001.png.ganzoo-ABCD1234.tmp": b"not mkstemp's letters"}
    ours = [".config.toml.ganzoo-k2j4h5g6.tmp", ".metrics.jsonl.ganzoo-0_a9zz00.tmp",
            "checkpoints/.step-0000009.safetensors.ganzoo-abcdefgh.tmp",
            "checkpoints/.best.safetensors.ganzoo-abcdefgh.tmp",
            "samples/.step-0000009.png.ganzoo-abcdefgh.tmp"]
    for name, content in users.items():
        (run / name).write_bytes(content)
    for name in ours:
        (run / name).write_bytes(b"half a file")
    (run / "checkpoints/.step-0000008.safetensors.ganzoo-abcdefgh.tmp").mkdir()  # not a file
    code, text = invoke("train", "--resume", str(run), "--steps", "3", "-q")
    assert code == 0, text
    assert {name: (run / name).read_bytes() for name in users} == users
    assert not [name for name in ours if (run / name).exists()]
    assert (run / "checkpoints/.step-0000008.safetensors.ganzoo-abcdefgh.tmp").is_dir()


def test_atomic_temporary_names_are_recognised_exactly(tmp_path):
    target = tmp_path / "config.toml"
    with atomic.replacing(target) as tmp:
        assert atomic.temporary_target(tmp.name) == "config.toml"
    for name in (".thesis.tmp", ".config.toml.abcd1234.tmp", "config.toml.ganzoo-abcd1234.tmp",
                 ".config.toml.ganzoo-abcd1234.tmp.bak", ".config.toml.ganzoo-abc.tmp"):
        assert atomic.temporary_target(name) is None, name


# ---------------------------------------------------------------- 5. FIFOs and symbolic links

def _ganzoo(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "gan_zoo", *args], env=cli_env(), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> tuple[int, str]:
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError(f"hung: {proc.args}") from None
    text = out + err
    assert "Traceback" not in text, text
    errors = [line for line in text.splitlines() if line.startswith("Error:")]
    assert len(errors) == (1 if proc.returncode else 0), text
    return proc.returncode, text


def test_step_checkpoints_leave_out_what_is_not_a_regular_file(run):
    os.mkfifo(RunDir(run).step_checkpoint(9))
    (RunDir(run).step_checkpoint(8)).mkdir()
    assert [s for s, _ in RunDir(run).step_checkpoints()] == [2, 1]
    with no_hang():
        path, _, meta, problems = RunDir(run).latest_valid()
    assert meta["step"] == 2 and len(problems) == 2
    assert "step-0000009.safetensors' is not a regular file (a FIFO)" in problems[0]
    RunDir(run).prune(1)  # rotation never deletes what it did not write
    assert RunDir(run).step_checkpoint(9).exists() and RunDir(run).step_checkpoint(8).is_dir()


def test_a_fifo_named_like_the_latest_checkpoint_neither_blocks_sample_nor_resume(run, tmp_path):
    latest = RunDir(run).step_checkpoint(2)
    latest.unlink()
    os.mkfifo(latest)
    sample = _ganzoo("sample", str(run), "-n", "2", "--out", str(tmp_path / "grid.png"))
    resume = _ganzoo("train", "--resume", str(run), "--steps", "3")
    code, text = _finish(sample)
    assert code == 0 and "(step 1)" in text and "not a regular file (a FIFO)" in text, text
    # gan-zoo's own warning: one line, not Python's "file.py:123: UserWarning" form
    assert "Warning: skipped damaged checkpoint" in text and "UserWarning" not in text, text
    code, text = _finish(resume)
    assert code == 0 and "resuming from" in text and "(step 1)" in text, text
    assert "skipped damaged checkpoint" in text and "(a FIFO)" in text
    assert [s for s, _ in RunDir(run).step_checkpoints()] == [3, 2, 1]  # the FIFO replaced


def test_a_fifo_checkpoint_named_on_the_command_line_is_one_error(run, tmp_path):
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    os.mkfifo(RunDir(run).best_path)
    by_name = _ganzoo("sample", str(fifo), "-n", "2", "--out", str(tmp_path / "a.png"))
    best = _ganzoo("sample", str(run), "--best", "-n", "2", "--out", str(tmp_path / "b.png"))
    for proc in (by_name, best):
        code, text = _finish(proc)
        assert code == 1 and "(a FIFO)" in text, text
    assert not (tmp_path / "a.png").exists() and not (tmp_path / "b.png").exists()


def test_a_run_whose_only_checkpoint_is_a_fifo_is_one_error(run):
    for _, path in RunDir(run).step_checkpoints():
        path.unlink()
        os.mkfifo(path)
    with no_hang():
        code, text = invoke("train", "--resume", str(run), "-q")
    assert code == 1 and "no usable checkpoint" in text and "(a FIFO)" in text, text


@pytest.mark.parametrize("kind", ["fifo", "symlink"])
def test_metrics_that_are_not_a_regular_file_are_refused_on_resume(run, tmp_path, tiny_loader, kind):
    metrics = RunDir(run).metrics_path
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"someone else's file\n")
    metrics.unlink()
    if kind == "fifo":
        os.mkfifo(metrics)
    else:
        metrics.symlink_to(victim)
    with no_hang():
        code, text = invoke("train", "--resume", str(run), "--steps", "4", "-q")
    assert code == 1 and "metrics.jsonl" in text, text
    assert ("(a FIFO)" if kind == "fifo" else "is a symbolic link") in text, text
    assert victim.read_bytes() == b"someone else's file\n"
    assert [s for s, _ in RunDir(run).step_checkpoints()] == [2, 1]  # refused before training


def test_training_never_appends_to_metrics_through_a_symbolic_link(tmp_path, data):
    out = tmp_path / "run"
    _crash_before_the_first_checkpoint(out, data)
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"someone else's file\n")
    RunDir(out).metrics_path.unlink()
    RunDir(out).metrics_path.symlink_to(victim)
    code, text = _new_run(out, "--data", str(data))
    assert code == 1 and "is a symbolic link" in text, text
    assert victim.read_bytes() == b"someone else's file\n"
    with pytest.raises(GanZooError, match="is a symbolic link"):
        RunDir(out).log({"step": 1})
    assert victim.read_bytes() == b"someone else's file\n"


def test_log_to_a_fifo_metrics_file_does_not_block(tmp_path):
    run = RunDir(tmp_path)
    os.mkfifo(run.metrics_path)
    with no_hang(), pytest.raises(GanZooError, match=r"cannot write metrics .*\(a FIFO\)"):
        run.log({"step": 1})


@pytest.mark.parametrize("where", ["metrics.jsonl", "samples/step-0000001.png", "samples.png"])
def test_report_on_a_run_with_a_fifo_returns(run, tmp_path, where):
    path = run / where
    path.unlink(missing_ok=True)
    os.mkfifo(path)
    with no_hang(60):
        code, text = invoke("report", str(run), "--out", str(tmp_path / "report.html"))
    assert code in (0, 1), text


# ---------------------------------------------------------------- 6. one training per run

def _lock_owner(run: Path) -> str:
    try:
        return (run / runlock.LOCK_NAME).read_text()
    except FileNotFoundError:
        return ""


def test_a_second_training_into_a_running_run_is_refused_and_a_killed_ones_lock_is_free(
        tmp_path, data):
    run = tmp_path / "run"
    config = tmp_path / "log-every-step.toml"
    config.write_text("log_every = 1\n")
    args = [*TINY_ARGS, "--config", str(config), "--data", str(data), "--batch-size", "4",
            "--checkpoint-every", "5", "--sample-every", "100000", "-q"]
    first = _ganzoo("train", *args, "--steps", "100000", "--out", str(run))
    try:
        deadline = time.monotonic() + TIMEOUT
        while not RunDir(run).step_checkpoints():  # under way, and resumable
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first training did not start"
            time.sleep(0.05)
        assert _lock_owner(run).startswith(f"pid {first.pid}\n")
        second_new = _ganzoo("train", *args, "--steps", "10", "--out", str(run))
        second_resume = _ganzoo("train", "--resume", str(run), "--steps", "10", "-q")
        launched = _ganzoo("train", "--resume", str(run), "--steps", "10", "--nproc", "2")
        for proc in (second_new, second_resume, launched):
            code, text = _finish(proc)
            assert code == 1, text
            assert f"is in use by another training (process {first.pid} holds its lock" in text
        assert first.poll() is None  # undisturbed
        logged = [r["step"] for r in RunDir(run).read_metrics()]
        assert logged == list(range(1, len(logged) + 1))  # one writer, no interleaving
    finally:
        first.kill()  # SIGKILL: no chance to release the lock
        first.communicate()
    assert _lock_owner(run).startswith(f"pid {first.pid}\n")  # still names the dead process
    latest = RunDir(run).step_checkpoints()[0][0]
    code, text = _finish(_ganzoo("train", "--resume", str(run), "--steps", str(latest + 1)))
    assert code == 0 and f"(step {latest})" in text, text
    assert _lock_owner(run) == ""  # released at the end


def test_lock_is_reentrant_in_one_process_and_released_at_the_end(tmp_path):
    first = runlock.acquire(tmp_path)
    assert first is not None and runlock.acquire(tmp_path) is first
    runlock.check_free(tmp_path)  # our own lock is no obstacle
    first.release()
    assert (tmp_path / runlock.LOCK_NAME).read_bytes() == b""
    again = runlock.acquire(tmp_path)
    assert again is not None and again is not first
    again.release()


def test_a_hostile_lock_file_is_one_error(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / runlock.LOCK_NAME).symlink_to(tmp_path / "elsewhere")
    (tmp_path / "b").mkdir()
    os.mkfifo(tmp_path / "b" / runlock.LOCK_NAME)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / runlock.LOCK_NAME).mkdir()
    for name in "abc":
        with no_hang(), pytest.raises(GanZooError, match="cannot lock the run directory"):
            runlock.acquire(tmp_path / name)
    assert not (tmp_path / "elsewhere").exists()


def test_the_owner_named_in_a_lock_file_is_escaped(tmp_path):
    """The PID and host come from a file anyone could have written."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], "
         "os.O_RDWR | os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX); "
         "os.write(fd, b'pid 12\\nhost \\x1b[31mevil\\n'); print('locked', flush=True); "
         "time.sleep(60)", str(tmp_path / runlock.LOCK_NAME)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        for attempt in (runlock.check_free, runlock.acquire):
            with pytest.raises(runlock.RunInUseError) as info:
                attempt(tmp_path)
            message = str(info.value)
            assert "process 12 on host '\\x1b[31mevil'" in message and "\x1b" not in message
    finally:
        holder.kill()
        holder.wait()
