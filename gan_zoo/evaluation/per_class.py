"""Per-class evaluation of a conditional generator (`ganzoo fid RUN --per-class`, `ganzoo eval
RUN --per-class`): each metric computed once per class, on samples of that class against the
real images of that class -- intra-class FID as in the conditional-GAN literature (Miyato &
Koyama 2018; StudioGAN's benchmarks), and coverage per class.

A class with fewer than MIN_CLASS_IMAGES real images is listed as skipped, not evaluated: FID
and coverage on a handful of images measure the sampling noise more than the generator. Each
evaluated class gets N = min(the metric's n, the class's real images) samples, so the two
sides of a class's comparison are the same size; the record states N for every class.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import DataError
from ..util.textsafe import bare, shown
from .core import ArraySource, EvalContext

if TYPE_CHECKING:
    from ..interfaces import Metric

MIN_CLASS_IMAGES = 50


class OneClass(nn.Module):
    """A conditional generator drawing one class, seen by the evaluation machinery as an
    unconditional generator (num_classes 0: G(z) = generator(z, y=label))."""

    num_classes = 0

    def __init__(self, generator: nn.Module, label: int):
        super().__init__()
        self.generator, self.label = generator, label
        self.latent_dim = generator.latent_dim
        self.resolution, self.channels = generator.resolution, generator.channels

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.generator.sample_latent(n, generator=generator)

    def forward(self, z: Tensor) -> Tensor:
        y = torch.full((len(z),), self.label, dtype=torch.long, device=z.device)
        return self.generator(z, y=y)


class SubsetSource(ArraySource):
    """Some images of a (N, H, W, 3) uint8 array, by index, read batch by batch (a class of
    a memory-mapped dataset is never copied whole)."""

    def __init__(self, images: np.ndarray, indices: np.ndarray, label: str):
        super().__init__(images, label)
        self.indices = np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return int(len(self.indices))

    def batches(self, batch_size: int, limit: int | None = None) -> Iterator[np.ndarray]:
        chosen = self.indices if limit is None else self.indices[:limit]
        for s in range(0, len(chosen), batch_size):
            yield np.ascontiguousarray(self.images[chosen[s : s + batch_size]])

    def digest(self) -> str:
        if self._digest is None:
            h = hashlib.sha256(f"subset:{len(self)}:{self.images.shape[1:]}".encode())
            for batch in self.batches(256):
                h.update(batch.tobytes())
            self._digest = h.hexdigest()
        return self._digest


@dataclass
class ClassResult:
    """One class's line: its values, or why it was skipped."""

    index: int
    name: str
    n_real: int
    values: dict[str, float] | None
    skipped: str = ""

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"class": self.index, "name": self.name, "n_real": self.n_real}
        if self.values is None:
            out["skipped"] = self.skipped
        else:
            out.update(self.values)
        return out


def class_indices(data: Any, names: Sequence[str]) -> list[np.ndarray]:
    """Each class's image indices in the reference data (an ImageArray), matched by name: the
    reference must have the generator's classes, in its order."""
    if data.labels is None or not data.classes:
        raise DataError(f"--per-class needs labelled reference images: {shown(data.source)} "
                        "has no class subfolders (give --data ROOT with one subfolder per "
                        "class, as for training)")
    if list(data.classes) != list(names):
        raise DataError(f"the classes of {shown(data.source)} ({len(data.classes)}) differ from "
                        f"the generator's ({len(names)}: "
                        f"{', '.join(shown(n) for n in names[:8])}"
                        f"{' ...' if len(names) > 8 else ''}); give --data with the training "
                        "classes")
    labels = np.asarray(data.labels)
    return [np.flatnonzero(labels == c) for c in range(len(names))]


def _sized(metric: Metric, n: int) -> Metric:
    """The metric with at most n generated samples (its own n when smaller)."""
    from . import build_metric

    fields = type(metric).Options.model_fields
    options = metric.options.model_dump()
    if "n" in fields:
        options["n"] = max(2, min(options["n"], n))
    return build_metric(metric.name, options)


def evaluate_per_class(metrics: list[Metric], base: EvalContext, data: Any,
                       names: Sequence[str] | None = None, min_images: int = MIN_CLASS_IMAGES,
                       ) -> list[ClassResult]:
    """Each metric per class: samples of class c against the real images of class c. The
    contexts share base's feature extractors (Inception loads once) and its disk cache."""
    from . import evaluate

    results = []
    generator = base.generator
    if names is None:
        names = getattr(generator, "class_names", None) or \
            tuple(str(i) for i in range(generator.num_classes))
    for c, (name, idx) in enumerate(zip(names, class_indices(data, names), strict=True)):
        if len(idx) < min_images:
            results.append(ClassResult(c, name, len(idx), None,
                                       f"{len(idx)} real images (fewer than {min_images})"))
            continue
        base.log(f"class {shown(name)}: {len(idx)} real images")
        context = dataclasses.replace(
            base, generator=OneClass(generator, c),
            reference=SubsetSource(data.images, idx, f"{data.source} class {name!r}"),
            _extractors=base._extractors, _real={}, _fake={})
        sized = [_sized(m, len(idx)) for m in metrics]
        results.append(ClassResult(c, name, len(idx), evaluate(sized, context)))
    return results


def summary(results: list[ClassResult], metric_names: Sequence[str]) -> dict[str, Any]:
    """The record's per-class part: every class's line and each metric's mean over the
    evaluated classes (e.g. the mean intra-class FID)."""
    done = [r for r in results if r.values is not None]
    means = {f"{m}_class_mean": float(np.mean([r.values[m] for r in done]))  # type: ignore[index]
             for m in metric_names if done}
    return {"per_class": [r.record() for r in results], "classes_evaluated": len(done),
            **means}


def table(results: list[ClassResult], metric_names: Sequence[str]) -> str:
    """A plain-text table, one line per class (names escaped and capped)."""
    head = ["class", "N", "N real", *metric_names]
    rows = []
    for r in results:
        name = bare(r.name, 40)
        if r.values is None:
            rows.append([name, "-", str(r.n_real), f"skipped: {r.skipped}"])
            continue
        n = r.values.get(f"{metric_names[0]}_n", "")
        rows.append([name, str(n), str(r.n_real), *(f"{r.values[m]:.4g}" for m in metric_names)])
    widths = [max(len(row[i]) for row in [head, *rows] if i < len(row) and
                  not row[i].startswith("skipped")) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(widths[i]) if i < len(widths) else cell
                       for i, cell in enumerate(row)).rstrip() for row in [head, *rows]]
    return "\n".join(lines)
