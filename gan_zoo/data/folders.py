"""Datasets: a folder of images decoded once into a memory-mapped uint8 cache, and batching.

The cache is an ``.npy`` file of shape (N, R, R, 3) keyed by the files' paths, sizes and
modification times and by the resolution: a second run on the same folder opens it in
milliseconds; a changed folder is decoded again. Opening it memory-mapped keeps resident
memory flat however large the dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image

from ..errors import DataError
from ..training.distributed import per_rank_batch
from ..util.atomic import replacing, replacing_file, write_bytes
from ..util.regular_files import open_regular
from ..util.textsafe import escape, shown
from .builtin import BUILTIN_NAME, BUILTIN_SIZE, SHAPE_KINDS, make_labelled_shapes

# Files read as images, by suffix; Pillow is told to try only these formats, so a renamed
# file never reaches an exotic decoder (EPS would start Ghostscript).
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".bmp", ".gif", ".tif",
                    ".tiff"}
PILLOW_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")
# Image formats found in photo and dataset folders that gan-zoo does not read: counted and
# reported as skipped (convert them to PNG or JPEG), never ignored without a word.
UNSUPPORTED_EXTENSIONS = {".heic", ".heif", ".avif", ".jxl", ".jp2", ".j2k", ".jpx", ".svg",
                          ".psd", ".xcf", ".ico", ".icns", ".exr", ".hdr", ".dds", ".tga",
                          ".ppm", ".pgm", ".pbm", ".pnm", ".pcx", ".raw", ".dng", ".cr2", ".cr3",
                          ".nef", ".arw", ".orf", ".rw2", ".raf"}
CACHE_FORMAT = 2  # 2: decoded by crop-and-reduce first (results differ from 1 by rounding)
# Decompression-bomb guards, both checked from the file's header before any pixel is decoded
# (after a JPEG's DCT scaling, which decodes a large photo at 1/2, 1/4 or 1/8 size):
# at most this many pixels (PIL itself warns at ~89M) ...
MAX_PIXELS = 64_000_000
# ... and at most this many bytes for the decoded image as Pillow holds it (width x height x
# 1 byte for 1/L/P, 2 for 16-bit greyscale, 4 for every other mode). Mode conversion, alpha and
# 16-bit scaling then run on the centre square already reduced to about 3x the training
# resolution, in bands of at most BAND_BYTES, so one image's peak memory is about this plus
# BAND_BYTES, per decoding thread.
MAX_DECODE_BYTES = 256 * 2**20
BAND_BYTES = 16 * 2**20
# Reduce by box averaging to at least this many times the resolution, then Lanczos: Pillow's
# reducing_gap, which it calls indistinguishable from a full Lanczos resize at 3.
REDUCING_GAP = 3
_ORIENTATION = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
                8: Image.Transpose.ROTATE_90}


def cache_dir() -> Path:
    root = os.environ.get("GANZOO_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "gan_zoo"
    )
    return Path(root) / "data"


def scan_images(root: Path) -> list[Path]:
    """Image files under root, recursively, sorted; symlinked folders are not followed."""
    return scan_folder(root)[0]


def scan_folder(root: Path) -> tuple[list[Path], dict[str, int]]:
    """(image files under root, sorted; {suffix: count} of image files in formats gan-zoo does
    not read). Recursive; symlinked folders are not followed."""
    files: list[Path] = []
    unsupported: dict[str, int] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in filenames:
            suffix = Path(name).suffix.lower()
            if suffix in IMAGE_EXTENSIONS:
                files.append(Path(dirpath) / name)
            elif suffix in UNSUPPORTED_EXTENSIONS:
                unsupported[suffix] = unsupported.get(suffix, 0) + 1
    return sorted(files), unsupported


def _fingerprint(files: list[Path], root: Path, resolution: int) -> str:
    h = hashlib.sha256(f"v{CACHE_FORMAT}:{resolution}".encode())
    for f in files:
        try:
            st = f.stat()
        except OSError:
            continue
        rel = os.fsencode(f.relative_to(root))
        h.update(rel + b"\0" + f"{st.st_size}:{st.st_mtime_ns}".encode() + b"\n")
    return h.hexdigest()[:32]


def pixel_bytes(mode: str) -> int:
    """Bytes per pixel of an image of this mode as Pillow holds it in memory."""
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode.startswith("I;16") else 4


def check_decode_size(width: int, height: int, mode: str) -> None:
    """Refuse, from the header, an image whose decoding would take more than the limits."""
    if width * height > MAX_PIXELS:
        raise ValueError(f"{width}x{height} exceeds the {MAX_PIXELS} pixel limit")
    need = width * height * pixel_bytes(mode)
    if need > MAX_DECODE_BYTES:
        raise ValueError(f"decoding {width}x{height} {mode} takes {need >> 20} MiB, over the "
                         f"{MAX_DECODE_BYTES >> 20} MiB limit")


def _to_plain_mode(im: Image.Image) -> Image.Image:
    """L, RGB, I or F: the modes box-averaging is right for (alpha composited on white,
    palettes expanded, 16-bit widened to 32-bit ints)."""
    if im.mode in ("L", "RGB", "I", "F"):
        return im
    if im.mode == "1":
        return im.convert("L")
    if im.mode.startswith("I;16"):
        return im.convert("I")
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
            im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        flat = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(flat, im).convert("RGB")
    return im.convert("RGB")


def _crop_reduced(im: Image.Image, box: tuple[int, int, int, int], factor: int) -> Image.Image:
    """The box of im in a plain mode, reduced `factor` times by box averaging: converted band by
    band (a band is a multiple of `factor` rows), so no full-size converted copy exists."""
    left, top, right, bottom = box
    rows = max(1, BAND_BYTES // (4 * (right - left) * factor)) * factor
    parts = []
    for y in range(top, bottom, rows):
        band = _to_plain_mode(im.crop((left, y, right, min(y + rows, bottom))))
        parts.append(band.reduce(factor) if factor > 1 else band)
    if len(parts) == 1:
        return parts[0]
    out = Image.new(parts[0].mode, (parts[0].width, sum(p.height for p in parts)))
    y = 0
    for part in parts:
        out.paste(part, (0, y))
        y += part.height
    return out


def _to_8bit(im: Image.Image, peak: float) -> Image.Image:
    """An I or F image (small by now) scaled so that `peak` is 255, as 8-bit greyscale."""
    arr = np.nan_to_num(np.asarray(im, dtype=np.float32), nan=0.0, posinf=peak, neginf=0.0)
    return Image.fromarray(np.clip(arr / peak * 255, 0, 255).round().astype(np.uint8))


def _peak(im: Image.Image) -> float:
    """The value that means full scale: 16-bit files are 16-bit whatever their values (a dark
    16-bit image stays dark); plain 32-bit ints and floats are judged by their range."""
    if im.mode.startswith("I;16"):
        return 65535.0
    high = im.getextrema()[1]
    if im.mode == "F" and high <= 1.0:
        return 1.0
    return 65535.0 if high > 255 else 255.0


def load_image(path: Path | BinaryIO, resolution: int) -> np.ndarray:
    """Decode one file to (R, R, 3) uint8: EXIF-rotated, RGB, centre-cropped square, resized.

    Sizes are checked from the header (check_decode_size); only the centre square is
    converted, after reducing it to about REDUCING_GAP x the resolution."""
    with Image.open(path, formats=PILLOW_FORMATS) as im:
        if im.format == "JPEG":
            # DCT scaling: a large photo decodes at 1/2..1/8 size. Twice the reducing gap: at
            # the gap itself the 8-pixel rounding of the scaled size shifts the crop visibly.
            draft = 2 * REDUCING_GAP * resolution
            im.draft(None, (draft, draft))
        check_decode_size(im.width, im.height, im.mode)
        orientation = im.getexif().get(0x0112)
        peak = _peak(im) if im.mode.startswith("I") or im.mode == "F" else None
        side = min(im.size)
        if side < 1:
            raise ValueError("empty image")
        left, top = (im.width - side) // 2, (im.height - side) // 2
        factor = max(1, side // (resolution * REDUCING_GAP))
        small = _crop_reduced(im, (left, top, left + side, top + side), factor)
    if peak is not None:
        small = _to_8bit(small, peak)
    if orientation in _ORIENTATION:
        small = small.transpose(_ORIENTATION[orientation])
    small = small.convert("RGB")
    if small.size != (resolution, resolution):
        small = small.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return np.asarray(small, dtype=np.uint8)


def _try_load(path: Path, resolution: int) -> np.ndarray | None:
    try:
        # Regular files only: a FIFO would block forever; devices, dangling or looping links.
        with open_regular(path, "rb") as fh, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return load_image(fh, resolution)
    except Exception:
        return None


@dataclass
class ImageArray:
    """A decoded dataset: (N, R, R, 3) uint8, usually memory-mapped, and where it came from.

    `skipped` counts the image files not used (unreadable, or in a format gan-zoo does not
    read); `skipped_kinds` splits that count by file suffix.

    Classes (gan_zoo.data.classes): a folder's subfolders name them (the ImageFolder layout)
    and `labels` gives each image's index in `classes`, or -1 for an image outside every
    class folder; `empty_classes` names subfolders without a usable image. A folder without
    subfolders has no classes (`labels` None); the built-in shapes are labelled by kind."""

    images: np.ndarray
    source: str
    skipped: int = 0
    cache_path: Path | None = None
    skipped_kinds: dict[str, int] = field(default_factory=dict)
    labels: np.ndarray | None = None
    classes: tuple[str, ...] = ()
    empty_classes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def resolution(self) -> int:
        return int(self.images.shape[1])

    def skipped_summary(self) -> str:
        """"3 unreadable file(s) (.png: 2, .heic: 1)", for the line that reports them."""
        kinds = ", ".join(f"{escape(k)}: {n}" for k, n in sorted(self.skipped_kinds.items()))
        return f"{self.skipped} unreadable file(s)" + (f" ({kinds})" if kinds else "")


def _kind(path: Path) -> str:
    return path.suffix.lower() or "(no suffix)"


def _decode_folder(files: list[Path], resolution: int, target: Path) -> list[int]:
    """Decode files into target .npy; returns the indices (into files) of the ones skipped as
    unreadable."""
    workers = max(1, min(8, os.cpu_count() or 1))
    failed: list[int] = []
    with replacing(target) as tmp:
        arr = np.lib.format.open_memmap(tmp, "w+", np.uint8, (len(files), resolution, resolution, 3))
        n = 0
        with ThreadPoolExecutor(workers) as pool:
            for i, img in enumerate(pool.map(lambda f: _try_load(f, resolution), files)):
                if img is not None:
                    arr[n] = img
                    n += 1
                else:
                    failed.append(i)
        arr.flush()
        del arr
        if n < len(files):
            # Shrink to the usable images: rewrite the header-consistent file in chunks.
            src = np.load(tmp, mmap_mode="r")
            with replacing(tmp) as shrunk:
                dst = np.lib.format.open_memmap(shrunk, "w+", np.uint8,
                                                (n, resolution, resolution, 3))
                for s in range(0, n, 1024):
                    dst[s : s + 1024] = src[s : min(s + 1024, n)]
                dst.flush()
                del dst, src
    return failed


def _unsupported_note(unsupported: dict[str, int]) -> str:
    if not unsupported:
        return ""
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(unsupported.items()))
    return (f"; found {kinds} file(s), a format gan-zoo does not read (convert them to PNG or "
            "JPEG)")


def load_folder(root: str | os.PathLike, resolution: int, use_cache: bool = True) -> ImageArray:
    """Decode (or reopen from cache) every usable image under root at the given resolution."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"data folder {shown(str(root))} does not exist")
    if not root.is_dir():
        raise DataError(f"--data must be a folder of images, got the file {shown(str(root))}")
    files, unsupported = scan_folder(root)
    if not files:
        raise DataError(
            f"no images in {shown(str(root))} (looked recursively for "
            f"{', '.join(sorted(IMAGE_EXTENSIONS))}){_unsupported_note(unsupported)}"
        )
    key = _fingerprint(files, root, resolution)
    target = cache_dir() / f"{key}.npy"
    meta_path = target.with_suffix(".json")
    failed: list[int] | None = None
    images = None
    if use_cache and target.exists() and meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
            images = np.load(target, mmap_mode="r")
            failed = sorted({int(i) for i in meta["failed"]})
            if not all(0 <= i < len(files) for i in failed) or \
                    len(images) != len(files) - len(failed):
                failed = None  # a damaged cache: decoded again below
        except (ValueError, OSError, KeyError, AttributeError, TypeError):
            failed = None  # a damaged cache (or one from before "failed" was kept) is rebuilt
    if failed is None:
        failed = _decode_folder(files, resolution, target)
        if len(failed) == len(files):
            target.unlink(missing_ok=True)
            raise DataError(
                f"none of the {len(files)} image files in {shown(str(root))} could be read "
                f"(all are damaged, empty or not images){_unsupported_note(unsupported)}"
            )
        write_bytes(meta_path, json.dumps({"root": str(root), "files": len(files),
                                           "failed": failed}).encode())
        images = np.load(target, mmap_mode="r")
    kinds: dict[str, int] = {}
    for i in failed:
        kinds[_kind(files[i])] = kinds.get(_kind(files[i]), 0) + 1
    for suffix, count in unsupported.items():
        kinds[suffix] = kinds.get(suffix, 0) + count
    kept = np.ones(len(files), bool)
    kept[failed] = False
    labels, classes, empty = folder_classes(root, [f for f, k in zip(files, kept, strict=True)
                                                   if k])
    return ImageArray(images, str(root), sum(kinds.values()), target, kinds, labels, classes,
                      empty)


def folder_classes(root: Path, files: list[Path]
                   ) -> tuple[np.ndarray | None, tuple[str, ...], tuple[str, ...]]:
    """(each file's class index or -1, class names, names of classes without files).

    The classes are root's subfolders, sorted by name (torchvision's ImageFolder order);
    an image in a nested folder belongs to its top-level folder; symlinked folders are not
    classes (scan_folder does not follow them). No subfolders: no classes (labels None)."""
    try:
        folders = sorted(e.name for e in os.scandir(root)
                         if e.is_dir(follow_symlinks=False))
    except OSError:
        folders = []
    if not folders:
        return None, (), ()
    index = {name: i for i, name in enumerate(folders)}
    labels = np.full(len(files), -1, np.int64)
    for i, f in enumerate(files):
        parts = f.relative_to(root).parts
        if len(parts) > 1:
            labels[i] = index.get(parts[0], -1)
    counts = np.bincount(labels[labels >= 0], minlength=len(folders))
    empty = tuple(name for name, c in zip(folders, counts, strict=True) if c == 0)
    return labels, tuple(folders), empty


def load_builtin(resolution: int, n: int = BUILTIN_SIZE, seed: int = 0) -> ImageArray:
    """The procedural built-in dataset, cached like a folder, labelled by shape kind."""
    target = cache_dir() / f"builtin-{BUILTIN_NAME}-v1-{resolution}-{n}-{seed}.npy"
    labels_path = target.with_name(target.stem + "-labels.npy")
    labels = None
    if target.exists() and labels_path.exists():
        try:
            labels = np.load(labels_path, allow_pickle=False)
            if labels.shape != (n,) or labels.dtype != np.int64 or \
                    not np.isin(labels, range(len(SHAPE_KINDS))).all():
                labels = None
        except (ValueError, OSError):
            labels = None
    if labels is None:  # new, or cached before labels were kept
        data, labels = make_labelled_shapes(n, resolution, seed)
        for path, array in ((target, data), (labels_path, labels)):
            with replacing_file(path) as fh:
                np.save(fh, array)  # to a file handle: np.save on a path appends ".npy"
    return ImageArray(np.load(target, mmap_mode="r"), f"builtin:{BUILTIN_NAME}", 0, target,
                      labels=labels, classes=SHAPE_KINDS)


def load_dataset(data: str | None, resolution: int) -> ImageArray:
    try:
        if data is None or data == f"builtin:{BUILTIN_NAME}":
            return load_builtin(resolution)
        return load_folder(data, resolution)
    except OSError as exc:  # unreadable images are skipped earlier; this is the cache's disk
        raise DataError(
            f"cannot write the decoded-image cache in {str(cache_dir())!r}: "
            f"{exc.strerror or exc}; free some space or set GANZOO_CACHE to another folder"
        ) from None


class EpochSampler:
    """Shuffled batches without replacement, reshuffled each epoch; the last partial batch is
    dropped. Its state (epoch, position, generator state) is saved in checkpoints, so a
    resumed run draws exactly the batches an uninterrupted run would.

    Distributed: every rank draws the same global order and takes slice `rank` of each global
    batch (batch_size / world_size images), so ranks never overlap within an epoch and the
    state does not depend on the world size (a run can resume on another number of ranks)."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        if batch_size > n:
            raise DataError(f"batch size {batch_size} is larger than the dataset ({n} images)")
        self.local_batch = per_rank_batch(batch_size, world_size)
        self.rank, self.world_size = rank, world_size
        self.n, self.batch_size = n, batch_size
        self.rng = torch.Generator().manual_seed(seed)
        self.epoch, self.pos = 0, 0
        self._epoch_rng_state = self.rng.get_state()
        self._perm = torch.randperm(n, generator=self.rng)

    @property
    def batches_per_epoch(self) -> int:
        return self.n // self.batch_size

    def next_indices(self) -> torch.Tensor:
        if self.pos + self.batch_size > self.n:
            self.epoch += 1
            self.pos = 0
            self._epoch_rng_state = self.rng.get_state()
            self._perm = torch.randperm(self.n, generator=self.rng)
        start = self.pos + self.rank * self.local_batch
        idx = self._perm[start : start + self.local_batch]
        self.pos += self.batch_size
        return idx

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos, "rng": self._epoch_rng_state.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self.rng.set_state(state["rng"])
        self._epoch_rng_state = state["rng"].clone()
        self._perm = torch.randperm(self.n, generator=self.rng)


def gather(images: np.ndarray, indices: torch.Tensor) -> torch.Tensor:
    """Rows of a (memory-mapped) uint8 array as a tensor; sorted reads are faster on disk."""
    idx = indices.numpy()
    order = np.argsort(idx)
    rows = np.empty((len(idx),) + images.shape[1:], np.uint8)
    rows[order] = images[idx[order]]
    return torch.from_numpy(rows)
