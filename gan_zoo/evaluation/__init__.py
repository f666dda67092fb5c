"""The evaluation engine: feature extractors, Inception weights lookup, the reference-stats
cache, the metric arithmetic, and evaluation during training. Metrics themselves are plugins
(``plugins/metrics.py``: fid, kid, coverage, dup_rate). See docs/evaluation.md."""

from __future__ import annotations

from typing import Any

from ..assembly import build
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
from .features import EXTRACTORS, MODES, FeatureExtractor, build_extractor
from .weights import MissingWeightsError, find_weights

__all__ = [
    "EXTRACTORS", "MODES", "ArraySource", "EvalContext", "FeatureExtractor", "FolderSource",
    "ImageSource", "MissingWeightsError", "RealStats", "StatsCache", "build_extractor",
    "build_metric", "evaluate", "extract_all", "find_weights", "generated_batches",
]


def build_metric(name: str, options: dict[str, Any] | None = None) -> Metric:
    """A metric plugin by name with validated options."""
    return build("metric", name, options)  # type: ignore[return-value]


def evaluate(metrics: list[Metric], context: EvalContext) -> dict[str, float]:
    """Every metric on one context (sharing features), merged into one record."""
    out: dict[str, float] = {}
    for metric in metrics:
        out.update(metric.evaluate(context))
    return out
