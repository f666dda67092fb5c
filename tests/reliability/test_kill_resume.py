"""Crash safety with real processes: `python -m gan_zoo train` killed with SIGKILL at chosen and
random moments (mid-checkpoint-write, before the rename, before pruning, mid-config-write, at a
random time), stopped with SIGTERM and SIGINT, and resumed with `--resume` each time.

After every kill: every step checkpoint on disk verifies (a half-written one never appears
under its final name), the config is intact and resume starts from the newest checkpoint. At
the end the run equals an uninterrupted one bit for bit (weights, EMA, Adam moments and step
counters, RNG and data order), its metrics hold every step exactly once with the same values,
and exactly the last K checkpoints remain.

The default suite does a handful of kills; ``GANZOO_KILL_SOAK=N`` adds a soak run of N random
kills (``GANZOO_KILL_SOAK_REPORT=FILE`` writes its counts as JSON).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from gan_zoo.training import checkpoint as ckpt
from gan_zoo.training.rundir import RunDir
from gan_zoo.util.tomlio import read_toml

from ..conftest import write_images
from .helpers import REPO, TINY_ARGS, assert_all_checkpoints_sound, assert_bit_identical, cli_env

KEEP = 2
# Seconds for any one process; only reached when something hangs (or starves: a niced soak
# on a busy machine gets little CPU, so it can be raised).
TIMEOUT = float(os.environ.get("GANZOO_KILL_TIMEOUT", "180"))


@dataclass
class Plan:
    steps: int
    every: int
    seed: int = 1

    def args(self, data: Path, run: Path) -> list[str]:
        config = run.parent / f"{run.name}.toml"
        config.write_text("log_every = 1\n")  # every step in metrics.jsonl (no flag for it)
        return [*TINY_ARGS, "--config", str(config), "--data", str(data), "--steps", str(self.steps),
                "--batch-size", "8",
                "--checkpoint-every", str(self.every), "--keep-checkpoints", str(KEEP),
                "--sample-every", "1000", "--seed", str(self.seed), "--out", str(run)]


@dataclass
class Tally:
    """What the kills did, for the assertions and the soak report."""

    kills: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    partial_files_left: int = 0  # kills that left a temporary (half-)written file behind
    extra_checkpoints_left: int = 0  # kills between writing a checkpoint and pruning
    steps_replayed: int = 0  # steps done after the last checkpoint and lost to the kill
    signal_stops: int = 0
    resumes: int = 0

    def add(self, kind: str) -> None:
        self.kills += 1
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1


_STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_stray_processes():
    """A failing test must not leave its runs (the reference, a frozen one) behind."""
    yield
    while _STARTED:
        proc = _STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _start(args: list[str], log: Path, fault: str | None = None, marker: Path | None = None
           ) -> subprocess.Popen:
    run = Path(args[args.index("--resume" if "--resume" in args else "--out") + 1])
    metrics_inode = _inode(RunDir(run).metrics_path)  # before the process can touch it
    env = cli_env()
    module = "gan_zoo"
    if fault:
        env.update(GANZOO_FAULT=fault, GANZOO_FAULT_MARKER=str(marker))
        module = "tests.reliability.fault_driver"
    with open(log, "w") as out:  # a file, not a pipe: a killed child never blocks on it
        proc = subprocess.Popen([sys.executable, "-m", module, "train", *args], env=env,
                                cwd=REPO, stdout=subprocess.DEVNULL, stderr=out)
    proc.metrics_inode = metrics_inode  # type: ignore[attr-defined]
    _STARTED.append(proc)
    return proc


def _wait_for(proc: subprocess.Popen, log: Path, ready, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"process ended (rc {proc.returncode}) before {what}:\n"
                                 f"{log.read_text()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()}")
        time.sleep(0.01)


def _logged_steps(run: Path) -> list[int]:
    return [r["step"] for r in RunDir(run).read_metrics() if "step" in r]


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def _live_after(proc: subprocess.Popen, run: Path, step: int):
    """True once `proc` has logged a step beyond `step` (training is under way). A resume first
    rewinds metrics.jsonl by replacing it (a new inode); until then the lines are the killed
    process's, which must not count."""
    metrics, old = RunDir(run).metrics_path, proc.metrics_inode  # type: ignore[attr-defined]
    return lambda: _inode(metrics) != old and any(s > step for s in _logged_steps(run))


def _finish(proc: subprocess.Popen, log: Path) -> str:
    try:
        proc.wait(TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"process hung:\n{log.read_text()}") from None
    text = log.read_text()
    assert "Traceback" not in text, text
    return text


def _latest(run: Path) -> int:
    steps = RunDir(run).step_checkpoints()
    return steps[0][0] if steps else 0


def _check_after_kill(run: Path, config: dict, tally: Tally) -> int:
    """The state a kill leaves: sound checkpoints, intact config; returns the resume step."""
    # Pruning follows each save, so K+1 are left by a kill between the two (K+2 by two such
    # kills in a row, before a resumed run's first save); every one of them is sound.
    assert_all_checkpoints_sound(run)
    # Whole, never cut (compared item by item: a newer gan-zoo may add defaulted keys).
    assert config.items() <= read_toml(RunDir(run).config_path).items()
    tmp = list(run.rglob(".*.tmp"))
    tally.partial_files_left += bool(tmp)
    tally.extra_checkpoints_left += len(RunDir(run).step_checkpoints()) > KEEP
    resume_from = _latest(run)
    done = max(_logged_steps(run), default=0)
    tally.steps_replayed += max(0, done - resume_from)
    return resume_from


def _resume(plan: Plan, run: Path, log: Path, fault: str | None = None,
            marker: Path | None = None) -> subprocess.Popen:
    return _start(["--resume", str(run)], log, fault, marker)


def _kill_at_fault(proc: subprocess.Popen, log: Path, marker: Path) -> None:
    _wait_for(proc, log, marker.exists, f"fault point {marker.name}")
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(TIMEOUT) == -signal.SIGKILL
    marker.unlink()


def _kill_randomly(proc: subprocess.Popen, log: Path, run: Path, after: int, rng: random.Random,
                   max_delay: float) -> bool:
    """SIGKILL at a random moment once training is under way; False if it finished first."""
    _wait_for(proc, log, _live_after(proc, run, after), "training to start")
    time.sleep(rng.uniform(0, max_delay))
    proc.send_signal(signal.SIGKILL)
    rc = proc.wait(TIMEOUT)
    if rc == 0:
        return False
    assert rc == -signal.SIGKILL, log.read_text()
    return True


def _stop_with(sig: signal.Signals, proc: subprocess.Popen, log: Path, run: Path, after: int
               ) -> int:
    """SIGTERM/SIGINT: the step finishes, a checkpoint is saved, exit code 130."""
    _wait_for(proc, log, _live_after(proc, run, after), "training to start")
    proc.send_signal(sig)
    text = _finish(proc, log)
    assert proc.returncode == 130, text
    assert f"stopped by {sig.name} at step" in text and "checkpoint saved" in text, text
    stopped = int(text.split(f"stopped by {sig.name} at step ")[1].split(";")[0])
    assert _latest(run) == stopped and stopped > after
    ckpt.load(RunDir(run).step_checkpoint(stopped))  # complete and verified
    return stopped


def _assert_same_as_reference(run: Path, ref: Path, plan: Plan) -> None:
    a, b = RunDir(run), RunDir(ref)
    ta, ma = ckpt.load(a.step_checkpoint(plan.steps))
    tb, mb = ckpt.load(b.step_checkpoint(plan.steps))
    assert_bit_identical(ta, tb)  # G, D, EMA, Adam moments, RNG states, fixed noise
    for key in ("step", "sampler", "last_stats", "opt_g_groups", "opt_d_groups", "schedules"):
        assert ma[key] == mb[key], key
    # Adam's step counters continued across every resume instead of restarting.
    assert float(ta["opt_g.0.step"]) == float(ta["opt_d.0.step"]) == plan.steps
    # Each step logged exactly once, with the uninterrupted run's numbers.
    drop = {"time", "img_per_s"}
    ra = [{k: v for k, v in r.items() if k not in drop} for r in a.read_metrics()]
    rb = [{k: v for k, v in r.items() if k not in drop} for r in b.read_metrics()]
    assert [r["step"] for r in ra] == list(range(1, plan.steps + 1))
    assert ra == rb
    assert (run / "samples.png").read_bytes() == (ref / "samples.png").read_bytes()  # at the end
    # keep-last-K, and no temporary file survives the final run.
    last = [plan.steps - i * plan.every for i in range(KEEP)]
    assert [s for s, _ in a.step_checkpoints()] == last
    assert not list(run.rglob(".*.tmp"))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_images(tmp_path_factory.mktemp("kill-data") / "images", 32, size=32)


def test_kills_at_every_write_stage_and_signals_resume_bit_exact(tmp_path, data):
    plan = Plan(steps=60, every=3)
    run, ref, marker = tmp_path / "run", tmp_path / "ref", tmp_path / "fault-reached"
    reference = _start(plan.args(data, ref), tmp_path / "ref.log")  # in parallel with the chain
    tally, rng = Tally(), random.Random(7)

    # 1. Fresh run frozen half way through writing its 2nd checkpoint (step 6), then killed.
    proc = _start(plan.args(data, run), tmp_path / "1.log", "ckpt-mid-write:2", marker)
    _kill_at_fault(proc, tmp_path / "1.log", marker)
    tally.add("mid-checkpoint-write")
    assert [p.name for p in run.rglob(".step-0000006.safetensors.*.tmp")]  # the half-written file
    config = read_toml(RunDir(run).config_path)
    assert _check_after_kill(run, config, tally) == 3

    # 2. Resumed, killed half way through rewriting config.toml: the old one stays whole.
    # (The 1st rundir write of a resume rewinds metrics.jsonl, the 2nd writes config.toml.)
    proc = _resume(plan, run, tmp_path / "2.log", "rundir-mid-write:2", marker)
    _kill_at_fault(proc, tmp_path / "2.log", marker)
    tally.add("mid-config-write")
    assert list(run.glob(".config.toml.*.tmp"))
    assert _check_after_kill(run, config, tally) == 3

    # 3. Resumed, killed with the next checkpoint (step 6) complete but not yet renamed.
    proc = _resume(plan, run, tmp_path / "3.log", "ckpt-before-rename:1", marker)
    _kill_at_fault(proc, tmp_path / "3.log", marker)
    tally.add("before-rename")
    assert _check_after_kill(run, config, tally) == 3

    # 4. Resumed, killed between saving step 9 and pruning: K+1 checkpoints, all sound.
    proc = _resume(plan, run, tmp_path / "4.log", "ckpt-before-prune:2", marker)
    _kill_at_fault(proc, tmp_path / "4.log", marker)
    tally.add("before-prune")
    assert [s for s, _ in RunDir(run).step_checkpoints()] == [9, 6, 3]
    assert _check_after_kill(run, config, tally) == 9

    # 5. Resumed (the stale temporaries are cleared), killed at a random moment.
    proc = _resume(plan, run, tmp_path / "5.log")
    assert _kill_randomly(proc, tmp_path / "5.log", run, 9, rng, 0.3)
    assert "resuming from" in (tmp_path / "5.log").read_text()
    tally.add("random")
    at = _check_after_kill(run, config, tally)

    # 6./7. SIGTERM and SIGINT: finish the step, save, exit 130; resume continues from there.
    for i, sig in enumerate((signal.SIGTERM, signal.SIGINT)):
        log = tmp_path / f"{6 + i}.log"
        proc = _resume(plan, run, log)
        at = _stop_with(sig, proc, log, run, at)
        assert f"(step {at})" not in log.read_text()  # logs the step it resumed from, not this
        tally.signal_stops += 1

    # 8. Resumed to the end.
    proc = _resume(plan, run, tmp_path / "8.log")
    text = _finish(proc, tmp_path / "8.log")
    assert proc.returncode == 0 and "resuming from" in text and f"(step {at})" in text, text
    assert _finish(reference, tmp_path / "ref.log") and reference.returncode == 0
    _assert_same_as_reference(run, ref, plan)
    assert tally.kills == 5 and tally.partial_files_left >= 2 and tally.extra_checkpoints_left >= 1
    print(f"kill/resume chain: {tally}")


@pytest.mark.skipif(not os.environ.get("GANZOO_KILL_SOAK"),
                    reason="soak run: set GANZOO_KILL_SOAK=number of kills")
def test_kill_soak(tmp_path, data):
    n = int(os.environ["GANZOO_KILL_SOAK"])
    # checkpoint_every=1: most of the time goes to writing checkpoints, so random kills land in
    # the middle of writes too.
    plan = Plan(steps=30 + 6 * n, every=1, seed=2)
    run, ref, marker = tmp_path / "run", tmp_path / "ref", tmp_path / "fault-reached"
    reference = _start(plan.args(data, ref), tmp_path / "ref.log")
    tally, rng = Tally(), random.Random(int(os.environ.get("GANZOO_KILL_SOAK_SEED", "0")))
    config: dict | None = None
    at, finished, i = 0, False, 0
    while not finished:
        i += 1
        log = tmp_path / f"{i}.log"
        args = ["--resume", str(run)] if config is not None else plan.args(data, run)
        if tally.kills >= n:
            proc = _start(args, log)
            _finish(proc, log)
            assert proc.returncode == 0, log.read_text()
            break
        kind = rng.choice(["random"] * 4 + ["signal"] + ["startup"] + [
            "ckpt-mid-write", "ckpt-before-rename", "ckpt-before-prune", "rundir-mid-write"])
        if kind in ("random", "signal", "startup"):
            proc = _start(args, log)
            if kind == "startup":  # anywhere from interpreter start-up on
                time.sleep(rng.uniform(0, 6.0))
                proc.send_signal(signal.SIGKILL)
                finished = proc.wait(TIMEOUT) == 0
            elif kind == "signal":
                at = _stop_with(rng.choice([signal.SIGINT, signal.SIGTERM]), proc, log, run, at)
                tally.signal_stops += 1
                continue
            else:
                finished = not _kill_randomly(proc, log, run, at, rng, 0.5)
        else:
            # A resume writes metrics.jsonl (rewound) then config.toml; a fresh run only the config.
            nth = rng.randint(1, 4) if kind != "rundir-mid-write" else rng.randint(
                1, 2 if config is not None else 1)
            proc = _start(args, log, f"{kind}:{nth}", marker)
            try:
                _kill_at_fault(proc, log, marker)
            except AssertionError:
                finished = proc.returncode == 0
                if not finished:
                    raise
        if finished:
            break
        tally.add(kind)
        tally.resumes += 1
        print(f"soak: kill {tally.kills} ({kind}) at step {_latest(run)}", flush=True)
        if RunDir(run).config_path.exists():
            config = config or read_toml(RunDir(run).config_path)
            at = _check_after_kill(run, config, tally)
        else:  # killed before the run directory was set up: start it again
            config, at = None, 0
    assert _finish(reference, tmp_path / "ref.log") is not None and reference.returncode == 0
    _assert_same_as_reference(run, ref, plan)
    report = {"kills": tally.kills, "by_kind": tally.by_kind, "signal_stops": tally.signal_stops,
              "partial_files_left": tally.partial_files_left,
              "extra_checkpoints_left": tally.extra_checkpoints_left,
              "steps_replayed": tally.steps_replayed, "steps": plan.steps,
              "bit_identical_to_uninterrupted": True, "torch": torch.__version__}
    print(json.dumps(report))
    if os.environ.get("GANZOO_KILL_SOAK_REPORT"):
        Path(os.environ["GANZOO_KILL_SOAK_REPORT"]).write_text(json.dumps(report, indent=2))
