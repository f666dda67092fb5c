"""`python -m tests.reliability.fault_driver ARGS...`: run `ganzoo ARGS` with one fault injected.

``GANZOO_FAULT=WHERE:N`` freezes the process at the N-th time it reaches WHERE, after creating
the file named by ``GANZOO_FAULT_MARKER``, so that a test can SIGKILL it at exactly that moment:

  ckpt-mid-write      half of a checkpoint's bytes written (and fsynced) to its temporary file
  ckpt-before-rename  the temporary file complete, not yet renamed over step-N.safetensors
  ckpt-before-prune   the new checkpoint in place, older ones not yet pruned (K+1 on disk)
  rundir-mid-write    half of config.toml or of a rewound metrics.jsonl in its temporary file

The faults replace ``open`` and ``os`` inside gan_zoo.util.atomic, the one module that writes files,
acting on the files named above only (and wrap RunDir.prune); the program itself carries no
test hooks.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from gan_zoo import cli
from gan_zoo.training import rundir
from gan_zoo.util import atomic

from .helpers import replaced_by

POINTS = ("ckpt-mid-write", "ckpt-before-rename", "ckpt-before-prune", "rundir-mid-write")
_seen: Counter[str] = Counter()


def _reached(point: str) -> None:
    """Freeze here if this is the configured fault point and occurrence."""
    where, _, nth = os.environ["GANZOO_FAULT"].partition(":")
    _seen[point] += 1
    if point == where and _seen[point] == int(nth or 1):
        Path(os.environ["GANZOO_FAULT_MARKER"]).write_text(point)
        while True:  # until the test kills us
            time.sleep(60)


class _HalfWriter:
    """A file whose next write stops half way at the fault point."""

    def __init__(self, fh: Any, point: str):
        self._fh, self._point = fh, point

    def write(self, data: bytes) -> int:
        where, _, nth = os.environ["GANZOO_FAULT"].partition(":")
        if where == self._point and _seen[self._point] + 1 == int(nth or 1):
            self._fh.write(data[: len(data) // 2])
            self._fh.flush()
            os.fsync(self._fh.fileno())  # the half is really on disk when we die
        _reached(self._point)
        return self._fh.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)

    def __enter__(self) -> _HalfWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.__exit__(*exc)


def _write_point(target: str) -> str | None:
    """The fault point of a file being written (its final name), if it has one."""
    if target.endswith(".safetensors"):
        return "ckpt-mid-write"
    return "rundir-mid-write" if target in ("config.toml", "metrics.jsonl") else None


def _faulty_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
    """Stands in for `open` in gan_zoo.util.atomic, which opens temporary files
    `.NAME.ganzoo-XXXXXXXX.tmp`."""
    fh = open(file, mode, *args, **kwargs)  # noqa: SIM115 (the caller closes it)
    point = _write_point(replaced_by(file))
    return _HalfWriter(fh, point) if point else fh


class _FaultyOs:
    """Stands in for `os` in gan_zoo.util.atomic: stops before a checkpoint's rename."""

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def replace(self, src: Any, dst: Any) -> None:
        if str(dst).endswith(".safetensors"):
            _reached("ckpt-before-rename")
        os.replace(src, dst)


def install() -> None:
    where = os.environ["GANZOO_FAULT"].partition(":")[0]
    if where not in POINTS:
        raise SystemExit(f"fault_driver: unknown fault point {where!r}; known: {POINTS}")
    atomic.open = _faulty_open  # type: ignore[attr-defined]  # shadows the builtin there
    atomic.os = _FaultyOs()  # type: ignore[assignment]
    prune = rundir.RunDir.prune

    def faulty_prune(self: rundir.RunDir, keep: int) -> None:
        _reached("ckpt-before-prune")
        prune(self, keep)

    rundir.RunDir.prune = faulty_prune


if __name__ == "__main__":
    if os.environ.get("GANZOO_FAULT"):
        install()
    sys.argv[0] = "ganzoo"
    cli.main()
