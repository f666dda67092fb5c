"""The evaluation engine: feature extractors, Inception weights lookup, the reference-stats
cache, the metric arithmetic, and evaluation during training. Metrics themselves are plugins
(``plugins/metrics.py``: fid, kid, coverage, dup_rate). See docs/evaluation.md.

Names load on first use: ``weights`` (the offline weights lookup) needs no PyTorch, so
``ganzoo fid`` can report missing weights before paying for the torch import."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from numbers import Integral, Real
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ..errors import GanZooError
from ..util.lazy import lazy_attributes
from ..util.textsafe import shown
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
    from ..training.assembly import build

    return build("metric", name, options)  # type: ignore[return-value]


def evaluate(metrics: list[Metric], context: EvalContext, taken: Iterable[str] = (),
             prepare: bool = True) -> dict[str, float]:
    """Every metric on one context (sharing features), merged into one record.

    Each metric is prepared first (unless ``prepare`` is False: training prepared it at the
    start), so missing weights fail before any sample is made. A
    metric is plugin code: what it raises, a result without its headline value, a value that
    is not a number or a key another metric (or ``taken``: the caller's record) already uses
    is one GanZooError naming the metric, never a traceback or a silently overwritten number."""
    for metric in metrics if prepare else ():
        with _blamed(metric, "could not prepare"):
            metric.prepare(context)
    out: dict[str, float] = {}
    reserved = set(taken)
    for metric in metrics:
        with _blamed(metric, "failed"):
            values = metric.evaluate(context)
        out.update(_checked(metric, values, reserved | set(out)))
    return out


@contextlib.contextmanager
def _blamed(metric: Metric, what: str) -> Iterator[None]:
    try:
        yield
    except GanZooError:
        raise
    except Exception as exc:
        raise GanZooError(f"metric {shown(metric.name)} {what}: {type(exc).__name__}: "
                          f"{shown(str(exc))}") from None


def _checked(metric: Metric, values: Any, taken: set[str]) -> dict[str, float]:
    name = metric.name
    if not isinstance(values, dict) or name not in values:
        raise GanZooError(f"metric {shown(name)} returned no value under its name "
                          f"(got {shown(values)})")
    out: dict[str, float] = {}
    for key, value in values.items():
        if not isinstance(key, str) or isinstance(value, bool) or not isinstance(value, Real):
            raise GanZooError(f"metric {shown(name)} returned {shown(key)}: {shown(value)}, "
                              "not a number")
        if key in taken:
            raise GanZooError(f"metric {shown(name)} returned {shown(key)}, a key already in "
                              "the record (a metric's extras are prefixed with its name)")
        out[key] = int(value) if isinstance(value, Integral) else float(value)  # JSON-ready
    return out
