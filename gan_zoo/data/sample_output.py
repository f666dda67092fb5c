"""Generated images to disk, batch by batch: a .npy array, a new folder of PNGs or one grid.

`ganzoo sample -n 1000000` must not hold a million images (12 GB as floats at 32 px): images are
generated one batch at a time and each batch is written before the next is made, so memory stays
that of one batch whatever -n is. Only a grid (`x.png`) is drawn whole, so its size is capped:

* `x.npy`   an (N, H, W, C) uint8 array, written at exactly this path (whatever the case of
            its suffix), under a temporary name beside it that is renamed when complete: the
            file appears whole or not at all. An existing file of that name is replaced.
* `x.png`   a grid: at most MAX_GRID_IMAGES images and MAX_GRID_PIXELS pixels (an 8000 x 8000
            picture); larger is refused before anything is generated or loaded.
* `name`    (no suffix) a folder of 000000.png, 000001.png, ...: written into a new temporary
            folder beside it and renamed when complete. An existing folder must be empty:
            gan-zoo never writes among (or over) a user's files.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..errors import GanZooError, UsageError
from ..interfaces import Generator
from ..util.atomic import temporary_prefix
from ..util.textsafe import shown
from .images import MAX_GRID_IMAGES, MAX_GRID_PIXELS, grid_layout, paste_tile, to_uint8

SEED_MAX = 2**64 - 1  # torch.Generator.manual_seed takes unsigned 64-bit seeds
FORMS = "x.png (a grid), x.npy (an array) or a folder name"
PICTURE_MODE = 0o644  # like every other picture gan-zoo writes (gan_zoo.util.atomic.SHARED_MODE)
FOLDER_MODE = 0o755


def _form(out: str | os.PathLike) -> tuple[str, Path]:
    """("grid" | "npy" | "folder", path) of an --out value; refuses what cannot be one."""
    text = os.fspath(out)
    if not text:
        raise UsageError(f"--out is empty; give {FORMS}")
    path = Path(text)
    suffix = path.suffix.lower()
    if suffix == ".png":
        return "grid", path
    if suffix == ".npy":
        return "npy", path
    if path.suffix:
        raise UsageError(f"--out {shown(text)}: use {FORMS}")
    return "folder", path


def _cannot_write(path: Path, exc: OSError) -> GanZooError:
    return GanZooError(f"cannot write --out {shown(str(path))}: {exc.strerror or exc}")


def check_out(out: str | os.PathLike, n: int) -> Path:
    """Refuse an --out that cannot take n images, before a model is loaded or an image made."""
    kind, path = _form(out)
    try:
        exists = path.exists() or path.is_symlink()
        is_dir = path.is_dir()
        entries = next(os.scandir(path), None) if is_dir else None
    except OSError as exc:  # a name too long, a folder that cannot be listed
        raise _cannot_write(path, exc) from None
    if kind == "grid" and n > MAX_GRID_IMAGES:
        raise UsageError(f"-n {n}: a .png grid holds at most {MAX_GRID_IMAGES} images; write "
                         "a .npy array or a folder of PNGs for more")
    if kind == "folder":
        if exists and (not is_dir or path.is_symlink()):
            raise UsageError(f"--out {shown(str(path))} exists and is not a folder; give a new "
                             f"folder name, or {FORMS}")
        if entries is not None:
            raise UsageError(f"--out {shown(str(path))} is a folder that is not empty; give a "
                             "new (or empty) folder: gan-zoo does not write among other files")
    elif is_dir:
        raise UsageError(f"--out {shown(str(path))} is a folder; give a new file name for "
                         f"{'a grid' if kind == 'grid' else 'an array'}")
    return path


def check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise UsageError(f"--seed {shown(str(seed), 40)}: use a whole number from 0 to {SEED_MAX}")
    return seed


@torch.no_grad()
def generate(generator: Generator, n: int, seed: int = 0, batch_size: int = 64,
             device: str | torch.device | None = None) -> Iterator[Tensor]:
    """n images in [-1, 1] on the CPU, one batch at a time. The latents come from one stream
    seeded by `seed`, drawn batch by batch (for normal latents the same numbers as drawing all
    n at once), so the same seed gives the same images in every output form."""
    check_seed(seed)
    if batch_size < 1:
        raise UsageError(f"batch size must be at least 1, not {batch_size}")
    device = device or next(generator.parameters()).device
    rng = torch.Generator().manual_seed(seed)
    for start in range(0, n, batch_size):
        z = generator.sample_latent(min(batch_size, n - start), generator=rng)
        yield generator(z.to(device)).float().cpu()


class _Output:
    """Receives uint8 (N, H, W, C) batches; commit() puts the result at `path`."""

    def __init__(self, path: Path, n: int):
        self.path, self.n, self.written = path, n, 0
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, batch: np.ndarray) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        raise NotImplementedError

    def discard(self) -> None:
        raise NotImplementedError


class _ArrayFile(_Output):
    """A .npy written front to back: the header (shape known from the first batch), then each
    batch's bytes. Never mapped or held whole."""

    def __init__(self, path: Path, n: int):
        super().__init__(path, n)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=temporary_prefix(path.name), suffix=".tmp")
        self.tmp = Path(name)
        self.fh = os.fdopen(fd, "wb")

    def write(self, batch: np.ndarray) -> None:
        if self.written == 0:
            header = {"descr": np.lib.format.dtype_to_descr(batch.dtype), "fortran_order": False,
                      "shape": (self.n, *batch.shape[1:])}
            np.lib.format.write_array_header_1_0(self.fh, header)
        self.fh.write(np.ascontiguousarray(batch).tobytes())
        self.written += len(batch)

    def commit(self) -> None:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        os.chmod(self.tmp, PICTURE_MODE)
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        self.fh.close()
        self.tmp.unlink(missing_ok=True)


class _Folder(_Output):
    """PNGs in a fresh private folder beside the target, renamed to it when all are written."""

    def __init__(self, path: Path, n: int):
        super().__init__(path, n)
        self.tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=temporary_prefix(path.name),
                                         suffix=".tmp"))

    def write(self, batch: np.ndarray) -> None:
        for img in batch:
            Image.fromarray(img.squeeze(-1) if img.shape[-1] == 1 else img).save(
                self.tmp / f"{self.written:06d}.png")
            self.written += 1

    def commit(self) -> None:
        os.chmod(self.tmp, FOLDER_MODE)
        try:
            os.replace(self.tmp, self.path)  # onto a missing or empty folder
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise UsageError(f"--out {shown(str(self.path))} was filled by someone else while "
                                 "the images were made; nothing was written there") from None
            raise

    def discard(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


class _Grid(_Output):
    """One picture: a canvas filled batch by batch, written (atomically) at the end."""

    def __init__(self, path: Path, n: int, nrow: int | None = None):
        super().__init__(path, n)
        self.nrow = nrow
        self.canvas: np.ndarray | None = None
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=temporary_prefix(path.name), suffix=".tmp")
        os.close(fd)  # made now so that an unwritable place is found before any image is made
        self.tmp = Path(name)

    def write(self, batch: np.ndarray) -> None:
        if self.canvas is None:
            _, h, w, c = batch.shape
            self.nrow, height, width = grid_layout(self.n, h, w, self.nrow)
            if height * width > MAX_GRID_PIXELS:
                raise UsageError(
                    f"-n {self.n}: a grid of {self.n} images of {w}x{h} would be {width}x{height} "
                    f"pixels, over the {MAX_GRID_PIXELS // 1_000_000}-megapixel limit of a .png "
                    "grid; write a .npy array or a folder of PNGs")
            self.canvas = np.full((height, width, c), 255, np.uint8)
        for img in batch:
            paste_tile(self.canvas, self.written, img, self.nrow)
            self.written += 1

    def commit(self) -> None:
        if self.canvas is None:
            raise UsageError("no images to draw")
        picture = Image.fromarray(self.canvas.squeeze(-1) if self.canvas.shape[-1] == 1
                                  else self.canvas)
        with open(self.tmp, "wb") as fh:
            picture.save(fh, format="PNG")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(self.tmp, PICTURE_MODE)
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)


def write_samples(batches: Iterable[Tensor], n: int, out: str | os.PathLike,
                  nrow: int | None = None) -> Path:
    """Write n images, given as batches of (B, C, H, W) in [-1, 1], by the form of `out`
    (see the module docstring); returns the path written, exactly."""
    path = check_out(out, n)
    kind = _form(out)[0]
    if n < 1:
        raise UsageError("no images to write")
    output: _Output | None = None
    try:
        output = (_Grid(path, n, nrow) if kind == "grid" else
                  _ArrayFile(path, n) if kind == "npy" else _Folder(path, n))
        for batch in batches:
            output.write(to_uint8(batch))
        if output.written != n:
            raise GanZooError(f"made {output.written} images, not {n}")
        output.commit()
    except BaseException as exc:
        if output is not None:
            output.discard()
        if isinstance(exc, OSError):
            raise _cannot_write(path, exc) from None
        raise
    return path


def sample_to(generator: Generator, n: int, out: str | os.PathLike, seed: int = 0,
              batch_size: int = 64, device: str | torch.device | None = None) -> Path:
    """`ganzoo sample`: n images of `generator` streamed to `out`."""
    check_seed(seed)
    check_out(out, n)
    return write_samples(generate(generator, n, seed, batch_size, device), n, out)
