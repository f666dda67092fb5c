"""The run directory: where a run's config, metrics, samples and checkpoints live.

    RUN/config.toml                resolved config; `ganzoo train --config RUN/config.toml` reruns
    RUN/metrics.jsonl              one JSON object per logged step (and per evaluation)
    RUN/samples/step-0000250.png   fixed-noise sample grids over training
    RUN/samples.png                the latest grid
    RUN/checkpoints/step-0000500.safetensors   the last K checkpoints
    RUN/checkpoints/best.safetensors           the best one by the evaluation metric
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

from . import checkpoint as ckpt
from .atomic import write_bytes
from .errors import CheckpointError, GanZooError

STEP_RE = re.compile(r"^step-(\d+)\.safetensors$")


def default_run_dir(arch: str) -> Path:
    return Path("runs") / f"{arch}-{time.strftime('%Y%m%d-%H%M%S')}"


class RunDir:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    config_path = property(lambda self: self.path / "config.toml")
    metrics_path = property(lambda self: self.path / "metrics.jsonl")
    samples_dir = property(lambda self: self.path / "samples")
    checkpoints_dir = property(lambda self: self.path / "checkpoints")
    best_path = property(lambda self: self.checkpoints_dir / "best.safetensors")

    def create(self) -> None:
        try:
            self.samples_dir.mkdir(parents=True, exist_ok=True)
            self.checkpoints_dir.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
            # Temporary files of atomic writes (checkpoints, config, metrics, pictures) cut
            # short by a crash: never read, just litter. Only our own pattern, only these
            # folders: a resume never deletes anything a user put in the run directory.
            for folder in (self.path, self.checkpoints_dir, self.samples_dir):
                for tmp in folder.glob(".*.tmp"):
                    if tmp.is_file() and not tmp.is_symlink():
                        tmp.unlink(missing_ok=True)
        except OSError as exc:
            raise GanZooError(f"cannot write to output folder {str(self.path)!r}: {exc}") from None

    def write_config(self, text: str) -> None:
        """Replace config.toml atomically: a crash must never leave a cut config that a resume
        would read with defaults filled in."""
        write_bytes(self.config_path, text.encode("utf-8"))

    def log(self, record: dict[str, Any]) -> None:
        try:
            with open(self.metrics_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
        except OSError as exc:
            raise GanZooError(
                f"cannot write metrics to {str(self.metrics_path)!r}: {exc.strerror or exc}") from None

    def rewind_metrics(self, step: int) -> None:
        """On resume from `step`: drop records of later (lost) steps and a line cut by a crash,
        so the continued run does not log those steps twice."""
        if not self.metrics_path.exists():
            return
        kept = []
        for line in self.metrics_path.read_text(encoding="utf-8", errors="replace").splitlines():
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
        (cut by a crash, edited, not UTF-8) is skipped: gan_zoo.metrics_file. A metrics.jsonl
        that is not a regular file is a GanZooError."""
        from .metrics_file import iter_metrics

        return list(iter_metrics(self.metrics_path))

    def step_checkpoint(self, step: int) -> Path:
        return self.checkpoints_dir / f"step-{step:07d}.safetensors"

    def step_checkpoints(self) -> list[tuple[int, Path]]:
        """(step, path) of step checkpoints, newest first."""
        if not self.checkpoints_dir.is_dir():
            return []
        found = []
        for p in self.checkpoints_dir.iterdir():
            m = STEP_RE.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
        return sorted(found, reverse=True)

    def prune(self, keep: int) -> None:
        for _, path in self.step_checkpoints()[keep:]:
            path.unlink(missing_ok=True)

    def latest_valid(self) -> tuple[Path, dict, dict, list[str]]:
        """The newest checkpoint that loads and verifies; damaged newer ones are reported."""
        problems = []
        for _, path in self.step_checkpoints():
            try:
                tensors, meta = ckpt.load(path)
                return path, tensors, meta, problems
            except CheckpointError as exc:
                problems.append(str(exc))
        detail = ("; ".join(problems)) if problems else "no checkpoints were saved yet"
        raise CheckpointError(f"no usable checkpoint in {str(self.path)!r}: {detail}")


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
