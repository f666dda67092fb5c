"""The arithmetic of the metrics, on feature arrays (N, D): Fréchet distance, KID, k-NN
precision/recall/density/coverage and the near-duplicate rate. No models, no files."""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg


def feature_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased, N-1) covariance of features, in float64 as clean-fid computes them."""
    feats = np.asarray(feats, dtype=np.float64)
    if feats.ndim != 2 or len(feats) < 2:
        raise ValueError(f"need at least 2 feature vectors of shape (N, D), got {feats.shape}")
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """d² = |mu1 - mu2|² + Tr(S1 + S2 - 2 (S1 S2)^½) between two Gaussians.

    The same formula and fallbacks as clean-fid: a singular product gets eps on both
    diagonals; a small imaginary part from rounding is dropped, a large one is an error.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"feature sizes differ: {mu1.shape} vs {mu2.shape}")
    diff = mu1 - mu2
    # Without disp=: deprecated in SciPy 1.17, where disp=False even returns a bare array
    # for 1x1 input (clean-fid's `covmean, _ = sqrtm(..., disp=False)` then fails).
    with warnings.catch_warnings():
        # With N <= D samples the covariances are singular; sqrtm then warns on every call
        # although the product's square root is still well defined (fallback below if not).
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"imaginary component {np.max(np.abs(covmean.imag))} in sqrtm")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def fid_from_features(feats1: np.ndarray, feats2: np.ndarray) -> float:
    return frechet_distance(*feature_stats(feats1), *feature_stats(feats2))


def kernel_distance(real: np.ndarray, fake: np.ndarray, num_subsets: int = 100,
                    max_subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """KID (Bińkowski et al. 2018): unbiased MMD² with the cubic polynomial kernel
    k(x, y) = (x·y / d + 1)³, averaged over random subsets of size m = min(N_real, N_fake,
    max_subset_size). Returns (mean, standard deviation over subsets). With a seed, unlike
    clean-fid's global-RNG draw, so a number is reproducible; when both sets have m vectors
    every subset is the whole set and the value equals clean-fid's exactly."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    d = real.shape[1]
    m = min(len(real), len(fake), max_subset_size)
    if m < 2:
        raise ValueError("KID needs at least 2 vectors on each side")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(num_subsets):
        x = real[rng.choice(len(real), m, replace=False)]
        y = fake[rng.choice(len(fake), m, replace=False)]
        a = (x @ x.T / d + 1) ** 3 + (y @ y.T / d + 1) ** 3
        b = (x @ y.T / d + 1) ** 3
        values.append(((a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m) / m)
    return float(np.mean(values)), float(np.std(values))


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances (len(a), len(b)), in float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(sq, 0))


def kth_neighbour_radius(feats: np.ndarray, k: int) -> np.ndarray:
    """Distance of each vector to its k-th nearest other vector in the same set."""
    if len(feats) <= k:
        raise ValueError(f"need more than k={k} vectors, got {len(feats)}")
    d = pairwise_distances(feats, feats)
    np.fill_diagonal(d, np.inf)
    return np.partition(d, k - 1, axis=1)[:, k - 1]


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 5) -> dict[str, float]:
    """Improved precision/recall (Kynkäänniemi et al. 2019) and density/coverage (Naeem et
    al. 2020) from k-NN balls around feature vectors.

    precision: share of fakes inside some real ball; recall: share of reals inside some fake
    ball; density: mean count of real balls holding each fake, divided by k (about 1 for
    matching distributions, can exceed 1); coverage: share of real balls holding at least one
    fake. A generator collapsed onto one image has coverage near 0 and recall near 0.
    """
    real_r = kth_neighbour_radius(real, k)
    fake_r = kth_neighbour_radius(fake, k)
    d = pairwise_distances(real, fake)  # (R, F)
    inside_real = d < real_r[:, None]   # fake j within real i's ball
    return {
        "precision": float(inside_real.any(axis=0).mean()),
        "recall": float((d < fake_r[None, :]).any(axis=1).mean()),
        "density": float(inside_real.sum(axis=0).mean() / k),
        "coverage": float((d.min(axis=1) < real_r).mean()),
    }


def duplicate_rate(fake: np.ndarray, real: np.ndarray, fraction: float = 0.1) -> tuple[float, float]:
    """Share of samples whose nearest other sample is closer than `fraction` times the median
    nearest-neighbour distance among as many real images; and that threshold.

    Scale-free: the threshold comes from the data, at the same sample size (nearest-neighbour
    distances shrink as N grows). Healthy generators score near 0, a generator that gives one
    image whatever its input scores near 1.
    """
    n = min(len(fake), len(real))
    if n < 2:
        raise ValueError("duplicate rate needs at least 2 samples")
    rng = np.random.default_rng(0)
    real_sub = real[rng.choice(len(real), n, replace=False)] if len(real) > n else real
    threshold = fraction * float(np.median(kth_neighbour_radius(real_sub, 1)))
    nearest = kth_neighbour_radius(fake[:n], 1)
    return float((nearest < threshold).mean()), threshold
