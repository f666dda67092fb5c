"""Distributed training (torch.distributed + DDP): 2 processes on CPU with gloo.

The multi-process tests start this file as a worker (`python -m tests.training.test_distributed
SCENARIO OUT`) in two processes with torchrun's environment variables set by hand, as
torchrun (or a multi-node launcher) would; `ganzoo train --nproc 2` is tested through the CLI.
Each worker does several runs in one process group so the suite starts few interpreters.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

import gan_zoo
from gan_zoo import api
from gan_zoo.cli import cli
from gan_zoo.data import EpochSampler
from gan_zoo.errors import GanZooError, UsageError
from gan_zoo.interfaces import Schedule, TrainState
from gan_zoo.training import checkpoint as ckpt
from gan_zoo.training import distributed
from gan_zoo.training.distributed import DistContext
from gan_zoo.training.rundir import RunDir
from gan_zoo.training.trainer import Callbacks

from ..reliability.helpers import REPO, TINY, TINY_ARGS, assert_bit_identical, cli_env, state_of
from ..reliability.helpers import tiny_data as _tiny_data

WORLD = 2
needs_gloo = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="this PyTorch build has no torch.distributed with gloo")
BATCH = 8  # global batch: 4 images per rank
N_IMAGES = 40


# ------------------------------------------------------------------ in-process: no processes

def test_global_batch_is_split_over_ranks_without_overlap():
    """batch_size is the global batch: rank r trains on slice r (batch_size / world images) of
    the batch one process would draw; within an epoch no image is seen twice."""
    single = EpochSampler(N_IMAGES, BATCH, seed=5)
    ranks = [EpochSampler(N_IMAGES, BATCH, seed=5, rank=r, world_size=WORLD) for r in range(WORLD)]
    assert [s.local_batch for s in ranks] == [BATCH // WORLD] * WORLD
    for _epoch in range(3):
        seen: list[int] = []
        for _ in range(single.batches_per_epoch):
            parts = [s.next_indices().tolist() for s in ranks]
            assert all(len(p) == BATCH // WORLD for p in parts)
            assert sum(parts, []) == single.next_indices().tolist()
            seen += sum(parts, [])
        assert len(seen) == len(set(seen)) == single.batches_per_epoch * BATCH
    # The state is the global position: identical on every rank, whatever the world size.
    states = [s.state_dict() for s in [single, *ranks]]
    assert all(s["epoch"] == states[0]["epoch"] and s["pos"] == states[0]["pos"] and
               torch.equal(s["rng"], states[0]["rng"]) for s in states)


def test_sampler_resumes_on_another_world_size():
    ref = EpochSampler(N_IMAGES, BATCH, seed=1)
    first = [ref.next_indices().tolist() for _ in range(7)]  # crosses an epoch boundary
    two = [EpochSampler(N_IMAGES, BATCH, seed=1, rank=r, world_size=2) for r in range(2)]
    for _ in range(3):
        parts = [s.next_indices().tolist() for s in two]
        assert sum(parts, []) == first.pop(0)
    state = two[0].state_dict()
    four = [EpochSampler(N_IMAGES, BATCH, seed=99, rank=r, world_size=4) for r in range(4)]
    for s in four:
        s.load_state_dict({**state, "rng": state["rng"].clone()})
    for expected in first:
        assert sum((s.next_indices().tolist() for s in four), []) == expected


def test_batch_must_split_evenly():
    with pytest.raises(UsageError, match="batch_size 8 cannot be split evenly over 3 processes"):
        EpochSampler(N_IMAGES, BATCH, seed=0, rank=0, world_size=3)
    result = CliRunner().invoke(cli, ["train", "--nproc", "3", "--batch-size", "8", *TINY_ARGS])
    assert result.exit_code == 2
    assert "use a multiple of 3" in result.output and "Traceback" not in result.output


def test_sync_bn_on_cpu_is_refused_and_single_process_is_untouched():
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    assert DistContext().prepare(module, True, torch.device("cpu")) is module
    with pytest.raises(UsageError, match="--sync-bn needs CUDA"):
        DistContext(rank=1, world_size=2).prepare(module, True, torch.device("cpu"))
    assert DistContext().wrap(module, torch.device("cpu")) is module


def test_more_processes_than_gpus_is_refused(monkeypatch):
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="no CUDA device"):
            distributed.check_gpus("cuda", 2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    distributed.check_gpus("auto", 2, sync_bn=True)
    with pytest.raises(UsageError, match="--sync-bn needs CUDA"):
        distributed.check_gpus("cpu", 2, sync_bn=True)
    distributed.check_gpus("cpu", 8)
    with pytest.raises(UsageError, match="--nproc 3 needs 3 GPUs .* 2 are visible"):
        distributed.check_gpus("auto", 3)


def test_rank_seeds_differ_by_rank_and_checkpoint():
    seeds = {DistContext(rank=r, world_size=4).rank_seed(7, step)
             for r in range(1, 4) for step in (0, 500, 1000)}
    assert len(seeds) == 9 and all(0 <= s < 2**63 for s in seeds)
    assert DistContext(rank=2, world_size=4).rank_seed(7, 500) == \
        DistContext(rank=2, world_size=8).rank_seed(7, 500)
    before = torch.get_rng_state()
    DistContext(rank=0, world_size=2).seed_rank(7, 0)  # rank 0 keeps its stream
    assert torch.equal(before, torch.get_rng_state())


def test_launch_command_and_helpers(monkeypatch):
    argv = ["train", "--nproc", "2", "--steps", "3", "--nproc=4", "--out", "x"]
    assert distributed.strip_nproc(argv) == ["train", "--steps", "3", "--out", "x"]
    args = distributed.torchrun_args(2, ["train", "-q"])
    assert args[-4:] == ["--module", "gan_zoo", "train", "-q"] and "--nproc-per-node=2" in args
    assert not distributed.launched() and distributed.setup() == distributed.SINGLE
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "2.5")
    assert distributed.timeout_seconds() == 2.5
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "soon")
    with pytest.raises(UsageError, match="positive number of seconds"):
        distributed.timeout_seconds()
    assert distributed.is_comm_error(RuntimeError("[gloo] Connection closed by peer"))
    assert not distributed.is_comm_error(RuntimeError("shape mismatch"))


# ------------------------------------------------------------------ the worker (2 processes)

class _RandomLR(Schedule):
    """Draws D's learning-rate factor from the rank's own random stream: without the knob
    broadcast from rank 0, ranks would apply different updates and their weights part."""

    name = "t_random_lr"
    knobs = ("lr_d_scale",)

    def values(self, state: TrainState) -> dict[str, float]:
        return {"lr_d_scale": 0.5 + float(torch.rand(()))}


class _Plugin:
    @gan_zoo.hookimpl
    def register_schedules(self, register):
        register(_RandomLR)


MODES = {"separate": {"d_update": "separate"}, "alternating": {"d_update": "alternating"},
         "wgan-gp": {"loss": "wgan-gp", "options": {**TINY, "conv32": {**TINY["conv32"],
                                                                       "d_norm": "spectral"}}}}


def _config(steps: int, **extra: Any) -> dict[str, Any]:
    # loss-balance changes D's updates per step from the (reduced) loss at every step: ranks
    # that disagreed would wait for each other's extra D update forever.
    return {"arch": "conv32", "batch_size": BATCH, "steps": steps, "seed": 4, "log_every": 1,
            "checkpoint_every": 3, "sample_every": 1000, "ema_decay": 0.9, "r1_gamma": 0.1,
            "schedules": ["loss-balance", "t_random_lr"], "augment": ["diffaugment"],
            "options": {**TINY, "loss-balance": {"cooldown": 0, "band": 0.0, "target": 0.05,
                                                 "max_steps": 3}}, **extra}


def _dump(trainer, path: Path) -> None:
    tensors, _ = trainer.state_tensors()
    torch.save(state_of(tensors), path)


def _worker(scenario: str, out: Path) -> None:
    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    from gan_zoo.plugins import plugin_system

    plugin_system().add_plugin(_Plugin(), "t_distributed")
    data = _tiny_data(N_IMAGES)
    # Join together: on a loaded machine one interpreter can start seconds after the other,
    # longer than the short --dist-timeout of the hang test allows for joining.
    (out / f"ready-{rank}").touch()
    while not all((out / f"ready-{r}").exists() for r in range(WORLD)):
        time.sleep(0.05)
    if scenario == "train":
        # A: 6 steps, recording the images each rank drew.
        trainer = api.prepare_training(_config(6), out=out / "a", data=data)
        drawn: list[list[int]] = []
        draw = trainer.sampler.next_indices

        def recording():
            idx = draw()
            drawn.append(idx.tolist())
            return idx

        trainer.sampler.next_indices = recording
        trainer.train()
        _dump(trainer, out / f"a-rank{rank}.pt")
        (out / f"drawn-rank{rank}.json").write_text(json.dumps(drawn))
        # B: 3 steps, then resumed to 6: must equal A.
        api.train(_config(3), out=out / "b", data=data)
        resumed = api.train(resume=out / "b", steps=6, data=data).trainer
        _dump(resumed, out / f"b-rank{rank}.pt")
        # The other ways D is updated, and a loss with a gradient penalty (more uses of D's
        # weights per backward than DDP's one forward): weights stay identical too.
        for name, extra in MODES.items():
            _dump(api.train(_config(2, **extra), out=out / name, data=data).trainer,
                  out / f"{name}-rank{rank}.pt")
        # A NaN in one rank's copy of D (after step 2): every rank rolls back together.
        injected: list[int] = []

        def poison(trainer, stats):
            if rank == 1 and trainer.step == 2 and not injected:
                injected.append(trainer.step)
                with torch.no_grad():
                    next(trainer.D.parameters()).fill_(float("nan"))

        trainer = api.prepare_training(_config(5, on_nonfinite="rollback"), out=out / "nan",
                                       data=data, callbacks=Callbacks(on_step=[poison]))
        trainer.train()
        _dump(trainer, out / f"nan-rank{rank}.pt")
        # Last (it breaks the group): rank 1 started with another seed is refused.
        try:
            api.prepare_training(_config(2, seed=4 + rank), out=out / "m", data=data)
        except GanZooError as exc:
            (out / f"mismatch-rank{rank}.txt").write_text(f"{type(exc).__name__}: {exc}")
    else:  # a rank dies or hangs at step 2
        def misbehave(trainer, stats):
            if rank == 1 and trainer.step == 2:
                if scenario == "die":
                    os._exit(3)
                time.sleep(600)

        trainer = api.prepare_training(_config(40), out=out / "c", data=data,
                                       callbacks=Callbacks(on_step=[misbehave]))
        trainer.train()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(scenario: str, out: Path, **env: str) -> list[subprocess.Popen]:
    """Two workers with the environment torchrun gives its processes."""
    port = str(_free_port())
    procs = []
    for rank in range(WORLD):
        penv = {**cli_env(), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port,
                "WORLD_SIZE": str(WORLD), "RANK": str(rank), "LOCAL_RANK": str(rank),
                "LOCAL_WORLD_SIZE": str(WORLD), **env}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "tests.training.test_distributed", scenario, str(out)], cwd=REPO,
            env=penv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def _finish(proc: subprocess.Popen, timeout: float) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"process {proc.args} hung:\n{err[-3000:]}")
    return proc.returncode, err


@needs_gloo
def test_two_ranks_train_identically_and_resume_exactly(tmp_path):
    procs = _start("train", tmp_path)
    results = [_finish(p, 240) for p in procs]
    # Rank 0 lost rank 1 in the last (mismatch) run: caught, but its process still ends with
    # the error's code 1, without the teardown that can abort; rank 1 ends normally.
    assert [code for code, _ in results] == [1, 0], [err[-3000:] for _, err in results]
    # Weights, EMA and Adam moments (and batch-norm statistics) identical on every rank.
    ranks = [torch.load(tmp_path / f"a-rank{r}.pt") for r in range(WORLD)]
    assert_bit_identical(ranks[0], ranks[1])
    for name in MODES:
        assert_bit_identical(*(torch.load(tmp_path / f"{name}-rank{r}.pt") for r in range(WORLD)))
    # The NaN on rank 1 alone: both ranks rolled back at the same step and finished identical.
    assert_bit_identical(*(torch.load(tmp_path / f"nan-rank{r}.pt") for r in range(WORLD)))
    events = [r for r in RunDir(tmp_path / "nan").read_metrics() if r.get("event") == "rollback"]
    assert len(events) == 1 and events[0]["step"] == 0, events
    assert events[0]["reason"].endswith("at step 3")  # found at step 3, back to step 0
    # Resumed run: 3 steps + resume + 3 steps == 6 steps, bit for bit.
    assert_bit_identical(ranks[0], torch.load(tmp_path / "b-rank0.pt"))
    run = RunDir(tmp_path / "a")
    _, meta = ckpt.load(run.step_checkpoints()[0][1])
    assert meta["world_size"] == WORLD and meta["step"] == 6
    # Rank 0 alone wrote; metrics are the reduced ones, each step once.
    records = [r for r in run.read_metrics() if "loss_d" in r]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert max(r["knob.d_steps"] for r in records) > 1  # D's work changed during the run
    # The global batch relation, end to end: the two ranks' images of each step are the
    # global batch a single process draws, split in halves.
    drawn = [json.loads((tmp_path / f"drawn-rank{r}.json").read_text()) for r in range(WORLD)]
    single = EpochSampler(N_IMAGES, BATCH, seed=4)
    assert len(drawn[0]) == sum(int(r["knob.d_steps"]) for r in records)
    for a, b in zip(*drawn, strict=True):
        assert len(a) == len(b) == BATCH // WORLD and not set(a) & set(b)
        assert a + b == single.next_indices().tolist()
    # Processes started with different settings: refused by name, the other rank stops too.
    assert (tmp_path / "mismatch-rank1.txt").read_text() == (
        "UsageError: rank 1 was started with a different configuration than rank 0 (differs "
        "in: seed); start every process with the same command")
    assert "DistributedError: rank 0 of 2 lost contact" in \
        (tmp_path / "mismatch-rank0.txt").read_text()


@needs_gloo
@pytest.mark.parametrize("scenario", ["die", "hang"])
def test_lost_rank_stops_the_other_with_an_error(tmp_path, scenario):
    """Rank 1 dies (or hangs) at step 2: rank 0 exits with one message instead of waiting."""
    procs = _start(scenario, tmp_path, **{distributed.TIMEOUT_ENV: "4"})
    try:
        code, err = _finish(procs[0], 90)
    finally:
        if procs[1].poll() is None:
            procs[1].send_signal(signal.SIGKILL)
        procs[1].communicate()
    assert code == 1, err[-3000:]
    assert "lost contact with the other processes" in err and "Traceback" not in err, err[-3000:]
    if scenario == "die":
        assert procs[1].returncode == 3


@pytest.mark.parametrize("how", ["at exit", "at once"])
def test_a_broken_group_exits_with_the_error_code_before_teardown(how):
    """After a lost peer the process ends with the error's exit code and its output flushed,
    before anything is torn down: at once when the CLI has printed the error
    (end_if_broken), else in distributed.shutdown at exit. Destroying gloo's threads can abort
    the process (SIGABRT, seen in CI) instead of exiting with the code."""
    distributed.end_if_broken(1)  # not broken: does nothing (or pytest would be gone)
    script = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('teardown ran', flush=True))\n"  # runs after shutdown
        "from gan_zoo.training import distributed\n"
        "atexit.register(distributed.shutdown)\n"
        "error = distributed.DistContext(rank=0, world_size=2).lost(RuntimeError('Timed out'))\n"
        "sys.stdout.write('unflushed output')\n"
        "print(f'Error: {error}', file=sys.stderr)\n"
        + ("distributed.end_if_broken(3)\n" if how == "at once" else "")
        + "sys.exit(error.exit_code)\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=cli_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == (3 if how == "at once" else 1), done.stderr[-3000:]
    assert done.stdout == "unflushed output"  # flushed, and the teardown never ran
    assert "rank 0 of 2 lost contact with the other processes (Timed out)" in done.stderr


@needs_gloo
def test_nproc_resumes_a_one_process_run_on_two(tmp_path):
    """`ganzoo train --nproc 2` (torchrun's launcher) continues a run begun in one process:
    same global batch and data order, rank 0 writes, the world size goes into checkpoints."""
    out = tmp_path / "run"
    common = [*TINY_ARGS, "--batch-size", str(BATCH), "--checkpoint-every", "2",
              "--sample-every", "1000", "-q"]
    first = CliRunner().invoke(cli, ["train", "--steps", "2", "--out", str(out), *common])
    assert first.exit_code == 0, first.output
    proc = subprocess.run([sys.executable, "-m", "gan_zoo", "train", "--resume", str(out),
                           "--steps", "4", "--nproc", "2"], env=cli_env(), cwd=tmp_path,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "continuing a run of 1 process(es) with 2" in proc.stderr
    assert "distributed: 2 processes (gloo), 4 images per process per step" in proc.stderr
    assert proc.stderr.count("run directory:") == 1  # rank 0 speaks for both
    steps = [r["step"] for r in RunDir(out).read_metrics() if "loss_d" in r]
    assert steps == sorted(set(steps)) and steps[-1] == 4
    _, meta = ckpt.load(RunDir(out).step_checkpoints()[0][1])
    assert (meta["step"], meta["world_size"]) == (4, 2)


if __name__ == "__main__":
    try:
        _worker(sys.argv[1], Path(sys.argv[2]))
        # The train scenario ends on purpose with a group broken by a refused configuration:
        # the rank that saw it ends with that error's code (as at exit), the other leaves at
        # once (the interpreter's teardown of gloo state can abort it; not what is tested).
        distributed.shutdown()
        distributed.exit_now(0)
    except GanZooError as exc:  # as the CLI reports it
        print(f"Error: {exc}", file=sys.stderr)
        distributed.end_if_broken(exc.exit_code)
        sys.exit(exc.exit_code)
