"""One training at a time per run directory: an advisory lock on RUN/.ganzoo.lock.

Two trainings writing one run would interleave metrics.jsonl and overwrite each other's
checkpoints. A training therefore holds an exclusive flock(2) on RUN/.ganzoo.lock from the
moment it creates or resumes the run until it ends; a second one is refused with the holder's
PID and host, which the holder writes into the file. The kernel drops the lock when the holding
process dies, however it dies (SIGKILL included), so a crash never leaves a stale lock: a file
that still names a dead process is simply taken over. The file is never deleted (deleting it
would let a third process lock a new file while the second still holds the old one); a clean
release empties it. It is also the mark of a folder that gan-zoo made for a run (rundir.is_run).

In a distributed run only rank 0 writes the run directory, so only rank 0 locks it (the torchrun
launcher of `--nproc` takes no lock). The lock is released when the training ends (its last
on_end callback); a training that raised keeps it until its process ends or RunDir.unlock().
Within one process the lock is re-entrant: a run that the same Python process already holds (a
training that raised, then resumed through the API) is not refused. flock is advisory and works
where the file system supports it (NFS emulates it); where the platform has no flock (Windows)
or the file system refuses locks, the run is not locked.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from pathlib import Path

from ..errors import GanZooError
from ..util.textsafe import shown

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".ganzoo.lock"
_OWNER_BYTES = 4096  # what is read back from a lock file another process wrote
# Locks this process holds, by the lock file's (device, inode).
_HELD: dict[tuple[int, int], RunLock] = {}


class RunInUseError(GanZooError):
    """The run directory is locked by another training."""


class RunLock:
    """A held lock; release() gives it up (the process ending does too)."""

    def __init__(self, fd: int, key: tuple[int, int], path: Path):
        self.fd, self.key, self.path = fd, key, path

    @property
    def held(self) -> bool:
        return _HELD.get(self.key) is self

    def release(self) -> None:
        if not self.held:
            return
        del _HELD[self.key]
        with contextlib.suppress(OSError):
            os.ftruncate(self.fd, 0)  # a released lock names nobody
        os.close(self.fd)  # closing the only descriptor drops the flock


def _open_lock_file(folder: Path, create: bool) -> int | None:
    path = folder / LOCK_NAME
    flags = os.O_RDWR | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags | (os.O_CREAT if create else 0), 0o644)
    except FileNotFoundError:
        if create:
            raise
        return None
    except OSError as exc:
        why = "is a symbolic link" if os.path.islink(path) else exc.strerror or str(exc)
        raise GanZooError(f"cannot lock the run directory: {shown(str(path))} {why}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise GanZooError(f"cannot lock the run directory: {shown(str(path))} is not a regular file")
    return fd


def _key(fd: int) -> tuple[int, int]:
    info = os.fstat(fd)
    return info.st_dev, info.st_ino


def _owner(fd: int) -> str:
    """Who holds the lock, from the file's `pid N` and `host NAME` lines (untrusted text)."""
    try:
        text = os.pread(fd, _OWNER_BYTES, 0).decode("utf-8", "replace")
    except OSError:
        text = ""
    fields = dict(line.partition(" ")[::2] for line in text.splitlines())
    pid, host = fields.get("pid", ""), fields.get("host", "")
    if not (pid.isascii() and pid.isdigit() and len(pid) <= 10):
        return "another process (it has not written its PID yet)"
    where = "" if not host or host == socket.gethostname() else f" on host {shown(host, 80)}"
    return f"process {pid}{where}"


def _in_use(folder: Path, fd: int) -> RunInUseError:
    return RunInUseError(
        f"run directory {shown(str(folder))} is in use by another training ({_owner(fd)} holds "
        f"its lock {LOCK_NAME}); wait for it to end or stop it, or choose another --out")


def check_free(folder: str | os.PathLike) -> None:
    """Raise RunInUseError if another process holds `folder`'s lock (nothing is created): an
    early refusal before a start that would fail at acquire() after loading the data."""
    folder = Path(folder)
    if fcntl is None:
        return
    fd = _open_lock_file(folder, create=False) if folder.is_dir() else None
    if fd is None:
        return
    try:
        if _key(fd) in _HELD:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _in_use(folder, fd) from None
        except OSError:
            return  # no locks on this file system: acquire() says so
    finally:
        os.close(fd)  # drops the shared probe lock (flock belongs to this descriptor)


def acquire(folder: str | os.PathLike) -> RunLock | None:
    """Lock `folder` (which must exist) for this process and write our PID and host into the
    lock file; RunInUseError if another process holds it. None where locking is unavailable."""
    folder = Path(folder)
    try:
        fd = _open_lock_file(folder, create=True)
    except OSError as exc:
        raise GanZooError(f"cannot write to output folder {shown(str(folder))}: "
                          f"{exc.strerror or exc}") from None
    assert fd is not None
    key = _key(fd)
    if key in _HELD:
        os.close(fd)
        return _HELD[key]
    if fcntl is None:
        os.close(fd)
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        error = _in_use(folder, fd)
        os.close(fd)
        raise error from None
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return None  # a file system without locks: train unlocked rather than not at all
        raise GanZooError(f"cannot lock the run directory {shown(str(folder))}: "
                          f"{exc.strerror or exc}") from None
    try:
        owner = f"pid {os.getpid()}\nhost {socket.gethostname()}\n".encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, owner, 0)
    except OSError as exc:
        os.close(fd)
        raise GanZooError(f"cannot write to output folder {shown(str(folder))}: "
                          f"{exc.strerror or exc}") from None
    lock = RunLock(fd, key, folder / LOCK_NAME)
    _HELD[key] = lock
    return lock
