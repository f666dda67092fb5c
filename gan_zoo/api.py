"""The Python API; the CLI is a thin layer over these functions.

    from gan_zoo import api
    result = api.train({"arch": "conv32", "steps": 200}, out="runs/demo")
    G, meta = api.load_generator("runs/demo")
    images = api.sample(G, 16, seed=0)           # (16, 3, 32, 32) in [-1, 1]
    api.save_images(images, "grid.png")
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from . import sampling
from .data import sample_output
from .data.classes import ClassInfo, run_classes
from .data.folders import ImageArray, load_dataset
from .errors import CheckpointError, GanZooWarning, UsageError
from .evaluation import during_training as eval_during_training
from .interfaces import Generator
from .plugins import missing_component_message
from .training import checkpoint as ckpt
from .training import distributed, restore
from .training.assembly import build, build_components, build_recorded
from .training.callbacks import Callbacks, Progress, progress_callback
from .training.config import RUN_LENGTHS, TrainConfig, make_config
from .training.rundir import RunDir, default_run_dir, refuse_empty_paths, resolve_checkpoint
from .training.trainer import Trainer
from .util.hardware import apply_threads
from .util.textsafe import shown
from .util.tomlio import read_toml
from .visual import live as live_plots
from .visual import tensorboard as tensorboard_log

__all__ = [
    "TrainResult", "build", "build_components", "class_grid", "load_checkpoint",
    "load_generator", "interpolate", "make_config", "prepare_training", "sample", "save_images", "train",
]

# Extension point for engine features that attach to the loop (evaluation, plots): each is
# called with (trainer, callbacks) before training starts.
CALLBACK_FACTORIES: list[Callable[[Trainer, Callbacks], None]] = []
CALLBACK_FACTORIES.append(live_plots.attach)  # RUN/curves.png and RUN/evolution.png, kept current
CALLBACK_FACTORIES.append(tensorboard_log.attach)  # --tensorboard: RUN/tensorboard event files
CALLBACK_FACTORIES.append(eval_during_training.attach)  # --eval-every: metric, best checkpoint


@dataclass
class TrainResult:
    run_dir: Path | None
    step: int
    total_steps: int
    stopped: str | None
    seconds: float
    last: dict[str, float]
    trainer: Trainer


def _open_run(config: TrainConfig | dict[str, Any] | None, out: str | os.PathLike | None,
              resume: str | os.PathLike | None, length: dict[str, Any],
              log: Callable[[str], None]) -> tuple[TrainConfig, RunDir, tuple[dict, dict] | None]:
    """The config, run directory and (on resume) checkpoint of the run to train."""
    loaded: tuple[dict, dict] | None = None
    refuse_empty_paths(out, resume)
    if resume is not None:
        run = RunDir(resume)
        run.check_start(new=False)  # before reading anything a training may be writing
        if not run.config_path.exists():
            raise UsageError(f"--resume {str(resume)!r} is not a run directory (no config.toml)")
        values = read_toml(run.config_path)
        if length:  # a new run length replaces the saved one
            for key in RUN_LENGTHS:
                values.pop(key, None)
            values.update(length)
        cfg = make_config(values, f"config of run {str(resume)!r}")
        try:
            path, tensors, meta, problems = run.latest_valid()
            for problem in problems:
                log(f"warning: skipped damaged checkpoint: {problem}")
            log(f"resuming from {path} (step {meta['step']})")
            loaded = (tensors, meta)
        except CheckpointError as exc:
            if run.step_checkpoints(include_irregular=True):
                raise
            log(f"no checkpoint in {resume}: starting the run again from step 0 ({exc})")
    else:
        cfg = config if isinstance(config, TrainConfig) else make_config(dict(config or {}))
        run = RunDir(out) if out is not None else RunDir(default_run_dir(cfg.arch))
        run.check_start(new=True)  # again under the run's lock in create()
    return cfg, run, loaded


def prepare_training(
    config: TrainConfig | dict[str, Any] | None = None,
    *,
    out: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    steps: int | None = None,
    epochs: float | None = None,
    minutes: float | None = None,
    callbacks: Callbacks | None = None,
    data: ImageArray | None = None,
    log: Callable[[str], None] | None = None,
    trust_weights: bool = False,
) -> Trainer:
    """Assemble a Trainer: new run from a config, or continue `resume` (a run directory);
    on resume, one of `steps`, `epochs` or `minutes` replaces the run's saved length.

    `trust_weights` (the command line's --trust-weights; never saved in the run) lets
    evaluation load an Inception file that is not a known export (docs/evaluation.md)."""
    log = log or (lambda msg: None)
    # torch's default thread count follows the CPU affinity but not a container's CPU quota;
    # OMP_NUM_THREADS (torchrun sets it to 1 per process) and a user's own count are kept.
    apply_threads()
    dist = distributed.setup()  # single-process unless started by torchrun
    if not dist.is_main:
        log = lambda msg: None  # noqa: E731 -- rank 0 reports for every rank
    # Rank 0 opens the run; the other ranks get its config, directory and checkpoint (they may
    # be on machines that cannot see rank 0's disk).
    given = {"steps": steps, "epochs": epochs, "time_budget": minutes}
    length = {k: v for k, v in given.items() if v is not None}
    if len(length) > 1:
        raise UsageError("give one run length (steps, epochs or minutes), not several")
    cfg, run, loaded = dist.on_main(lambda: _open_run(config, out, resume, length, log))
    mine = cfg
    if resume is None and not dist.is_main:  # each rank's own command must match rank 0's
        mine = config if isinstance(config, TrainConfig) else make_config(dict(config or {}))
    dist.check_same("configuration", mine.model_dump(mode="json"))
    if loaded is not None:
        # A component whose plugin is gone: name the package to install, not just the name.
        for record in [{**loaded[1]["arch"], "kind": "arch"}, *loaded[1].get("components", [])]:
            missing = missing_component_message(record, f"the run {str(resume)!r}")
            if missing:
                raise CheckpointError(missing)
    components = build_components(cfg)
    if data is None:
        # One rank per machine decodes the images into the cache first, the others then read it.
        data = dist.main_first(lambda: load_dataset(cfg.data, components.arch.resolution))
        if data.skipped:
            log(f"skipped {data.skipped_summary()} in {data.source}")
    run_classes(cfg, data)  # unlabelled data or other classes: refused before any file is made
    if dist.is_main:  # rank 0 alone writes (and locks) the run directory
        run.create(new=resume is None)
    trainer = Trainer(cfg, components, data, run if dist.is_main else None, callbacks)
    trainer.callbacks.on_message.append(lambda _, message: log(message))
    if loaded is not None:
        trainer.load_state(*loaded)
        before = loaded[1].get("precision")  # absent in older checkpoints
        if before is not None and before != trainer.precision:
            log(f"note: this run trained in {before} until now and continues in "
                f"{trainer.precision} ({trainer.precision_reason}) on this machine")
    if not dist.is_main:
        return trainer  # evaluation, plots and other run-directory writers live on rank 0
    # Steps after the checkpoint (on a new run: of an attempt that never saved one) are run,
    # and logged, again.
    run.rewind_metrics(trainer.step)
    # The resolved config (with the total steps fixed) reruns the same training; a time
    # budget stays a budget.
    if trainer.budget is None:
        cfg = cfg.model_copy(update={"steps": trainer.total_steps, "epochs": None})
    if trainer.classes is not None:  # the run's classes, checked again on every resume
        counts = list(trainer.classes.counts)
        if cfg.class_counts is not None and cfg.class_counts != counts:
            log(f"note: the data's images per class changed since the run's last start "
                f"({sum(cfg.class_counts)} -> {sum(counts)} images)")
        cfg = cfg.model_copy(update={"classes": list(trainer.classes.names),
                                     "class_counts": counts})
    run.write_config(cfg.to_toml())
    trainer.trust_weights = trust_weights  # type: ignore[attr-defined]  # read by evaluation
    for factory in CALLBACK_FACTORIES:
        factory(trainer, trainer.callbacks)
    trainer.callbacks.on_end.append(lambda _: run.unlock())  # last: after the final writes
    return trainer


def train(
    config: TrainConfig | dict[str, Any] | None = None,
    *,
    progress: Progress | None = None,
    **kwargs: Any,
) -> TrainResult:
    """Train (or resume, with resume=RUN_DIR) and return where the run was written.
    `progress(step, total_steps, stats, seconds)` is called after every step (an on_step
    callback; `img_per_s` is in stats on logged steps)."""
    trainer = prepare_training(config, **kwargs)
    if progress is not None:
        trainer.callbacks.on_step.append(progress_callback(progress))
    summary = trainer.train()
    return TrainResult(trainer.run.path if trainer.run else None, summary["step"],
                       summary["total_steps"], summary["stopped"], summary["seconds"],
                       summary["last"], trainer)


def load_checkpoint(target: str | os.PathLike, which: str = "latest"
                    ) -> tuple[dict[str, Tensor], dict[str, Any], Path]:
    """Tensors and metadata of a checkpoint file or of a run directory's latest/best one (the
    newest that verifies: a damaged latest is reported with a warning and skipped)."""
    if which == "latest" and Path(target).is_dir() and RunDir(target).step_checkpoints():
        path, tensors, meta, problems = RunDir(target).latest_valid()
        for problem in problems:
            warnings.warn(f"skipped damaged checkpoint: {problem}", GanZooWarning, stacklevel=2)
        return tensors, meta, path
    path = resolve_checkpoint(target, which)
    tensors, meta = ckpt.load(path)
    return tensors, meta, path


def load_generator(
    target: str | os.PathLike, which: str = "latest", device: str | torch.device = "cpu",
    ema: bool = True,
) -> tuple[Generator, dict[str, Any]]:
    """The generator of a checkpoint (its EMA weights when saved and ema=True), in eval mode."""
    tensors, meta, path = load_checkpoint(target, which)
    arch = build_recorded("arch", meta["arch"])  # not installed / another version / bad options
    where = f"{shown(str(path))}: cannot load its {shown(arch.name)} generator"
    classes = ClassInfo.from_meta(meta.get("classes"), where)
    if classes is not None:
        if not arch.conditional:
            raise CheckpointError(f"{where}: the checkpoint names classes but this version of "
                                  f"{shown(arch.name)} is unconditional")
        arch.num_classes = len(classes)
    prefix = "G_ema" if ema and meta.get("has_ema") else "G"
    # Shapes, dtypes and finiteness checked against the model built without memory first.
    generator = restore.build_generator(arch, tensors, prefix, where)
    if classes is not None:  # what sampling tools read to name and draw classes
        generator.class_names, generator.class_counts = classes.names, classes.counts
    meta["path"] = str(path)
    return generator.to(device).eval(), meta


def sample(generator: Generator, n: int, seed: int = 0, batch_size: int = 64,
           device: str | torch.device | None = None, precision: str = "fp32",
           truncation: float = 1.0, classes: Sequence[str | int] | None = None) -> Tensor:
    """n images in [-1, 1] on the CPU, the same for the same seed, precision and batch size.
    precision "bf16" (or "auto": bf16 where the hardware runs it fast, as `ganzoo sample`
    does) is 1.7x faster for conv64 on a CPU with bf16 units, within 1/255 per pixel of fp32
    there (docs/performance.md). fp32 stays the default here, so that code calling this gets
    the images it got before. truncation: psi in (0, 1], 1 = off; smaller trades variety for
    fidelity (`ganzoo sample --truncation`, gan_zoo.sampling). For many images, write them as
    they are made instead: gan_zoo.data.sample_output.sample_to (what `ganzoo sample` does).
    classes (a conditional generator's names or indices): image i is of classes[i % k];
    without them labels are drawn by each class's share of the training images."""
    chosen = sampling.class_indices(generator, classes)
    batches = list(sample_output.generate(generator, n, seed, batch_size, device, precision,
                                          truncation, chosen))
    return torch.cat(batches) if batches else torch.zeros(0)


def class_grid(generator: Generator, classes: Sequence[str | int] | None = None,
               columns: int = 8, seed: int = 0, batch_size: int = 64,
               device: str | torch.device | None = None, precision: str = "fp32",
               truncation: float = 1.0) -> Tensor:
    """A conditional generator's class grid (`ganzoo sample --class-grid`): one row per class
    (the given names or indices, else all), the same `columns` seeded latents in every row;
    (rows * columns, C, H, W) in [-1, 1]. Save it with save_images(images, "grid.png",
    nrow=columns)."""
    return sample_output.class_grid(generator, sampling.class_indices(generator, classes),
                                    columns, seed, batch_size, device, precision, truncation)


def interpolate(generator: Generator, k: int, out: str | os.PathLike, frames: int = 16,
                fps: int = 12, seed: int = 0, truncation: float = 1.0, batch_size: int = 64,
                device: str | torch.device | None = None, precision: str = "fp32",
                class_: str | int | None = None) -> Path:
    """A looping animation of a walk through k >= 2 seeded latents (`ganzoo sample
    --interpolate K`): `frames` frames per segment by spherical interpolation, the last latent
    back to the first, at `fps` frames per second. `out`: x.gif, or x.mp4 when an ffmpeg
    executable is on PATH; written whole or not at all (an existing file is replaced, a folder
    refused). Frame i * frames shows image i of sample(generator, k, seed, truncation=...) with a
    batch size of at least k. A conditional generator walks within one class: `class_` (a
    name or index), else one drawn from the seed. Returns the path written."""
    chosen = sampling.class_indices(generator, None if class_ is None else [class_])
    return sample_output.walk_to(generator, k, out, frames, fps, seed, truncation, batch_size,
                                 device, precision, None if chosen is None else chosen[0])


def save_images(images: Tensor, out: str | os.PathLike, nrow: int | None = None) -> Path:
    """Save images by the form of `out`: `*.png` a grid, `*.npy` an (N, H, W, 3) uint8 array
    (at exactly that path), a name without suffix a new folder of numbered PNGs (an existing
    folder must be empty); see gan_zoo.data.sample_output."""
    return sample_output.write_samples([images], len(images), out, nrow)
