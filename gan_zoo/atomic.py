"""Atomic file replacement: how gan-zoo writes every file another process may read.

A training run is read while it is written (`ganzoo report`, `ganzoo sample`, a second process
resuming it, a person opening a PNG), and it can be killed at any instant. Every file is
therefore written under a temporary name in the same folder and renamed over the target
(os.replace, atomic on POSIX and Windows): a reader sees the old file or the complete new one,
never half of one, and a failed write leaves no temporary file behind.

No gan-zoo imports here, so every module (checkpoint, data, images, evaluation) can use it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

# Pictures and reports are meant to be shared (served, copied, opened by other users); other
# files keep the private mode of a fresh temporary file (0600).
SHARED_MODE = 0o644


@contextlib.contextmanager
def replacing(path: str | os.PathLike, mode: int | None = None) -> Iterator[Path]:
    """A temporary path beside `path` to write; it replaces `path` when the block completes
    and is removed when the block raises. `mode` widens the private 0600 of the new file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def replacing_file(path: str | os.PathLike, mode: int | None = None) -> Iterator[BinaryIO]:
    """replacing() with the temporary file open for binary writing; what was written is synced
    to disk before the rename, so a crash right after it leaves the complete file."""
    with replacing(path, mode) as tmp, open(tmp, "wb") as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


def write_bytes(path: str | os.PathLike, data: bytes, mode: int | None = None,
                durable: bool = False) -> Path:
    """Replace `path` with `data`. `durable` also syncs the folder, so the rename itself
    survives a power cut: for checkpoints, which a run must be able to resume from."""
    path = Path(path)
    with replacing_file(path, mode) as fh:
        fh.write(data)
    if durable:
        with contextlib.suppress(OSError):  # not every file system can sync a folder
            folder = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
    return path
