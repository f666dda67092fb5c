"""Image sources, the reference-statistics cache and the context metrics evaluate in.

A source yields (B, H, W, 3) uint8 batches: a decoded dataset array, a folder of image files
read at their own size (as clean-fid reads folders), or a generator whose samples are
quantized to uint8 exactly as a saved PNG would be and streamed in batches -- nothing is
written to disk. Real features are cached on disk under a key made of the extractor's
identity (for Inception: the weights' SHA-1 and the mode) and a digest of the images' bytes,
so a second evaluation against the same data does not recompute them and a changed folder
does.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..data.folders import cache_dir, scan_images
from ..data.images import to_uint8
from ..errors import DataError
from ..sampling import draw_labels
from ..util.atomic import replacing_file
from .distances import feature_stats
from .features import FeatureExtractor, build_extractor

CACHE_FORMAT = 1


# --------------------------------------------------------------------------- sources


class ImageSource:
    """Real images to compare against: ``batches`` and a content ``digest``."""

    label: str = ""

    def __len__(self) -> int:
        raise NotImplementedError

    def batches(self, batch_size: int, limit: int | None = None) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def digest(self) -> str:
        raise NotImplementedError


class ArraySource(ImageSource):
    """A (N, H, W, 3) uint8 array, e.g. a dataset decoded at the generator's resolution."""

    def __init__(self, images: np.ndarray, label: str = "array"):
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected (N, H, W, 3) uint8 images, got {images.dtype} {images.shape}")
        self.images, self.label = images, label
        self._digest: str | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def batches(self, batch_size: int, limit: int | None = None) -> Iterator[np.ndarray]:
        n = len(self) if limit is None else min(limit, len(self))
        for s in range(0, n, batch_size):
            yield np.ascontiguousarray(self.images[s : min(s + batch_size, n)])

    def digest(self) -> str:
        if self._digest is None:
            h = hashlib.sha256(f"array:{self.images.shape}".encode())
            for s in range(0, len(self), 256):
                h.update(np.ascontiguousarray(self.images[s : s + 256]).tobytes())
            self._digest = h.hexdigest()
        return self._digest


class FolderSource(ImageSource):
    """Image files under a folder (recursively), each read as RGB at its own size."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"image folder {str(self.root)!r} does not exist or is not a folder")
        self.files = scan_images(self.root)
        if not self.files:
            raise DataError(f"no images in {str(self.root)!r}")
        self.label = str(self.root)
        self._digest: str | None = None

    def __len__(self) -> int:
        return len(self.files)

    def _read(self, path: Path) -> np.ndarray:
        try:
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB"), dtype=np.uint8)
        except Exception as exc:
            raise DataError(f"cannot read image {str(path)!r}: {exc}") from None

    def batches(self, batch_size: int, limit: int | None = None) -> Iterator[list[np.ndarray]]:
        files = self.files if limit is None else self.files[:limit]
        for s in range(0, len(files), batch_size):
            yield [self._read(f) for f in files[s : s + batch_size]]

    def digest(self) -> str:
        """By content: relative names and file bytes (a touched but unchanged file hits)."""
        if self._digest is None:
            h = hashlib.sha256(b"folder")
            for f in self.files:
                h.update(os.fsencode(f.relative_to(self.root)) + b"\0")
                h.update(hashlib.sha256(f.read_bytes()).digest())
            self._digest = h.hexdigest()
        return self._digest


@torch.no_grad()
def generated_batches(generator: nn.Module, n: int, seed: int = 0, batch_size: int = 64,
                      device: torch.device | str | None = None) -> Iterator[np.ndarray]:
    """n samples as uint8 batches, from seeded latents (own RNG: training RNG untouched)."""
    device = device or next(generator.parameters()).device
    rng = torch.Generator().manual_seed(seed)
    was_training = generator.training
    generator.eval()
    try:
        for s in range(0, n, batch_size):
            z = generator.sample_latent(min(batch_size, n - s), generator=rng)
            # A conditional generator: labels as training drew them (gan_zoo.sampling).
            y = draw_labels(generator, len(z), rng)
            yield to_uint8(generator(z.to(device)) if y is None else
                           generator(z.to(device), y=y.to(device)))
    finally:
        generator.train(was_training)


def extract_all(extractor: FeatureExtractor, batches: Iterator) -> np.ndarray:
    """Features of every batch; a batch may be a list of images of different sizes."""
    out = []
    for batch in batches:
        if isinstance(batch, list):
            # Same-size runs go together; clean-fid resizes each image on its own anyway.
            start = 0
            for i in range(1, len(batch) + 1):
                if i == len(batch) or batch[i].shape != batch[start].shape:
                    out.append(extractor.extract(np.stack(batch[start:i])))
                    start = i
        else:
            out.append(extractor.extract(batch))
    if not out:
        return np.zeros((0, extractor.dim), np.float32)
    return np.concatenate(out)


# --------------------------------------------------------------------------- cache


def stats_cache_dir() -> Path:
    return cache_dir().parent / "fid-stats"


@dataclass
class RealStats:
    feats: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray
    cached: bool  # True when read from the cache, not computed now


class StatsCache:
    """Features, mean and covariance of real images on disk, keyed by content."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else stats_cache_dir()

    @staticmethod
    def key(extractor: FeatureExtractor, source: ImageSource, limit: int | None) -> str:
        text = f"v{CACHE_FORMAT}|{extractor.cache_id()}|{source.digest()}|{limit}"
        return hashlib.sha256(text.encode()).hexdigest()[:40]

    def path(self, key: str) -> Path:
        return self.root / f"{key}.npz"

    def load(self, key: str) -> RealStats | None:
        path = self.path(key)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                return RealStats(z["feats"], z["mu"], z["sigma"], cached=True)
        except (OSError, ValueError, KeyError):
            return None  # damaged: recomputed and rewritten

    def save(self, key: str, stats: RealStats, info: dict[str, Any]) -> None:
        try:
            with replacing_file(self.path(key)) as fh:  # np.savez on a path appends ".npz"
                np.savez(fh, feats=stats.feats, mu=stats.mu, sigma=stats.sigma,
                         info=np.array(json.dumps(info)))
        except OSError:
            pass  # a cache that cannot be written only costs time


# --------------------------------------------------------------------------- context


@dataclass
class EvalContext:
    """What a metric plugin evaluates: a generator (or a folder of samples) against real images.

    Extractors, real features and generated features are memoized, so ``fid`` and ``kid``
    in one evaluation load Inception once and generate each sample once per feature space.
    """

    generator: nn.Module | None
    reference: ImageSource
    samples: ImageSource | None = None  # instead of a generator: a folder of its samples
    device: torch.device | str = "cpu"
    seed: int = 0
    batch_size: int = 50
    cache: StatsCache | None = field(default_factory=StatsCache)
    workers: int | None = None
    log: Callable[[str], None] = lambda message: None
    extractor_factory: Callable[..., FeatureExtractor] = build_extractor
    # Load an Inception file that is not a known export: only the command line's
    # --trust-weights sets this (never a config, recipe or run); see evaluation/weights.py.
    trust_weights: bool = False
    # Inception's precision: "auto" (bf16 where the hardware has bf16 units), "fp32", "bf16".
    precision: str = "auto"
    _extractors: dict[tuple, FeatureExtractor] = field(default_factory=dict, repr=False)
    _real: dict[tuple, RealStats] = field(default_factory=dict, repr=False)
    _fake: dict[tuple, np.ndarray] = field(default_factory=dict, repr=False)

    def new_samples(self, generator: nn.Module) -> None:
        """Next evaluation of (new weights of) a generator: forget its features, keep the rest."""
        self.generator = generator
        self._fake.clear()

    def extractors_used(self) -> list[FeatureExtractor]:
        """The extractors loaded so far (a command reports which Inception file it used)."""
        return list(self._extractors.values())

    def reference_cached(self) -> bool:
        """Whether every reference (and sample-folder) feature set came from the disk cache."""
        return all(s.cached for s in self._real.values())

    def extractor(self, name: str, mode: str = "clean", weights: str | None = None
                  ) -> FeatureExtractor:
        key = (name, mode, weights)
        if key not in self._extractors:
            fx = self.extractor_factory(
                name, mode=mode, weights=weights, device=self.device, workers=self.workers,
                trust_weights=self.trust_weights, precision=self.precision)
            if getattr(fx, "precision_reason", None):
                self.log(f"{name} features in {fx.precision} ({fx.precision_reason})")
            self._extractors[key] = fx
        return self._extractors[key]

    def real_stats(self, extractor: FeatureExtractor, limit: int | None = None) -> RealStats:
        """Features of the reference images (memoized, and cached on disk by content)."""
        return self.source_stats(self.reference, extractor, limit)

    def source_stats(self, source: ImageSource, extractor: FeatureExtractor,
                     limit: int | None = None) -> RealStats:
        mkey = (id(source), extractor.cache_id(), limit)
        if mkey in self._real:
            return self._real[mkey]
        key = self.cache.key(extractor, source, limit) if self.cache else ""
        stats = self.cache.load(key) if self.cache else None
        if stats is None:
            t0 = time.perf_counter()
            n = len(source) if limit is None else min(limit, len(source))
            self.log(f"computing {extractor.name} features of {n} images of {source.label} "
                     "(cached for next time)")
            feats = extract_all(extractor, source.batches(self.batch_size, limit))
            stats = RealStats(feats, *feature_stats(feats), cached=False)
            if self.cache:
                self.cache.save(key, stats, {"source": source.label, "n": len(feats),
                                             "extractor": extractor.cache_id(),
                                             "seconds": round(time.perf_counter() - t0, 2)})
        self._real[mkey] = stats
        return stats

    def fake_features(self, extractor: FeatureExtractor, n: int) -> np.ndarray:
        """Features of n samples: streamed from the generator, or (folder mode) the first n
        images of ``samples``; fewer when that folder holds fewer."""
        if self.samples is not None:
            return self.source_stats(self.samples, extractor, n).feats
        key = extractor.cache_id()
        have = self._fake.get(key)
        if have is None or len(have) < n:
            have = extract_all(extractor, generated_batches(
                self.generator, n, self.seed, self.batch_size, self.device))
            self._fake[key] = have
        return have[:n]
