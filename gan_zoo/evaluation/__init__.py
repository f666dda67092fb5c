"""The evaluation engine: feature extractors, Inception weights lookup, the reference-stats
cache, the metric arithmetic, and evaluation during training. Metrics themselves are plugins
(``plugins/metrics.py``: fid, kid, coverage, dup_rate). See docs/evaluation.md.

Names load on first use: ``weights`` (the offline weights lookup) needs no PyTorch, so
``ganzoo fid`` can report missing weights before paying for the torch import."""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

from ..lazy import lazy_attributes
from .weights import MODES, MissingWeightsError, find_weights

if TYPE_CHECKING:
    from ..interfaces import Metric
    from .core import (
        ArraySource,
        EvalContext,
        FolderSource,
        ImageSource,
        RealStats,
        StatsCache,
        extract_all,
        generated_batches,
    )
    from .features import EXTRACTORS, FeatureExtractor, build_extractor


def _core() -> ModuleType:
    from . import core

    return core


def _features() -> ModuleType:
    from . import features

    return features


_LAZY = {name: _core for name in (
    "ArraySource", "EvalContext", "FolderSource", "ImageSource", "RealStats", "StatsCache",
    "extract_all", "generated_batches")} | {
    name: _features for name in ("EXTRACTORS", "FeatureExtractor", "build_extractor")}
__getattr__ = lazy_attributes(__name__, _LAZY)

__all__ = [
    "EXTRACTORS", "MODES", "ArraySource", "EvalContext", "FeatureExtractor", "FolderSource",
    "ImageSource", "MissingWeightsError", "RealStats", "StatsCache", "build_extractor",
    "build_metric", "evaluate", "extract_all", "find_weights", "generated_batches",
]


def build_metric(name: str, options: dict[str, Any] | None = None) -> Metric:
    """A metric plugin by name with validated options."""
    from ..assembly import build

    return build("metric", name, options)  # type: ignore[return-value]


def evaluate(metrics: list[Metric], context: EvalContext) -> dict[str, float]:
    """Every metric on one context (sharing features), merged into one record."""
    out: dict[str, float] = {}
    for metric in metrics:
        out.update(metric.evaluate(context))
    return out
