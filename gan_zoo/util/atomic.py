"""Atomic file replacement: how gan-zoo writes every file another process may read.

A training run is read while it is written (`ganzoo report`, `ganzoo sample`, a second process
resuming it, a person opening a PNG), and it can be killed at any instant. Every file is
therefore written under a temporary name in the same folder and renamed over the target
(os.replace, atomic on POSIX and Windows): a reader sees the old file or the complete new one,
never half of one, and a failed write leaves no temporary file behind.

A temporary file is named `.NAME.ganzoo-XXXXXXXX.tmp` (NAME: the file it replaces, cut where the
whole name would pass the usual 255-byte limit; X: random), so that one a kill left behind can be
told from anyone else's `.something.tmp`: temporary_target() recognises exactly this pattern,
and cleaners (RunDir.create) delete only what it recognises.

No gan-zoo imports here, so every module (checkpoint, data, images, evaluation) can use it.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

# Pictures and reports are meant to be shared (served, copied, opened by other users); other
# files keep the private mode of a fresh temporary file (0600).
SHARED_MODE = 0o644

TEMP_MARK = "ganzoo-"
# mkstemp's random part: 8 characters of [a-z0-9_] (CPython's tempfile._RandomNameSequence).
_TEMPORARY = re.compile(r"\.(?P<target>.+)\." + TEMP_MARK + r"[a-z0-9_]{8}\.tmp", re.DOTALL)


def temporary_target(name: str) -> str | None:
    """The name of the file that the temporary file `name` (a bare file name) of this module
    replaces; None for every name this module does not make."""
    match = _TEMPORARY.fullmatch(name)
    return match.group("target") if match else None


def temporary_prefix(name: str) -> str:
    """`.NAME.ganzoo-`, NAME cut so that the whole temporary name fits in 255 bytes (a target
    whose own name is near that limit can still be written)."""
    room = 255 - len(f"..{TEMP_MARK}XXXXXXXX.tmp")
    while len(os.fsencode(name)) > room:
        name = name[:-1]
    return f".{name}.{TEMP_MARK}"


@contextlib.contextmanager
def replacing(path: str | os.PathLike, mode: int | None = None) -> Iterator[Path]:
    """A temporary path beside `path` to write; it replaces `path` when the block completes
    and is removed when the block raises. `mode` widens the private 0600 of the new file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=temporary_prefix(path.name),
                                suffix=".tmp")
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
