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
* `x.gif`   (`--interpolate K`, walk_to) a looping walk through K latents, its frames all
            made first (at most MAX_WALK_FRAMES), then written like x.npy; `x.mp4` the same
            through an ffmpeg executable on PATH.

Every form takes a truncation psi (gan_zoo.sampling: `--truncation`).

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
import subprocess
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .. import sampling
from ..errors import GanZooError, UsageError
from ..interfaces import Generator
from ..util import atomic, hardware
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
             device: str | torch.device | None = None, precision: str = "fp32",
             truncation: float = 1.0, classes: Sequence[int] | None = None
             ) -> Iterator[Tensor]:
    """n images in [-1, 1] (float32, on the CPU), one batch at a time. The latents come from
    one stream seeded by `seed`, drawn batch by batch (for normal latents the same numbers as
    drawing all n at once), so the same seed gives the same images in every output form.
    precision "bf16" (or "auto": see sample_precision) runs the generator under bf16 autocast.
    truncation: psi in (0, 1], 1 = off (gan_zoo.sampling); a "latent" generator's truncated
    latents are redrawn within each batch, so they too are the same for the same batch size.
    A conditional generator draws the given classes in turn (image i: classes[i % k]), else
    labels drawn like training's from the same stream (gan_zoo.sampling.draw_labels)."""
    check_seed(seed)
    _check_batch_size(batch_size)
    psi = sampling.check_truncation(generator, truncation)
    device = torch.device(device or next(generator.parameters()).device)
    precision = sample_precision(precision, device)[0]
    rng = torch.Generator().manual_seed(seed)
    for start in range(0, n, batch_size):
        z = sampling.draw_latents(generator, min(batch_size, n - start), psi, rng)
        y = sampling.draw_labels(generator, len(z), rng, classes, start)
        yield _render(generator, z, psi, device, precision, y)


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"batch size must be a whole number of at least 1, not "
                         f"{shown(str(batch_size), 40)}")


def _render(generator: Generator, z: Tensor, psi: float, device: torch.device,
            precision: str, y: Tensor | None = None) -> Tensor:
    """One batch of images for the latents z (and labels y of a conditional generator),
    float32 on the CPU (call under no_grad)."""
    # Entered per batch: a `with` around a yield would leave autocast on in the caller.
    with (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16"
          else contextlib.nullcontext()):
        images = sampling.images_for(generator, z.to(device), psi,
                                     y=None if y is None else y.to(device))
    return images.float().cpu()


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
              precision: str = "fp32", truncation: float = 1.0,
              classes: Sequence[int] | None = None) -> Path:
    """`ganzoo sample`: n images of `generator` streamed to `out` (precision, truncation,
    classes: see generate)."""
    check_seed(seed)
    sampling.check_truncation(generator, truncation)
    check_out(out, n)
    return write_samples(generate(generator, n, seed, batch_size, device, precision, truncation,
                                  classes), n, out)


@torch.no_grad()
def class_grid(generator: Generator, classes: Sequence[int] | None = None, columns: int = 8,
               seed: int = 0, batch_size: int = DEFAULT_BATCH,
               device: str | torch.device | None = None, precision: str = "fp32",
               truncation: float = 1.0) -> Tensor:
    """A conditional generator's class grid: one row per class (the given ones, else all),
    `columns` latents drawn from `seed`, the same latent down each column, so a column shows
    one latent in every class; (rows * columns, C, H, W) in [-1, 1], row by row."""
    check_seed(seed)
    _check_batch_size(batch_size)
    k = getattr(generator, "num_classes", 0)
    if not k:
        raise UsageError("a class grid needs a conditional generator (trained with "
                         "--conditional); this one has no classes")
    rows = list(classes) if classes else list(range(k))
    if len(rows) * columns > MAX_GRID_IMAGES:
        raise UsageError(f"a class grid of {len(rows)} classes x {columns} columns is over the "
                         f"{MAX_GRID_IMAGES}-image limit of a grid; choose classes with --class "
                         "or fewer columns with -n")
    psi = sampling.check_truncation(generator, truncation)
    device = torch.device(device or next(generator.parameters()).device)
    precision = sample_precision(precision, device)[0]
    keys = sampling.draw_latents(generator, columns, psi, torch.Generator().manual_seed(seed))
    z = keys.repeat(len(rows), 1)
    y = torch.tensor(rows, dtype=torch.long).repeat_interleave(columns)
    return torch.cat([_render(generator, zc, psi, device, precision, yc) for zc, yc in
                      zip(z.split(batch_size), y.split(batch_size), strict=True)])


# ------------------------------------------------------------------------------ latent walks

ANIMATIONS = {".gif": "gif", ".mp4": "mp4"}
WALK_FORMS = "x.gif (or x.mp4, with ffmpeg on PATH)"
MAX_WALK_LATENTS = 1000
MAX_WALK_FRAMES = 4096  # frames of one walk, all held before encoding (64 px: 48 MiB)
MAX_FPS = 50  # GIF delays are whole hundredths of a second; browsers slow faster ones down
FFMPEG_TIMEOUT = 600  # seconds for ffmpeg to encode a walk


def ffmpeg_path() -> str | None:
    """The ffmpeg executable on PATH, or None."""
    return shutil.which("ffmpeg")


def _no_ffmpeg(out: str) -> GanZooError:
    return GanZooError(f"--out {shown(out)}: MP4 needs an ffmpeg executable on PATH and none "
                       "was found; install ffmpeg, or write a .gif, which needs nothing else")


def check_walk_out(out: str | os.PathLike) -> tuple[str, Path]:
    """("gif" | "mp4", path) of an --out for --interpolate, refused before anything is loaded
    when it cannot be one: another suffix, .mp4 without ffmpeg, an existing folder. As for
    x.png and x.npy (check_out), an existing file is replaced, whole, once the walk is made."""
    text = os.fspath(out)
    if not text:
        raise UsageError(f"--out is empty; --interpolate writes {WALK_FORMS}")
    path = Path(text)
    kind = ANIMATIONS.get(path.suffix.lower())
    if kind is None:
        raise UsageError(f"--out {shown(text)}: --interpolate writes an animation: give "
                         f"{WALK_FORMS}")
    if kind == "mp4" and ffmpeg_path() is None:
        raise _no_ffmpeg(text)
    try:
        is_dir = path.is_dir()
    except OSError as exc:
        raise _cannot_write(path, exc) from None
    if is_dir:
        raise UsageError(f"--out {shown(text)} is a folder; give a new file name for the "
                         "animation")
    return kind, path


def check_walk(k: int, frames: int, fps: int) -> None:
    """Refuse a walk of other than 2..MAX_WALK_LATENTS latents, 1..MAX_WALK_FRAMES frames in
    all or 1..MAX_FPS frames per second."""
    def whole(value: object, name: str, low: int, high: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise UsageError(f"{name} {shown(value, 40)}: use a whole number from {low} to "
                             f"{high}")

    whole(k, "--interpolate", sampling.MIN_WALK_LATENTS, MAX_WALK_LATENTS)
    whole(frames, "--frames", 1, MAX_WALK_FRAMES)
    whole(fps, "--fps", 1, MAX_FPS)
    if k * frames > MAX_WALK_FRAMES:
        raise UsageError(f"--interpolate {k} with --frames {frames} is {k * frames} frames, over "
                         f"the {MAX_WALK_FRAMES} of one walk; use fewer latents or frames")


@torch.no_grad()
def walk_frames(generator: Generator, k: int, frames: int = 16, seed: int = 0,
                truncation: float = 1.0, batch_size: int = DEFAULT_BATCH,
                device: str | torch.device | None = None, precision: str = "fp32",
                label: int | None = None) -> np.ndarray:
    """The frames of a closed walk through k seeded latents, (k * frames, H, W, C) uint8:
    k latents drawn as `generate` draws its first batch (so frame i * frames is image i of
    the same seed and truncation at a batch size of at least k), joined by spherical
    interpolation (gan_zoo.sampling.walk_latents), the last back to the first. A conditional
    generator walks within one class: `label`, else one drawn from the same stream."""
    check_seed(seed)
    check_walk(k, frames, 1)
    _check_batch_size(batch_size)
    psi = sampling.check_truncation(generator, truncation)
    device = torch.device(device or next(generator.parameters()).device)
    precision = sample_precision(precision, device)[0]
    rng = torch.Generator().manual_seed(seed)
    keys = sampling.draw_latents(generator, k, psi, rng)
    y = sampling.draw_labels(generator, 1, rng, None if label is None else [label])
    z = sampling.walk_latents(keys, frames)
    return np.concatenate([to_uint8(_render(generator, chunk, psi, device, precision,
                                            None if y is None else y.expand(len(chunk))))
                           for chunk in z.split(batch_size)])


def _gif(frames: np.ndarray, fps: int, fh: BinaryIO) -> None:
    """An endlessly looping GIF. One palette for the whole walk (256 colours by median cut
    over every frame), no dithering: colours do not flicker from frame to frame and the file
    stays small (64 px faces, 64 frames: 0.25 MB). Identical consecutive frames are
    merged by Pillow (their durations added)."""
    n, h, w, c = frames.shape
    mode = "L" if c == 1 else "RGB"
    pictures = [Image.fromarray(f.squeeze(-1) if c == 1 else f, mode) for f in frames]
    if mode == "RGB":
        sheet = Image.fromarray(frames.reshape(n * h, w, c), "RGB")
        palette = sheet.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        pictures = [p.quantize(palette=palette, dither=Image.Dither.NONE) for p in pictures]
    pictures[0].save(fh, format="GIF", save_all=True, append_images=pictures[1:],
                     duration=1000 / fps, loop=0)


def _mp4(frames: np.ndarray, fps: int, tmp: Path, ffmpeg: str) -> None:
    """H.264 (or ffmpeg's default MP4 codec) through an ffmpeg subprocess: an argument list
    (no shell), the frames piped as raw RGB, a time limit."""
    n, h, w, c = frames.shape
    if c == 1:
        frames = np.repeat(frames, 3, axis=-1)
    command = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps),
               "-i", "pipe:0", "-an", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2",
               "-pix_fmt", "yuv420p", "-movflags", "+faststart", "-f", "mp4", str(tmp)]
    try:
        done = subprocess.run(command, input=np.ascontiguousarray(frames).tobytes(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              timeout=FFMPEG_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise GanZooError(f"ffmpeg did not finish the MP4 within {FFMPEG_TIMEOUT} s; nothing "
                          "was written") from None
    except OSError as exc:
        raise GanZooError(f"cannot run ffmpeg ({shown(ffmpeg)}): {exc.strerror or exc}; "
                          "write a .gif instead") from None
    if done.returncode != 0:
        said = done.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise GanZooError(f"ffmpeg failed (exit status {done.returncode}) and nothing was "
                          f"written: {shown(' / '.join(said), 600)}")


def walk_to(generator: Generator, k: int, out: str | os.PathLike, frames: int = 16,
            fps: int = 12, seed: int = 0, truncation: float = 1.0,
            batch_size: int = DEFAULT_BATCH, device: str | torch.device | None = None,
            precision: str = "fp32", label: int | None = None) -> Path:
    """`ganzoo sample --interpolate K`: a looping walk through k latents (walk_frames) as an
    animation at `out` (x.gif, or x.mp4 through ffmpeg), written under a temporary name beside
    it and renamed when complete; returns the path."""
    check_seed(seed)
    check_walk(k, frames, fps)
    sampling.check_truncation(generator, truncation)
    kind, path = check_walk_out(out)
    ffmpeg = (ffmpeg_path() or "") if kind == "mp4" else ""
    if kind == "mp4" and not ffmpeg:  # gone since the check
        raise _no_ffmpeg(os.fspath(out))
    try:
        # The temporary file first, so that an unwritable place is found before any image.
        with atomic.replacing(path, PICTURE_MODE) as tmp:
            made = walk_frames(generator, k, frames, seed, truncation, batch_size, device,
                               precision, label)
            if kind == "gif":
                with open(tmp, "wb") as fh:
                    _gif(made, fps, fh)
                    fh.flush()
                    os.fsync(fh.fileno())
            else:
                _mp4(made, fps, tmp, ffmpeg)
    except OSError as exc:
        raise _cannot_write(path, exc) from None
    return path
