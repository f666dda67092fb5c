"""Opening files that strangers may have replaced: regular files only, never a FIFO or device.

A FIFO named like a checkpoint, a sample grid or metrics.jsonl makes a plain open() wait
forever for a writer; a device can stream without end. Opening with O_NONBLOCK returns at once
whatever the file is, and fstat on the open descriptor (not a second lookup of the path, which
could be swapped in between) says whether it is a regular file. `follow_symlinks=False` also
refuses a symbolic link at the last path component (O_NOFOLLOW): for files gan-zoo appends to.
No gan-zoo or torch imports: any module can use it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from typing import IO, Any

_FLAGS = {"rb": os.O_RDONLY, "r": os.O_RDONLY, "ab": os.O_WRONLY | os.O_APPEND | os.O_CREAT,
          "a": os.O_WRONLY | os.O_APPEND | os.O_CREAT}


class NotRegularFileError(OSError):
    """The path exists but is not a regular file (FIFO, device, socket, folder, or a refused link)."""

    def __str__(self) -> str:  # "'PATH' is a FIFO ...", without OSError's "[Errno 0]"
        return f"{self.filename!r} {self.strerror}"


def open_regular(path: str | os.PathLike, mode: str = "rb", *, follow_symlinks: bool = True,
                 **kwargs: Any) -> IO[Any]:
    """open(path, mode) for a regular file only; NotRegularFileError for anything else.

    Modes: "rb", "r", "ab", "a" (text modes take encoding/errors in kwargs)."""
    if mode not in _FLAGS:
        raise ValueError(f"unsupported mode {mode!r}")
    flags = _FLAGS[mode] | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    if not follow_symlinks:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if not follow_symlinks and os.path.islink(path):
            raise NotRegularFileError(exc.errno or 0, "is a symbolic link; refusing to follow it",
                                      str(path)) from None
        if exc.errno == errno.ENXIO:  # opening a FIFO with no reader for writing, or a socket
            mode = None
            with contextlib.suppress(OSError):
                mode = os.stat(path).st_mode
            if mode is not None and not stat.S_ISREG(mode):
                raise NotRegularFileError(exc.errno, f"is not a regular file ({describe_mode(mode)})",
                                          str(path)) from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFileError(0, f"is not a regular file ({describe_mode(info.st_mode)})",
                                      str(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise


def describe_mode(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "not a plain file"


def read_regular_bytes(path: str | os.PathLike, limit: int | None = None, *,
                       follow_symlinks: bool = True) -> bytes:
    """The bytes of a regular file; NotRegularFileError when over `limit` bytes (checked from
    the file's size before anything is read, and again while reading: a file may grow)."""
    with open_regular(path, "rb", follow_symlinks=follow_symlinks) as fh:
        size = os.fstat(fh.fileno()).st_size
        if limit is not None and size > limit:
            raise NotRegularFileError(0, f"is {size} bytes, over the {limit}-byte limit", str(path))
        data = fh.read() if limit is None else fh.read(limit + 1)
    if limit is not None and len(data) > limit:
        raise NotRegularFileError(0, f"is over the {limit}-byte limit", str(path))
    return data
