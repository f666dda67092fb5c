"""Classes of a conditional run: where they come from, their checks, and labelled batches.

A data folder with one subfolder per class (torchvision's ImageFolder layout) labels each image
by its top-level subfolder; the built-in shapes are labelled by shape kind. ``--conditional``
trains on those labels; every way a folder can fail to be a labelled dataset (no subfolders,
images outside them, an empty class, one class, too many) is one DataError saying what to do.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import CheckpointError, DataError, UsageError
from ..training.distributed import per_rank_batch
from ..util.textsafe import shown

# ImageNet's 1000 classes train in StudioGAN; a folder with more subfolders than this is more
# likely one folder per image (or per photo session) than a class each.
MAX_CLASSES = 1000
MAX_NAME = 255  # bytes of a folder name on common file systems


@dataclass(frozen=True)
class ClassInfo:
    """The classes of a run: names in label order, and the images of each in the data."""

    names: tuple[str, ...]
    counts: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.names)

    def probs(self, balanced: bool = False) -> Tensor:
        """How often each class is drawn: by its share of the images, or uniformly."""
        if balanced:
            return torch.full((len(self),), 1.0 / len(self))
        counts = torch.tensor(self.counts, dtype=torch.float64)
        return (counts / counts.sum()).float()

    def to_meta(self) -> dict[str, Any]:
        return {"names": list(self.names), "counts": list(self.counts)}

    @classmethod
    def from_meta(cls, value: Any, where: str) -> ClassInfo | None:
        """The classes a checkpoint records (None for an unconditional one), checked: the file
        may come from a stranger."""
        if value is None:
            return None
        names = value.get("names") if isinstance(value, dict) else None
        counts = value.get("counts") if isinstance(value, dict) else None
        if not (isinstance(names, list) and isinstance(counts, list)
                and len(names) == len(counts) and 2 <= len(names) <= MAX_CLASSES
                and all(isinstance(n, str) and 0 < len(n) <= MAX_NAME for n in names)
                and len(set(names)) == len(names)
                and all(type(c) is int and 0 <= c < 2**62 for c in counts)):
            raise CheckpointError(
                f"{where}: its 'classes' must list 2 to {MAX_CLASSES} distinct class names and "
                "as many image counts")
        return cls(tuple(names), tuple(counts))

    def index(self, value: str) -> int:
        """A class by name or by index (as text, from --class); a name wins over an index."""
        if value in self.names:
            return self.names.index(value)
        if value.strip().lstrip("-").isdigit():
            i = int(value)
            if 0 <= i < len(self):
                return i
            raise UsageError(f"class index {i} is out of range: this generator has "
                             f"{len(self)} classes (0 to {len(self) - 1})")
        close = difflib.get_close_matches(value, self.names, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(shown(c) for c in close)}?" if close else \
            f"; its classes: {_listing(self.names)}"
        raise UsageError(f"no class {shown(value)}{hint}")


def _listing(names: tuple[str, ...] | list[str], most: int = 8) -> str:
    shown_names = ", ".join(shown(n) for n in names[:most])
    return shown_names + (f" and {len(names) - most} more" if len(names) > most else "")


def require_classes(data: Any) -> ClassInfo:
    """The classes of a dataset (a gan_zoo.data.folders.ImageArray) for a conditional run, or
    one DataError saying why its folder cannot give them."""
    where = shown(data.source)
    if data.labels is None or not data.classes:
        raise DataError(
            f"--conditional needs labelled images: {where} has no subfolders. Put each class's "
            "images in a subfolder named after the class (ROOT/cat/*.png, ROOT/dog/*.png), or "
            "train without --conditional")
    loose = int((data.labels < 0).sum())
    if loose:
        raise DataError(
            f"--conditional: {loose} image(s) in {where} sit outside every class folder (directly "
            "in it); move them into a class subfolder or elsewhere, or train without "
            "--conditional")
    if data.empty_classes:
        raise DataError(
            f"--conditional: class folder(s) {_listing(list(data.empty_classes))} in {where} "
            "hold no usable image; add images or remove the folder(s)")
    if len(data.classes) < 2:
        raise DataError(
            f"--conditional: {where} has a single class ({shown(data.classes[0])}); a "
            "conditional GAN needs at least two. Train without --conditional")
    if len(data.classes) > MAX_CLASSES:
        raise DataError(
            f"--conditional: {where} has {len(data.classes)} class folders; gan-zoo trains at "
            f"most {MAX_CLASSES} classes. Is it one folder per image or per session rather than "
            "per class? Group the images into class folders")
    too_long = [n for n in data.classes if len(n.encode("utf-8", "surrogateescape")) > MAX_NAME]
    if too_long:
        raise DataError(f"--conditional: class name {shown(too_long[0])} is longer than "
                        f"{MAX_NAME} bytes")
    counts = np.bincount(data.labels, minlength=len(data.classes))
    return ClassInfo(tuple(data.classes), tuple(int(c) for c in counts))


def run_classes(config: Any, data: Any) -> ClassInfo | None:
    """The classes of a run (a TrainConfig) on this data: None unless it is conditional; the
    data must be labelled, and have exactly the classes the config names when it names any."""
    if not config.conditional:
        return None
    classes = require_classes(data)
    if config.classes is not None and list(config.classes) != list(classes.names):
        raise DataError(
            f"the classes of {shown(data.source)} ({len(classes)}: "
            f"{_listing(classes.names, 6)}) differ from this run's ({len(config.classes)}: "
            f"{_listing(config.classes, 6)}); a conditional run continues only on data with "
            "the same classes")
    return classes


def describe(classes: ClassInfo) -> str:
    """The run header's line: how many classes, how many images each (smallest, largest)."""
    lo, hi = min(classes.counts), max(classes.counts)
    spread = f"{lo} images each" if lo == hi else f"{lo} to {hi} images per class"
    return f"{len(classes)} classes ({_listing(classes.names, 4)}), {spread}"


def grid_labels(n: int, ncol: int, num_classes: int) -> Tensor:
    """Labels of an n-image sample grid with ncol columns: one class per row, classes spread
    evenly over the rows when there are more classes than rows (and repeated when fewer)."""
    per_row = grid_row_classes(n, ncol, num_classes)
    return torch.tensor(per_row, dtype=torch.long).repeat_interleave(ncol)[:n]


def grid_row_classes(n: int, ncol: int, num_classes: int) -> list[int]:
    """The class of each row of grid_labels' grid (the report names the rows with it)."""
    rows = math.ceil(n / ncol)
    if num_classes > rows:
        return [r * num_classes // rows for r in range(rows)]
    return [r % num_classes for r in range(rows)]


class BalancedSampler:
    """Class-balanced batches (``--class-balance``): each image's class is drawn uniformly, then
    an image of that class uniformly, with replacement, so a class with 50 images is seen as
    often as one with 5000. Same interface and resume contract as EpochSampler: its state is
    the generator's state and the images drawn so far (as epoch and position), so a resumed run
    draws what an uninterrupted one would; every rank draws the global batch, takes its slice."""

    def __init__(self, labels: np.ndarray, num_classes: int, batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1):
        self.n, self.batch_size = len(labels), batch_size
        if batch_size > self.n:
            raise DataError(f"batch size {batch_size} is larger than the dataset ({self.n} images)")
        self.local_batch = per_rank_batch(batch_size, world_size)
        self.rank, self.world_size = rank, world_size
        order = np.argsort(labels, kind="stable")
        counts = np.bincount(labels, minlength=num_classes)
        self._order = torch.from_numpy(order)
        self._starts = torch.from_numpy(np.concatenate([[0], np.cumsum(counts)[:-1]]))
        self._counts = torch.from_numpy(counts)
        self.num_classes = num_classes
        self.rng = torch.Generator().manual_seed(seed)
        self.epoch, self.pos = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        return self.n // self.batch_size

    def next_indices(self) -> Tensor:
        cls = torch.randint(self.num_classes, (self.batch_size,), generator=self.rng)
        within = (torch.rand(self.batch_size, generator=self.rng, dtype=torch.float64)
                  * self._counts[cls]).long().clamp_max(self._counts[cls] - 1)
        idx = self._order[self._starts[cls] + within]
        drawn = self.epoch * self.n + self.pos + self.batch_size
        self.epoch, self.pos = divmod(drawn, self.n)
        start = self.rank * self.local_batch
        return idx[start : start + self.local_batch]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos, "rng": self.rng.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self.rng.set_state(state["rng"])
