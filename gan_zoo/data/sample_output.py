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

Speed (docs/performance.md, "Sampling"): PNGs are encoded by a small thread pool while the
next batch is generated (zlib releases the GIL), at most PENDING_PER_WORKER chunks per worker
waiting, so memory stays bounded; zlib level 1 (lossless: FID reads the same pixels) costs
about 60% of Pillow's default level 6 for files about 3% larger. bf16 generation
(`precision`) is opt-in here and `auto` on the command line, where util.hardware says bf16 is
fast. The same seed, precision and batch size give the same images in every form; another
batch size or thread count may move a few pixels by 1/255 (oneDNN picks other kernels).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..errors import GanZooError, UsageError
from ..interfaces import Generator
from ..util import hardware
from ..util.atomic import temporary_prefix
from ..util.textsafe import shown
from .images import MAX_GRID_IMAGES, MAX_GRID_PIXELS, grid_layout, paste_tile, to_uint8

SEED_MAX = 2**64 - 1  # torch.Generator.manual_seed takes unsigned 64-bit seeds
FORMS = "x.png (a grid), x.npy (an array) or a folder name"
PICTURE_MODE = 0o644  # like every other picture gan-zoo writes (gan_zoo.util.atomic.SHARED_MODE)
FOLDER_MODE = 0o755
PRECISIONS = ("auto", "fp32", "bf16")
DEFAULT_BATCH = 64  # images generated at once: little memory, full-size convolutions
PNG_LEVEL = 1  # zlib level of a folder's PNGs (lossless at every level; 1 is the fastest
#                that compresses: 64 px faces 0.50 ms and 7.1 KiB vs level 6's 0.80 ms, 6.9 KiB)
MAX_PNG_WORKERS = 8
PENDING_PER_WORKER = 2  # chunks queued per encoding thread: the bound on images held


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


def sample_precision(requested: str, device: str | torch.device) -> tuple[str, str]:
    """The precision ("fp32" or "bf16") that sampling in `requested` ("auto", "fp32", "bf16")
    uses on `device`, and why. auto is bf16 where util.hardware says bf16 is fast: there it
    is 1.7x faster than fp32 for conv64, and its images differ from fp32's by at most 1/255
    per pixel (a briefly trained conv64: 8% of pixel values moved by 1; docs/performance.md)."""
    if requested not in PRECISIONS:
        raise UsageError(f"precision {shown(str(requested), 40)}: use one of "
                         f"{', '.join(PRECISIONS)}")
    return hardware.choose_precision(requested, device, claim="")


# no_grad, not inference_mode: the same speed here (measured), and inference tensors handed to
# a caller could not be changed in place or used in a graph. torch applies the decorator of a
# generator function around each resume, so the caller's own code runs with its grad mode.
@torch.no_grad()
def generate(generator: Generator, n: int, seed: int = 0, batch_size: int = DEFAULT_BATCH,
             device: str | torch.device | None = None, precision: str = "fp32"
             ) -> Iterator[Tensor]:
    """n images in [-1, 1] (float32, on the CPU), one batch at a time. The latents come from
    one stream seeded by `seed`, drawn batch by batch (for normal latents the same numbers as
    drawing all n at once), so the same seed gives the same images in every output form.
    precision "bf16" (or "auto": see sample_precision) runs the generator under bf16 autocast."""
    check_seed(seed)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"batch size must be a whole number of at least 1, not "
                         f"{shown(str(batch_size), 40)}")
    device = torch.device(device or next(generator.parameters()).device)
    precision = sample_precision(precision, device)[0]
    rng = torch.Generator().manual_seed(seed)
    for start in range(0, n, batch_size):
        z = generator.sample_latent(min(batch_size, n - start), generator=rng)
        # Entered per batch: a `with` around the yield would leave autocast on in the caller.
        with (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16"
              else contextlib.nullcontext()):
            images = generator(z.to(device))
        yield images.float().cpu()


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
        self.fh.write(np.ascontiguousarray(batch).data)  # the array's own bytes, not a copy
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


def png_workers() -> int:
    """Threads that encode a folder's PNGs: one per usable core (capped)."""
    return max(1, min(MAX_PNG_WORKERS, hardware.usable_cores()))


def _save_pngs(folder: Path, first: int, images: np.ndarray) -> None:
    for i, img in enumerate(images, first):
        Image.fromarray(img.squeeze(-1) if img.shape[-1] == 1 else img).save(
            folder / f"{i:06d}.png", compress_level=PNG_LEVEL)


class _Folder(_Output):
    """PNGs in a fresh private folder beside the target, renamed to it when all are written.
    Each batch is cut into one chunk per worker and encoded in the pool while the caller makes
    the next batch; write() waits once more than PENDING_PER_WORKER chunks per worker are
    queued, so at most that many (and the batch being made) are held."""

    def __init__(self, path: Path, n: int, workers: int | None = None):
        super().__init__(path, n)
        self.tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=temporary_prefix(path.name),
                                         suffix=".tmp"))
        self.workers = workers or png_workers()
        self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="ganzoo-png")
        self.pending: deque[Future] = deque()

    def write(self, batch: np.ndarray) -> None:
        step = -(-len(batch) // self.workers)
        for start in range(0, len(batch), step):
            chunk = batch[start:start + step]
            self.pending.append(self.pool.submit(_save_pngs, self.tmp, self.written, chunk))
            self.written += len(chunk)
            while len(self.pending) > PENDING_PER_WORKER * self.workers:
                self._finish_oldest()

    def _finish_oldest(self) -> None:
        """Wait for the oldest chunk; re-raises its worker's error (a full disk) here."""
        self.pending.popleft().result()

    def commit(self) -> None:
        while self.pending:
            self._finish_oldest()
        self.pool.shutdown()
        os.chmod(self.tmp, FOLDER_MODE)
        try:
            os.replace(self.tmp, self.path)  # onto a missing or empty folder
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise UsageError(f"--out {shown(str(self.path))} was filled by someone else while "
                                 "the images were made; nothing was written there") from None
            raise

    def discard(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)  # no thread writes into it after
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
              batch_size: int = DEFAULT_BATCH, device: str | torch.device | None = None,
              precision: str = "fp32") -> Path:
    """`ganzoo sample`: n images of `generator` streamed to `out` (precision: see generate)."""
    check_seed(seed)
    check_out(out, n)
    return write_samples(generate(generator, n, seed, batch_size, device, precision), n, out)
