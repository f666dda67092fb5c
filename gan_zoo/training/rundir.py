"""The run directory: where a run's config, metrics, samples and checkpoints live.

    RUN/.ganzoo.lock               held by the training that writes the run (gan_zoo.training.runlock)
    RUN/config.toml                resolved config; `ganzoo train --config RUN/config.toml` reruns
    RUN/metrics.jsonl              one JSON object per logged step (and per evaluation)
    RUN/samples/step-0000250.png   fixed-noise sample grids over training
    RUN/samples.png                the latest grid
    RUN/checkpoints/step-0000500.safetensors   the last K checkpoints
    RUN/checkpoints/best.safetensors           the best one by the evaluation metric

What a new run (`train --out`) may be written into (RunDir.check_new): a path that does not
exist yet, an empty folder, or a folder gan-zoo made for a run that has no checkpoint yet (a
start that crashed or was stopped before its first checkpoint: the same command starts it over,
and the metrics of the lost steps are dropped). A run with checkpoints is refused with a pointer
to --resume; any other non-empty folder is refused, because a run writes config.toml,
metrics.jsonl and more and would overwrite a user's files of those names. A folder is one that
gan-zoo made for a run (RunDir.is_run) when it holds RUN/.ganzoo.lock, the first file a run
writes; runs made before the lock existed count when their config.toml reads as a gan-zoo config
beside a checkpoints/ folder. An empty path is never a run directory (it would mean the current
folder).

Only regular files are read or appended (gan_zoo.util.regular_files): a FIFO or device named like a
checkpoint or metrics.jsonl is reported, never waited on, and metrics.jsonl is never written
through a symbolic link. Cleaning up after a kill deletes only gan_zoo.util.atomic's own temporary
names (`.NAME.ganzoo-XXXXXXXX.tmp`) of files a run writes, never a user's `.something.tmp`.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, GanZooError, UsageError
from ..util.atomic import TEMP_MARK, temporary_target, write_bytes
from ..util.regular_files import NotRegularFileError, describe_mode, open_regular
from ..util.textsafe import shown
from ..util.tomlio import read_toml
from . import checkpoint as ckpt
from . import runlock

STEP_RE = re.compile(r"^step-(\d+)\.safetensors$")
# The files a run writes in each of its folders: the only targets whose temporary files a
# resume deletes (a user's `.notes.tmp` or `.x.png.tmp` is never touched).
_RUN_FILES = {
    "": re.compile(r"config\.toml|metrics\.jsonl|samples\.png|curves\.png|evolution\.png|"
                   r"\.write-test"),
    "checkpoints": re.compile(r"(step-\d+|best)\.safetensors"),
    "samples": re.compile(r"step-\d+\.png"),
}


def _not_regular(path: Path) -> str:
    try:
        return f"{shown(str(path))} is not a regular file ({describe_mode(path.stat().st_mode)})"
    except OSError as exc:
        return f"{shown(str(path))} cannot be read: {exc.strerror or exc}"


def refuse_empty_paths(out: str | os.PathLike | None, resume: str | os.PathLike | None) -> None:
    """`--out ''` or `--resume ''` (an unset shell variable): Path('') is the current folder,
    never what was meant."""
    for flag, value in (("--out", out), ("--resume", resume)):
        if value is not None and os.fspath(value).strip() == "":
            raise UsageError(f"{flag} needs a folder name, not an empty path")


def default_run_dir(arch: str) -> Path:
    return Path("runs") / f"{arch}-{time.strftime('%Y%m%d-%H%M%S')}"


class RunDir:
    lock: runlock.RunLock | None = None  # held from create() until unlock() or the process ends

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    config_path = property(lambda self: self.path / "config.toml")
    metrics_path = property(lambda self: self.path / "metrics.jsonl")
    samples_dir = property(lambda self: self.path / "samples")
    checkpoints_dir = property(lambda self: self.path / "checkpoints")
    best_path = property(lambda self: self.checkpoints_dir / "best.safetensors")

    def is_run(self) -> bool:
        """Whether gan-zoo made this folder for a run (the module docstring says how to tell)."""
        if os.path.lexists(self.path / runlock.LOCK_NAME):
            return True
        if not (self.checkpoints_dir.is_dir() and self.config_path.is_file()):
            return False
        from .config import make_config  # config imports the plugin machinery: only here

        try:
            make_config(read_toml(self.config_path))
        except GanZooError:
            return False
        return True

    def check_new(self) -> None:
        """Refuse (UsageError) to start a new run in a folder that holds anything but a run of
        ours without checkpoints; writes nothing."""
        where = shown(str(self.path))
        if not os.path.lexists(self.path):
            return
        if not self.path.is_dir():
            raise UsageError(f"output folder {where} exists and is not a folder; choose another --out")
        try:
            empty = next(os.scandir(self.path), None) is None
        except OSError as exc:
            raise GanZooError(f"cannot read output folder {where}: {exc.strerror or exc}") from None
        if empty:
            return
        if not self.is_run():
            raise UsageError(
                f"output folder {where} is not empty and is not a gan-zoo run; a new run is written "
                "only into a new or empty folder (it would overwrite files such as config.toml): "
                "choose another --out")
        if self.step_checkpoints(include_irregular=True):
            raise UsageError(
                f"output folder {where} already holds a run; use --resume {where} to continue it "
                "or choose another --out")

    def check_start(self, new: bool) -> None:
        """Before a training starts here (writes nothing): refuse a run another training holds
        and, for a `new` run, a folder check_new() refuses."""
        runlock.check_free(self.path)
        if new:
            self.check_new()

    def create(self, new: bool = False) -> None:
        """Make the run's folders, lock the run for this process (gan_zoo.training.runlock) and delete
        the temporary files a killed writer left. `new`: check_new() first, and again under
        the lock (a training that ended in between may have saved checkpoints here)."""
        if new:
            self.check_new()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise GanZooError(
                f"cannot write to output folder {shown(str(self.path))}: {exc.strerror or exc}") from None
        self.lock = runlock.acquire(self.path)
        try:
            if new and self.step_checkpoints(include_irregular=True):
                self.check_new()
            self.samples_dir.mkdir(exist_ok=True)
            self.checkpoints_dir.mkdir(exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=self.path, prefix=f"..write-test.{TEMP_MARK}",
                                         suffix=".tmp")
            os.close(fd)
            os.unlink(probe)
            self._delete_temporaries()
        except OSError as exc:
            self.unlock()
            raise GanZooError(
                f"cannot write to output folder {shown(str(self.path))}: {exc.strerror or exc}") from None
        except BaseException:
            self.unlock()
            raise

    def unlock(self) -> None:
        """Let another training use the run (the end of a training calls this)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def _delete_temporaries(self) -> None:
        """Temporary files of atomic writes cut short by a kill: never read, just litter. Only
        gan_zoo.util.atomic's names of the files a run writes, only in the run's own folders."""
        for sub, ours in _RUN_FILES.items():
            with os.scandir(self.path / sub) as entries:
                for entry in entries:
                    target = temporary_target(entry.name)
                    if target and ours.fullmatch(target) and entry.is_file(follow_symlinks=False):
                        Path(entry.path).unlink(missing_ok=True)

    def write_config(self, text: str) -> None:
        """Replace config.toml atomically: a crash must never leave a cut config that a resume
        would read with defaults filled in."""
        write_bytes(self.config_path, text.encode("utf-8"))

    def log(self, record: dict[str, Any]) -> None:
        # Appended in place (never through a symbolic link, never to a FIFO that would block).
        try:
            with open_regular(self.metrics_path, "a", follow_symlinks=False,
                              encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
        except OSError as exc:
            raise self._metrics_error("write metrics to", exc) from None

    def rewind_metrics(self, step: int) -> None:
        """On resume from `step` (0: a new run over one that never saved a checkpoint): drop
        records of later (lost) steps and a line cut by a crash, so the continued run does not
        log those steps twice."""
        try:
            with open_regular(self.metrics_path, "r", follow_symlinks=False, encoding="utf-8",
                              errors="replace") as fh:
                lines = fh.read().splitlines()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise self._metrics_error("read metrics", exc) from None
        kept = []
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if not isinstance(record, dict) or not isinstance(record.get("step"), int) \
                    or record["step"] <= step:
                kept.append(line + "\n")
        write_bytes(self.metrics_path, "".join(kept).encode("utf-8"))

    def read_metrics(self) -> list[dict[str, Any]]:
        """The records of metrics.jsonl; a line that is not a record with a whole-number step
        (cut by a crash, edited, not UTF-8) is skipped: gan_zoo.training.metrics_file. A metrics.jsonl
        that is not a regular file is a GanZooError."""
        from .metrics_file import iter_metrics

        return list(iter_metrics(self.metrics_path))

    def step_checkpoint(self, step: int) -> Path:
        return self.checkpoints_dir / f"step-{step:07d}.safetensors"

    def step_checkpoints(self, include_irregular: bool = False) -> list[tuple[int, Path]]:
        """(step, path) of step checkpoints, newest first: regular files only (a FIFO or folder
        with a checkpoint's name is left out; `include_irregular` lists them too)."""
        if not self.checkpoints_dir.is_dir():
            return []
        found = []
        for p in self.checkpoints_dir.iterdir():
            m = STEP_RE.match(p.name)
            if m and (include_irregular or p.is_file()):
                found.append((int(m.group(1)), p))
        return sorted(found, reverse=True)

    def prune(self, keep: int) -> None:
        for _, path in self.step_checkpoints()[keep:]:
            path.unlink(missing_ok=True)

    def latest_valid(self) -> tuple[Path, dict, dict, list[str]]:
        """The newest checkpoint that loads and verifies; damaged newer ones are reported (so
        is anything else named like a checkpoint: it is never opened)."""
        problems = []
        for _, path in self.step_checkpoints(include_irregular=True):
            if not path.is_file():
                problems.append(_not_regular(path))
                continue
            try:
                tensors, meta = ckpt.load(path)
                return path, tensors, meta, problems
            except CheckpointError as exc:
                problems.append(str(exc))
        detail = ("; ".join(problems)) if problems else "no checkpoints were saved yet"
        raise CheckpointError(f"no usable checkpoint in {str(self.path)!r}: {detail}")

    def _metrics_error(self, doing: str, exc: OSError) -> GanZooError:
        """One message for a metrics.jsonl that cannot be used; a non-regular one says what it is."""
        path, reason = self.metrics_path, exc.strerror or str(exc)
        if isinstance(exc, NotRegularFileError):
            reason = f"it {exc.strerror}"
        return GanZooError(f"cannot {doing} {shown(str(path))}: {reason}")


def resolve_checkpoint(target: str | os.PathLike, which: str = "latest") -> Path:
    """A checkpoint file from a file path or a run directory (`latest` or `best`)."""
    p = Path(target)
    if p.is_dir():
        run = RunDir(p)
        if which == "best":
            if not run.best_path.exists():
                raise CheckpointError(
                    f"run {str(p)!r} has no best checkpoint (train with --eval-every to keep one)")
            return run.best_path
        ckpts = run.step_checkpoints()
        for _, path in ckpts:
            try:
                ckpt.read_meta(path)
                return path
            except CheckpointError:
                continue
        raise CheckpointError(f"{str(p)!r} holds no checkpoint")
    if not p.exists():
        raise CheckpointError(f"checkpoint or run directory {str(p)!r} does not exist")
    return p
