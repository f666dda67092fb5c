"""Multi-process training on torch.distributed: DistributedDataParallel, launched by torchrun.

Every process ("rank") holds the whole model: G and D are wrapped in DistributedDataParallel
(DDP), which averages their gradients across ranks in each backward pass, so the weights and
Adam moments stay identical everywhere. What else must agree is made to agree here:

* the data: ``batch_size`` is the *global* batch; each step rank r trains on its own slice of
  ``batch_size / world_size`` images of one shared shuffled order (see data.EpochSampler);
* schedule decisions: the step statistics schedules read are averaged over ranks and the knob
  values are broadcast from rank 0, so extra D steps happen on every rank or on none;
* stopping: a signal, early stopping or a non-finite value on any rank stops every rank at
  the same step;
* writing: rank 0 alone writes the run directory; the other ranks get the run's config and
  checkpoint from rank 0 (other nodes need not see its disk).

A rank that dies or hangs makes the others fail with one message (DistributedError) instead of
waiting forever: gloo reports a closed connection at once, and every collective gives up after
the timeout (``--dist-timeout``, default 30 minutes, long enough for rank 0's evaluations).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..errors import GanZooError, UsageError

TIMEOUT_ENV = "GANZOO_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 1800.0
T = TypeVar("T")


class DistributedError(GanZooError):
    """Another process of a distributed run died, hung or could not be reached.

    Once raised for a lost peer, the process ends with its exit code even if it is caught
    (see shutdown)."""


class PeerError(GanZooError):
    """An error rank 0 hit and passed on: rank 0 prints it, the other ranks exit quietly with
    the same exit code (one message instead of one per process)."""

    quiet = True

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        raise DistributedError(f"environment variable {name}={os.environ[name]!r} is not a "
                               "number") from None


def timeout_seconds() -> float:
    """The collective timeout: GANZOO_DIST_TIMEOUT (set by --dist-timeout) or 30 minutes."""
    raw = os.environ.get(TIMEOUT_ENV)
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise UsageError(f"{TIMEOUT_ENV}={raw!r}: expected a positive number of seconds")
    return value


def launched() -> bool:
    """True inside a process started by torchrun (or any launcher setting WORLD_SIZE > 1)."""
    return (dist.is_available() and dist.is_initialized()) or _env_int("WORLD_SIZE", 1) > 1


def per_rank_batch(batch_size: int, world_size: int) -> int:
    """Images each rank trains on per step: the global batch split evenly."""
    if batch_size % world_size:
        raise UsageError(
            f"batch_size {batch_size} cannot be split evenly over {world_size} processes: "
            f"batch_size is the global batch (each process trains on batch_size / processes "
            f"images per step), so use a multiple of {world_size}")
    return batch_size // world_size


def check_gpus(device: str, nproc: int, sync_bn: bool = False) -> None:
    """One process per GPU: refuse more processes than visible GPUs when training on CUDA
    (and --sync-bn without CUDA), before any process starts."""
    on_cpu = device == "cpu" or not torch.cuda.is_available()
    if sync_bn and nproc > 1 and on_cpu:
        raise UsageError("--sync-bn needs CUDA: PyTorch's SyncBatchNorm does not run on CPU "
                         "(train without --sync-bn, or on GPUs)")
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was requested but no CUDA device is available")
    if device != "cpu" and torch.cuda.is_available() and nproc > torch.cuda.device_count():
        raise UsageError(
            f"--nproc {nproc} needs {nproc} GPUs (one per process) but "
            f"{torch.cuda.device_count()} are visible; use --nproc {torch.cuda.device_count()} "
            "or --device cpu")


def is_comm_error(exc: BaseException) -> bool:
    """Whether an exception comes from the communication layer (a peer died, hung, or left)."""
    if isinstance(exc, dist.DistError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(s in text for s in (
        "gloo", "Gloo", "NCCL", "nccl", "Connection closed", "Connection reset", "Broken pipe",
        "Timed out", "timed out", "ProcessGroup"))


def _collective(method: Callable[..., T]) -> Callable[..., T]:
    """A failure to reach the other ranks inside method becomes one DistributedError."""
    @functools.wraps(method)
    def wrapper(self: DistContext, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except RuntimeError as exc:
            if self.active and is_comm_error(exc):
                raise self.lost(exc) from None
            raise

    return wrapper


@dataclass(frozen=True)
class DistContext:
    """This process's place in the run; world_size 1 when not distributed (all methods no-ops)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -------------------------------------------------------------- devices, seeds, models
    def device_for(self, device: torch.device) -> torch.device:
        """One GPU per process: rank with local rank i uses cuda:i."""
        if not self.active or device.type != "cuda":
            return device
        if self.local_rank >= torch.cuda.device_count():
            raise DistributedError(
                f"rank {self.rank} needs GPU {self.local_rank} but only "
                f"{torch.cuda.device_count()} are visible; start one process per GPU")
        torch.cuda.set_device(self.local_rank)
        return torch.device("cuda", self.local_rank)

    def rank_seed(self, seed: int, step: int) -> int:
        """The seed of rank >= 1's random stream from checkpoint `step` on."""
        state = np.random.SeedSequence([seed, self.rank, step]).generate_state(2, np.uint32)
        return int(state[0]) << 31 | int(state[1]) >> 1

    def seed_rank(self, seed: int, step: int) -> None:
        """Ranks >= 1 restart their random stream (latents, noise, augmentation) from
        (seed, rank, step) at the start and at every checkpoint, so a resumed run repeats an
        uninterrupted one without saving every rank's generator state. Rank 0 keeps the
        single-process stream, saved in checkpoints."""
        if self.rank > 0:
            torch.manual_seed(self.rank_seed(seed, step))

    def prepare(self, module: nn.Module, sync_bn: bool, device: torch.device) -> nn.Module:
        """Batch norm layers synchronized across ranks when asked (CUDA only, as in PyTorch)."""
        if not (self.active and sync_bn):
            return module
        if device.type != "cuda":
            check_gpus("cpu", self.world_size, sync_bn=True)  # raises: the same message
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)

    @_collective
    def wrap(self, module: nn.Module, device: torch.device, partial: bool = False) -> nn.Module:
        """The DDP wrapper used for training forwards; the module itself when not distributed.
        `partial`: some updates leave parameters without gradient (a D's auxiliary decoders in
        a fake-only update), which DDP refuses unless told (at the cost of a graph walk)."""
        if not self.active:
            return module
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids,
                                                   find_unused_parameters=partial)

    # -------------------------------------------------------------- agreement between ranks
    @_collective
    def broadcast_object(self, obj: T) -> T:
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    @_collective
    def gather_objects(self, obj: Any) -> list[Any]:
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def on_main(self, fn: Callable[[], T]) -> T:
        """Run fn on rank 0 and give every rank its result, or its error."""
        if not self.active:
            return fn()
        error: BaseException | None = None
        payload: tuple = ("ok", None)
        if self.is_main:
            try:
                payload = ("ok", fn())
            except GanZooError as exc:
                error, payload = exc, ("error", str(exc), exc.exit_code)
            except BaseException as exc:
                error, payload = exc, ("error", f"rank 0 failed: {type(exc).__name__}: {exc}", 1)
        payload = self.broadcast_object(payload)
        if error is not None:
            raise error
        if payload[0] == "error":
            raise PeerError(payload[1], payload[2])
        return payload[1]

    def main_first(self, fn: Callable[[], T]) -> T:
        """Run fn on each machine's first rank, then on the others: a cache that fn builds is
        built once per machine and then only read."""
        if not self.active:
            return fn()
        first = self.local_rank == 0
        result: Any = None
        error: GanZooError | None = None
        if first:
            try:
                result = fn()
            except GanZooError as exc:
                error = exc
        problems = self.gather_objects(None if error is None else (str(error), error.exit_code))
        failed = next((p for p in problems if p is not None), None)
        if error is not None:
            raise error
        if failed is not None:
            raise PeerError(*failed)
        return result if first else fn()

    def check_same(self, what: str, value: dict[str, Any]) -> None:
        """Refuse to train when ranks were started with different settings."""
        if not self.active:
            return
        ref = self.broadcast_object(value)
        if value != ref:
            keys = sorted(k for k in set(ref) | set(value) if ref.get(k) != value.get(k))
            raise UsageError(f"rank {self.rank} was started with a different {what} than rank 0 "
                             f"(differs in: {', '.join(keys)}); start every process with the "
                             "same command")

    @_collective
    def mean_stats(self, stats: dict[str, float]) -> dict[str, float]:
        """Step statistics averaged over ranks (equal per-rank batches: the global mean)."""
        if not self.active:
            return stats
        keys = sorted(stats)
        t = torch.tensor([stats[k] for k in keys], dtype=torch.float64)
        dist.all_reduce(t)
        return {k: float(v) / self.world_size for k, v in zip(keys, t.tolist(), strict=True)}

    @_collective
    def same_knobs(self, knobs: dict[str, float]) -> dict[str, float]:
        """Rank 0's knob values everywhere: a schedule that draws random numbers (or reads
        anything rank-local) still makes one decision for all ranks."""
        if not self.active:
            return knobs
        keys = sorted(knobs)
        t = torch.tensor([knobs[k] for k in keys], dtype=torch.float64)
        dist.broadcast(t, src=0)
        return dict(zip(keys, t.tolist(), strict=True))

    @_collective
    def any_flag(self, flag: bool) -> bool:
        """True on every rank when it is true on any."""
        if not self.active:
            return flag
        t = torch.tensor([1 if flag else 0], dtype=torch.int32)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def agree_stop(self, reason: str | None) -> str | None:
        """One stop decision: when any rank wants to stop (a signal, early stopping on rank 0),
        every rank stops after this same step, all with the first rank's reason."""
        if not self.any_flag(reason is not None):
            return None
        return next(r for r in self.gather_objects(reason) if r is not None)

    @_collective
    @torch.no_grad()
    def sync_buffers(self, *modules: nn.Module | None) -> None:
        """Rank 0's buffers (batch-norm running statistics) everywhere; DDP syncs them before
        each training forward, this makes the state after the last step identical too."""
        if not self.active:
            return
        for module in modules:
            if module is not None:
                for buffer in module.buffers():
                    dist.broadcast(buffer, src=0)

    def lost(self, exc: BaseException) -> DistributedError:
        """The error to show when communication with the other ranks failed."""
        global _broken_exit_code
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        error = DistributedError(
            f"rank {self.rank} of {self.world_size} lost contact with the other processes "
            f"({first[:300]}). Another process died or hung (its own message says why) or the "
            f"--dist-timeout of {timeout_seconds():g}s ran out; once all processes can run, "
            "continue with --resume RUN_DIR")
        _broken_exit_code = error.exit_code  # the group cannot be torn down: see shutdown()
        return error

    def prefix(self) -> str:
        """Prefix for messages printed by ranks other than 0."""
        return f"[rank {self.rank}] " if self.rank else ""


SINGLE = DistContext()
_context: DistContext = SINGLE
_broken_exit_code: int | None = None


def current() -> DistContext:
    """This process's context (set by setup(); single-process before that)."""
    return _context


def setup() -> DistContext:
    """Join the process group when started by torchrun (env:// rendezvous variables set), once.

    Backends are chosen automatically: gloo for CPU tensors, NCCL for CUDA tensors when CUDA is
    available (both in one group, so `--device cpu` also works on a GPU machine).
    """
    global _context
    if not dist.is_available():
        return _context
    if dist.is_initialized():
        if _context.world_size != dist.get_world_size() or _context.rank != dist.get_rank():
            _context = DistContext(dist.get_rank(), dist.get_world_size(),
                                   _env_int("LOCAL_RANK", dist.get_rank()),
                                   str(dist.get_backend()))
        return _context
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return _context
    rank, timeout = _env_int("RANK", 0), timeout_seconds()
    local_rank = _env_int("LOCAL_RANK", rank)
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available() and local_rank < torch.cuda.device_count():
        torch.cuda.set_device(local_rank)  # before NCCL creates its communicators
    try:
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout))
    except (RuntimeError, ValueError) as exc:  # DistError is a RuntimeError
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DistributedError(
            f"rank {rank} of {world} could not join the process group at "
            f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')} "
            f"({first[:300]}); start every process with the same torchrun rendezvous settings"
        ) from None
    _context = DistContext(rank, world, local_rank, backend)
    atexit.register(shutdown)
    return _context


def end_if_broken(exit_code: int) -> None:
    """After a lost peer, end the process now with `exit_code`, its output flushed.

    A broken group cannot be torn down: its C++ threads can still be inside the operation that
    failed, and destroying them (the trainer's DDP state when the error is let go, the group
    in the interpreter's teardown) aborts the process with SIGABRT ("terminate called without
    an active exception", seen in CI) instead of exiting with the code. The CLI calls this as
    soon as it has printed the error; shutdown() does it at exit for programs that did not.
    """
    if _broken_exit_code is None:
        return
    exit_now(exit_code)


def exit_now(exit_code: int) -> None:
    """End the process at once with its output flushed, skipping the interpreter's teardown."""
    logging.shutdown()  # what os._exit skips: log handlers and the standard streams
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(exit_code)


def finish() -> None:
    """Leave the process group after a run that every rank completed, together.

    Every rank waits for the others first (rank 0 saves the final checkpoint and draws
    curves after the others are done), so none tears its group down while a peer is still in
    a collective. Only for a run that ended normally on every rank: after an error the peers
    may be elsewhere, and shutdown() at exit handles that.
    """
    if _broken_exit_code is None and dist.is_available() and dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.barrier()
            dist.destroy_process_group()


def end_finished_run(exit_code: int = 0) -> None:
    """How a process of a run that every rank completed ends: all leave the group together
    (finish); rank 0 returns to print its summary, the others, which have written nothing but
    their output, end at once. The interpreter's teardown of gloo and DDP state after a finished
    run aborted rank 1 with SIGABRT ("terminate called without an active exception") in about 1
    of 4 two-process runs, turning a finished run into a failed one."""
    finish()
    if not _context.is_main:
        exit_now(exit_code)


def shutdown() -> None:
    """Leave the process group (at exit; harmless when not in one). After a lost peer the
    process ends here with that error's exit code instead (see end_if_broken)."""
    global _context
    if _broken_exit_code is not None:
        end_if_broken(_broken_exit_code)
    if dist.is_available() and dist.is_initialized():
        with contextlib.suppress(Exception):  # a peer already gone: nothing to tear down
            dist.destroy_process_group()
    _context = SINGLE


# ------------------------------------------------------------------ launching on one machine

def torchrun_args(nproc: int, argv: Sequence[str]) -> list[str]:
    """torchrun's arguments for `ganzoo train --nproc N ...` (argv without --nproc)."""
    return ["--standalone", f"--nproc-per-node={nproc}", "--max-restarts=0", "--module",
            "gan_zoo", *argv]


def strip_nproc(argv: Sequence[str]) -> list[str]:
    """The command line without its --nproc option, for the processes it starts."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def launch(nproc: int, argv: Sequence[str], run_dir: str | Path | None = None) -> None:
    """Run `python -m gan_zoo ARGV` in nproc processes through torchrun's own launcher
    (torch.distributed.run, standalone rendezvous); raise a GanZooError when one fails."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    args = get_args_parser().parse_args(torchrun_args(nproc, argv))
    # The launcher's own log lines repeat what the message below says; its errors still show.
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    try:
        run(args)
    except ChildFailedError as exc:
        from .rundir import RunDir

        saved = run_dir is not None and bool(RunDir(run_dir).step_checkpoints())
        resume = f"; continue with: ganzoo train --resume {run_dir} --nproc {nproc}" if saved else ""
        rank, failure = exc.get_first_failure()
        codes = {f.exitcode for f in exc.failures.values()}
        if codes <= {130}:  # every rank stopped on a signal after saving: ranks said so
            raise PeerError("stopped by a signal", 130) from None
        code = failure.exitcode
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        error = DistributedError(f"rank {rank} of {nproc} {how} first; the other processes were "
                                 f"stopped (the failing process's message is above){resume}")
        error.exit_code = code if code in (1, 2) else 1
        raise error from None
    except SignalException as exc:
        raise PeerError(f"stopped by signal {exc.sigval}", 130) from None
