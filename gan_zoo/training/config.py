"""The training configuration: one pydantic model behind the CLI flags and TOML config files."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationError, model_validator

from ..errors import UsageError
from ..options import Options, explain_validation
from ..util.textsafe import shown
from ..util.tomlio import dumps_toml, read_toml


class TrainConfig(Options):
    """Everything that defines a training run. `ganzoo train --config FILE` reads these keys."""

    # Options (the base) refuses NaN/inf, true/false for numbers and text for numbers: in a
    # config they only ever end in a crash, a NaN run or a silently different run. Component
    # options are checked so by each component's Options model, which names the option.
    _checked_elsewhere: ClassVar[frozenset[str]] = frozenset({"options"})

    arch: str = Field("conv32", description="architecture name (see `ganzoo list arch`)")
    data: str | None = Field(
        None, description="folder of training images; omitted = the built-in shapes dataset")
    conditional: bool = Field(
        False, description="train a class-conditional GAN (`--conditional`): the classes are the "
        "data folder's subfolders, one per class (the built-in shapes: their kind); G and D see "
        "each image's class (docs/conditional.md)")
    class_balance: bool = Field(
        False, description="conditional runs: draw every class equally often, for real batches "
        "and generated images, however many images it has (`--class-balance`); default: as "
        "often as its share of the images")
    classes: list[str] | None = Field(
        None, max_length=1000, description="conditional runs: the class names in label order. "
        "gan-zoo writes them from the data at the start; when set, the data must have exactly "
        "these classes (a resume refuses a folder whose classes differ)")
    class_counts: list[int] | None = Field(
        None, max_length=1000, description="conditional runs: images per class in the data, "
        "written by gan-zoo when the run starts or resumes (information only)")
    steps: int | None = Field(
        None, ge=1, description="total generator steps of the run (default 1500 unless epochs)")
    epochs: float | None = Field(
        None, gt=0, description="run length in passes over the data (alternative to steps)")
    time_budget: float | None = Field(
        None, gt=0, le=1e6, description="run length in minutes of training time (`--minutes`), "
        "an alternative to steps and epochs: schedules see the share of the budget spent as "
        "their progress, evaluation and plots are not charged, and a resume continues the budget")
    budget_clock: Literal["wall", "cpu"] = Field(
        "wall", description="what time_budget counts: wall-clock time, or the process's CPU "
        "time over all its threads (fairer when the machine is shared)")
    batch_size: int = Field(64, ge=1, le=65536, description="images per batch (real and fake)")
    seed: int = Field(
        0, ge=0, le=2**62, description="seed for weights, noise and data order")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where to train")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="autocast precision. auto: bf16 where the hardware has bf16 matrix "
        "units (AMX or AVX512_BF16 CPUs, GPUs of compute capability 8.0+), where it is faster "
        "and reaches the same FID as fp32, else fp32; the run header says which and why. fp16 "
        "uses a gradient scaler; on CPU it runs but is slow: use bf16")
    channels_last: bool = Field(
        True, description="keep G's and D's convolution weights and activations channels-last "
        "(NHWC): faster on CPUs (oneDNN) and tensor-core GPUs; same results up to rounding")
    compile: bool = Field(
        False, description="torch.compile G and D for training (`--compile`): a one-off "
        "compilation of tens of seconds to minutes, then faster steps where the backend helps")
    loss: str = Field("bce", description="loss name (see `ganzoo list loss`)")
    schedules: list[str] = Field(
        default_factory=list, description="schedule names, applied together (`--sched`)")
    augment: list[str] = Field(
        default_factory=list, description="augmentation names (`--augment`)")
    lr_g: float = Field(2e-4, gt=0, le=1, description="generator Adam learning rate")
    lr_d: float = Field(2e-4, gt=0, le=1, description="discriminator Adam learning rate")
    beta1_g: float = Field(0.5, ge=0, lt=1, description="generator Adam beta1")
    beta1_d: float = Field(0.5, ge=0, lt=1, description="discriminator Adam beta1")
    beta2_g: float = Field(0.999, ge=0, lt=1, description="generator Adam beta2")
    beta2_d: float = Field(0.999, ge=0, lt=1, description="discriminator Adam beta2")
    real_label: float = Field(
        1.0, gt=0, le=1, description="target for real images (one-sided label smoothing: 0.9)")
    d_update: Literal["joint", "separate", "alternating"] = Field(
        "separate",
        description="separate: real and fake passes, one update (classic DCGAN example); joint: "
        "one D pass on a real+fake batch (the face seed's); alternating: a real-only then a "
        "fake-only update",
    )
    ema_decay: float = Field(
        0.999, ge=0, lt=1,
        description="decay of the generator weights' moving average used for samples (0 = off)")
    r1_gamma: float = Field(0.0, ge=0, description="weight of the R1 gradient penalty on real images")
    r1_every: int = Field(1, ge=1, description="apply R1 every this many steps (lazy R1)")
    log_every: int = Field(10, ge=1, description="write metrics every this many steps")
    sample_every: int = Field(250, ge=1, description="save a sample grid every this many steps")
    checkpoint_every: int = Field(500, ge=1, description="save a checkpoint every this many steps")
    keep_checkpoints: int = Field(3, ge=1, description="how many step checkpoints to keep")
    on_nonfinite: Literal["stop", "rollback"] = Field(
        "stop", description="when a loss or weight becomes NaN/inf: stop with a message, or roll "
        "back to the last good checkpoint and lower both learning rates")
    nonfinite_lr_factor: float = Field(
        0.5, gt=0, lt=1, description="rollback: multiply both learning rates by this each time")
    nonfinite_retries: int = Field(
        3, ge=1, le=100, description="rollback: give up after this many rollbacks in one run")
    sample_grid: int = Field(64, ge=1, le=1024, description="images in each sample grid")
    tensorboard: bool = Field(
        False, description="also write TensorBoard event files (scalars and sample grids) to "
        "RUN/tensorboard; needs the extra: pip install 'gan-zoo[tensorboard]'")
    sync_bn: bool = Field(
        False, description="distributed runs: batch norm statistics over the global batch "
        "(SyncBatchNorm, CUDA only) instead of each process's share; no effect in one process")
    eval_every: int | None = Field(
        None, ge=1, description="evaluate `metric` every this many steps (and at the end), log it "
        "and keep checkpoints/best.safetensors; null = never")
    metric: str = Field(
        "fid", description="metric for eval_every (see `ganzoo list metric`); its options: "
        "-o NAME.key=value, e.g. -o fid.n=500")
    early_stop_patience: int | None = Field(
        None, ge=1, description="stop after this many evaluations without improvement; null = never")
    options: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="component options: {component name: {key: value}}")

    @model_validator(mode="after")
    def _one_length(self) -> TrainConfig:
        lengths = [k for k in ("steps", "epochs", "time_budget") if getattr(self, k) is not None]
        if len(lengths) > 1:
            raise ValueError(f"give one run length, not {' and '.join(lengths)}")
        if not self.conditional:
            given = [k for k in ("classes", "class_counts", "class_balance") if getattr(self, k)]
            if given:
                raise ValueError(f"{given[0]} is for conditional runs: add conditional = true "
                                 "(--conditional) or remove it")
        _check_utf8(self.model_dump(mode="python"), "")
        return self

    def to_toml(self) -> str:
        return dumps_toml(self.model_dump(mode="json"))


def _check_utf8(value: Any, where: str) -> None:
    """Refuse text that cannot be stored in the run's UTF-8 config.toml (undecodable file names)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(
                f"{where or 'a value'} is not valid UTF-8 ({shown(value)}); rename the file or "
                "folder to a UTF-8 name") from None
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_utf8(k, where)
            _check_utf8(v, f"{where}.{k}" if where else str(k))
    elif isinstance(value, list | tuple):
        for v in value:
            _check_utf8(v, where)


DEFAULT_STEPS = 1500
RUN_LENGTHS = ("steps", "epochs", "time_budget")  # the keys that set a run's length; one at a time


def total_steps(config: TrainConfig, n_images: int) -> int:
    """The run's length in generator steps: --steps, else --epochs over n_images, else the default.
    Here rather than in trainer.py so restore.py and its callers need no Trainer to know it.
    A time-budget run has no fixed length: 1 here, the trainer projects it as it goes."""
    if config.time_budget is not None:
        return 1
    if config.steps is not None:
        return config.steps
    if config.epochs is not None:
        return max(1, math.ceil(config.epochs * (n_images // config.batch_size)))
    return DEFAULT_STEPS


def make_config(values: dict[str, Any], source: str = "configuration") -> TrainConfig:
    """Validate config values, reporting each problem by key in one message."""
    try:
        return TrainConfig(**values)
    except ValidationError as exc:
        problems = explain_validation(exc, lambda key: f"unknown key '{key}'")
        raise UsageError(f"invalid {source}: {problems}") from None


def load_config_file(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """Raw values of a config file; validated later together with command-line overrides."""
    values = read_toml(path, what)
    if "out" in values:
        raise UsageError(
            f"{what} {shown(str(path))} sets 'out'; the output folder is chosen on the command "
            "line (--out) only, so a config file cannot make gan-zoo write elsewhere"
        )
    return values


def merge_options(base: dict[str, dict], extra: dict[str, dict]) -> dict[str, dict]:
    out = {k: dict(v) for k, v in base.items()}
    for component, values in extra.items():
        out.setdefault(component, {}).update(values)
    return out
