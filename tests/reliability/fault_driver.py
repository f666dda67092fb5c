"""`python -m tests.reliability.fault_driver ARGS...`: run `ganzoo ARGS` with one fault injected.

``GANZOO_FAULT=WHERE:N`` freezes the process at the N-th time it reaches WHERE, after creating
the file named by ``GANZOO_FAULT_MARKER``, so that a test can SIGKILL it at exactly that moment:

  ckpt-mid-write      half of a checkpoint's bytes written (and fsynced) to its temporary file
  ckpt-before-rename  the temporary file complete, not yet renamed over step-N.safetensors
  ckpt-before-prune   the new checkpoint in place, older ones not yet pruned (K+1 on disk)
  rundir-mid-write    half of config.toml or of a rewound metrics.jsonl in its temporary file

The faults replace ``os`` inside gan_zoo.checkpoint and gan_zoo.rundir only (and wrap
RunDir.prune); the program itself carries no test hooks.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from gan_zoo import checkpoint, cli, rundir

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


class _FaultyOs:
    """Stands in for `os` inside one module."""

    def __init__(self, write_point: str, rename_point: str | None = None):
        self._write_point, self._rename_point = write_point, rename_point

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def fdopen(self, *args: Any, **kwargs: Any) -> _HalfWriter:
        return _HalfWriter(os.fdopen(*args, **kwargs), self._write_point)

    def replace(self, src: Any, dst: Any) -> None:
        if self._rename_point:
            _reached(self._rename_point)
        os.replace(src, dst)


def install() -> None:
    where = os.environ["GANZOO_FAULT"].partition(":")[0]
    if where not in POINTS:
        raise SystemExit(f"fault_driver: unknown fault point {where!r}; known: {POINTS}")
    checkpoint.os = _FaultyOs("ckpt-mid-write", "ckpt-before-rename")
    rundir.os = _FaultyOs("rundir-mid-write")
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
