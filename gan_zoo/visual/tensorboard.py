"""Optional TensorBoard logging (`--tensorboard`, extra `gan-zoo[tensorboard]`).

Everything the run writes to metrics.jsonl (training statistics, knobs, evaluations, rollbacks)
goes to RUN/tensorboard as scalars, and every fixed-noise sample grid as an image, so
`tensorboard --logdir runs/` shows the same story as curves.png, live and across runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import UsageError

if TYPE_CHECKING:
    from ..training.trainer import Callbacks, Trainer

SKIP = {"step", "epoch", "time"}
INSTALL_HINT = "pip install 'gan-zoo[tensorboard]'"


def summary_writer_class():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise UsageError(f"--tensorboard needs the tensorboard package ({exc}); install it with: "
                         f"{INSTALL_HINT}") from None
    return SummaryWriter


def tag_for(key: str, record: dict[str, Any]) -> str:
    """Group tags in TensorBoard: train/, knobs/, eval/ and events/."""
    if key.startswith("knob."):
        return "knobs/" + key.removeprefix("knob.")
    event = record.get("event")
    if event is None:
        return f"train/{key}"
    if event == "rollback":
        return f"events/{key}"
    return f"eval/{key}"


class TensorBoardLogger:
    def __init__(self, log_dir: Path, writer_class=None):
        writer_class = writer_class or summary_writer_class()
        self.writer = writer_class(log_dir=str(log_dir), flush_secs=30)

    def record(self, record: dict[str, Any]) -> None:
        step = record.get("step")
        if not isinstance(step, int):
            return
        for key, value in record.items():
            if key in SKIP or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            self.writer.add_scalar(tag_for(key, record), value, step)

    def image(self, path: Path, step: int) -> None:
        from PIL import Image

        with Image.open(path) as img:
            array = np.asarray(img.convert("RGB"))
        self.writer.add_image("samples", array, step, dataformats="HWC")

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


def attach(trainer: Trainer, callbacks: Callbacks) -> None:
    """CALLBACK_FACTORIES entry: when config.tensorboard is on, mirror the run into TensorBoard."""
    run = trainer.run
    if not trainer.config.tensorboard or run is None:
        return
    logger = TensorBoardLogger(run.path / "tensorboard")
    # Every record passes through run.log (training, evaluation and rollback records, whoever
    # writes them), so wrapping this run's log sends TensorBoard exactly what metrics.jsonl gets.
    write_jsonl = run.log

    def log(record: dict[str, Any]) -> None:
        write_jsonl(record)
        logger.record(record)

    run.log = log  # type: ignore[method-assign]
    callbacks.on_sample.append(lambda tr, path: logger.image(Path(path), tr.step))
    callbacks.on_end.append(lambda tr: logger.close())
