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
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from .atomic import replacing, replacing_file, write_bytes
from .builtin_data import BUILTIN_NAME, BUILTIN_SIZE, make_shapes
from .distributed import per_rank_batch
from .errors import DataError

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
CACHE_FORMAT = 1
# Decompression-bomb guard: refuse images above this many pixels (PIL warns at ~89M).
MAX_PIXELS = 64_000_000


def cache_dir() -> Path:
    root = os.environ.get("GANZOO_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "gan_zoo"
    )
    return Path(root) / "data"


def scan_images(root: Path) -> list[Path]:
    """Image files under root, recursively, sorted; symlinked folders are not followed."""
    files = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in filenames:
            if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                files.append(Path(dirpath) / name)
    return sorted(files)


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


def load_image(path: Path, resolution: int) -> np.ndarray:
    """Decode one file to (R, R, 3) uint8: EXIF-rotated, RGB, centre-cropped square, resized."""
    with Image.open(path) as im:
        if im.width * im.height > MAX_PIXELS:
            raise ValueError(f"{im.width}x{im.height} exceeds the {MAX_PIXELS} pixel limit")
        im = ImageOps.exif_transpose(im)
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            # 16-bit greyscale: scale to 8 bits before converting (convert() would clip).
            arr = np.asarray(im, dtype=np.float64)
            # I;16 is 16-bit whatever its values (a dark 16-bit image stays dark); plain I is
            # ambiguous, so judge by its range; clip so out-of-range ints cannot wrap around.
            peak = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
            im = Image.fromarray(np.clip(arr / peak * 255, 0, 255).round().astype(np.uint8))
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA")
            flat = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(flat, im)
        im = im.convert("RGB")
        side = min(im.size)
        if side < 1:
            raise ValueError("empty image")
        left, top = (im.width - side) // 2, (im.height - side) // 2
        im = im.crop((left, top, left + side, top + side))
        if side != resolution:
            im = im.resize((resolution, resolution), Image.Resampling.LANCZOS)
        return np.asarray(im, dtype=np.uint8)


def _try_load(path: Path, resolution: int) -> np.ndarray | None:
    if not path.is_file():  # a FIFO would block forever; devices, dangling or looping links
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return load_image(path, resolution)
    except Exception:
        return None


@dataclass
class ImageArray:
    """A decoded dataset: (N, R, R, 3) uint8, usually memory-mapped, and where it came from."""

    images: np.ndarray
    source: str
    skipped: int = 0
    cache_path: Path | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def resolution(self) -> int:
        return int(self.images.shape[1])


def _decode_folder(files: list[Path], resolution: int, target: Path) -> int:
    """Decode files into target .npy; returns how many were skipped as unreadable."""
    workers = max(1, min(8, os.cpu_count() or 1))
    with replacing(target) as tmp:
        arr = np.lib.format.open_memmap(tmp, "w+", np.uint8, (len(files), resolution, resolution, 3))
        n = 0
        with ThreadPoolExecutor(workers) as pool:
            for img in pool.map(lambda f: _try_load(f, resolution), files):
                if img is not None:
                    arr[n] = img
                    n += 1
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
    return len(files) - n


def load_folder(root: str | os.PathLike, resolution: int, use_cache: bool = True) -> ImageArray:
    """Decode (or reopen from cache) every usable image under root at the given resolution."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"data folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise DataError(f"--data must be a folder of images, got the file {str(root)!r}")
    files = scan_images(root)
    if not files:
        raise DataError(
            f"no images in {str(root)!r} (looked recursively for "
            f"{', '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    key = _fingerprint(files, root, resolution)
    target = cache_dir() / f"{key}.npy"
    meta_path = target.with_suffix(".json")
    if use_cache and target.exists() and meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
            images = np.load(target, mmap_mode="r")
            return ImageArray(images, str(root), int(meta["skipped"]), target)
        except (ValueError, OSError, KeyError):
            pass  # a damaged cache is rebuilt below
    skipped = _decode_folder(files, resolution, target)
    if skipped == len(files):
        target.unlink(missing_ok=True)
        raise DataError(
            f"none of the {len(files)} image files in {str(root)!r} could be read "
            "(all are damaged, empty or not images)"
        )
    write_bytes(meta_path, json.dumps({"root": str(root), "files": len(files),
                                       "skipped": skipped}).encode())
    return ImageArray(np.load(target, mmap_mode="r"), str(root), skipped, target)


def load_builtin(resolution: int, n: int = BUILTIN_SIZE, seed: int = 0) -> ImageArray:
    """The procedural built-in dataset, cached like a folder."""
    target = cache_dir() / f"builtin-{BUILTIN_NAME}-v1-{resolution}-{n}-{seed}.npy"
    if not target.exists():
        data = make_shapes(n, resolution, seed)

        with replacing_file(target) as fh:
            np.save(fh, data)  # to a file handle: np.save on a path appends ".npy"
    return ImageArray(np.load(target, mmap_mode="r"), f"builtin:{BUILTIN_NAME}", 0, target)


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


def iterate_batches(array: ImageArray, batch_size: int) -> Iterator[torch.Tensor]:
    """Every image once, in order, as uint8 (B, R, R, 3) batches (for evaluation)."""
    for s in range(0, len(array), batch_size):
        yield torch.from_numpy(np.ascontiguousarray(array.images[s : s + batch_size]))
