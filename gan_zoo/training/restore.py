"""What a checkpoint must hold for this run: every value a resume or a sampler restores, checked
against what the run builds before anything uses it.

A checkpoint's checksum is no signature: anyone can write a well-formed file with a valid
checksum over nonsense. Handing such values to PyTorch is not safe (fused Adam with moments of
the wrong shape writes out of bounds and the process dies with SIGSEGV; NaN weights train or
sample garbage, later blamed on the learning rate). So every tensor is checked for presence,
shape, dtype and finiteness against the freshly built run, every plain value for type and range,
and each problem is one CheckpointError naming the tensor or key, what this run expects and what
the file holds. Optimizer hyperparameters (lr, betas, eps...) come from the run's config, never
from the file: only the optimizer's per-parameter state is restored.

A resume reads the newest checkpoint that verifies (rundir.latest_valid): one damaged by a crash
(bad checksum, cut short) is skipped with a warning. One that verifies but fails these checks
stops the resume instead: it was written that way by a bug or on purpose, and falling back to an
older one would silently drop the progress in between. Move it aside to resume from the older.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ..data.classes import ClassInfo
from ..errors import CheckpointError, GanZooError
from ..interfaces import TrainState
from ..util.textsafe import shown

if TYPE_CHECKING:
    from .trainer import Trainer

MAX_COUNT = 2**63 - 1  # epochs, rollbacks, scaler counters: int64 like everything else
MAX_WORLD_SIZE = 2**20
ALWAYS_OPTIONAL = ("rng.cuda",)  # written by CUDA runs; a CPU resume does not use it
# What a restored schedule may set: beyond these the trainer would hang (D updates per step) or
# compute nonsense. Knobs not listed need only be finite.
KNOB_LIMITS = {"d_steps": (0, 1000), "d_batch_fraction": (0, 1), "augment_p": (0, 1),
               "noise_std_real": (0, 1e6), "noise_std_fake": (0, 1e6),
               "lr_g_scale": (0, 1e6), "lr_d_scale": (0, 1e6)}
# Statistics a schedule's trial step observes (the checkpoint's last_stats override them).
TRIAL_STATS = {"loss_d": 1.0, "loss_g": 1.0, "d_real": 0.5, "d_fake": 0.5, "d_real_sign": 0.0,
               "d_acc": 0.5, "d_steps": 1.0}


@dataclass
class Restored:
    """Validated state of a checkpoint, ready to be applied to a Trainer."""

    modules: dict[str, dict[str, Tensor]]  # "G", "D" and (when restored) "G_ema"
    optimizers: dict[str, dict[int, dict[str, Tensor]]]  # "opt_g"/"opt_d": index -> state
    rng_torch: Tensor
    rng_sampler: Tensor
    rng_cuda: Tensor | None
    fixed_z: Tensor
    sampler: dict[str, int]
    step: int
    world_size: int
    lr_factor: float
    rollbacks: int
    last_stats: dict[str, float]
    scaler: dict[str, Any] | None
    budget_spent: float  # seconds of a --minutes budget spent (0 for older checkpoints)


def _describe(t: Tensor) -> str:
    return f"shape {tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}"


def _want(shape: tuple[int, ...], dtype: torch.dtype) -> str:
    return f"shape {tuple(shape)} {str(dtype).removeprefix('torch.')}"


class _Checker:
    """Collects the tensors a run expects and hands them out checked; names what is left over."""

    def __init__(self, tensors: dict[str, Tensor], where: str):
        self.tensors, self.where, self.used = tensors, where, set()

    def fail(self, what: str) -> CheckpointError:
        return CheckpointError(f"{self.where}: {what}")

    def take(self, name: str, shape: tuple[int, ...] | torch.Size, dtype: torch.dtype,
             finite: bool = True) -> Tensor:
        t = self.tensors.get(name)
        if t is None:
            raise self.fail(f"tensor {shown(name)} is missing (expected {_want(shape, dtype)})")
        self.used.add(name)
        if tuple(t.shape) != tuple(shape) or t.dtype != dtype:
            raise self.fail(f"tensor {shown(name)} has {_describe(t)}, expected "
                            f"{_want(shape, dtype)}")
        if finite and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise self.fail(f"tensor {shown(name)} holds NaN or infinite values")
        return t

    def module(self, prefix: str, module: nn.Module) -> dict[str, Tensor]:
        out = {k: self.take(f"{prefix}.{k}", v.shape, v.dtype) for k, v in module.state_dict().items()}
        for k, t in out.items():  # batch norm takes the square root of its running variance
            if k.rsplit(".", 1)[-1] == "running_var" and bool((t < 0).any()):
                raise self.fail(f"tensor {shown(f'{prefix}.{k}')} holds negative values")
        return out

    def ignore(self, prefix: str) -> None:
        self.used.update(k for k in self.tensors if k.startswith(prefix))

    def leftover(self) -> None:
        extra = sorted(set(self.tensors) - self.used - set(ALWAYS_OPTIONAL))
        if extra:
            raise self.fail(f"unexpected tensor {shown(extra[0])} (this run has no such state)"
                            + (f" and {len(extra) - 1} more" if len(extra) > 1 else ""))


def _optimizer(check: _Checker, prefix: str, opt: torch.optim.Optimizer,
               groups: Any) -> dict[int, dict[str, Tensor]]:
    """Adam's per-parameter state (moments and step) for the parameters this run optimizes,
    after checking the file's param groups list the same parameters."""
    params = [p for group in opt.param_groups for p in group["params"]]
    want_groups = [list(g["params"]) for g in opt.state_dict()["param_groups"]]
    got_groups = [g.get("params") if isinstance(g, dict) else None for g in groups] \
        if isinstance(groups, list) else None
    if got_groups != want_groups:
        raise check.fail(f"{prefix}_groups does not list this run's {len(params)} parameters in "
                         f"{len(want_groups)} group(s)")
    keys = ["exp_avg", "exp_avg_sq", "step"]
    if any(g.get("amsgrad") for g in opt.param_groups):
        keys.append("max_exp_avg_sq")
    state: dict[int, dict[str, Tensor]] = {}
    for i, param in enumerate(params):
        present = [k for k in keys if f"{prefix}.{i}.{k}" in check.tensors]
        if not present:
            continue  # no step taken yet for this parameter (e.g. the state before step 1)
        entry = {k: check.take(f"{prefix}.{i}.{k}", param.shape, param.dtype)
                 for k in keys if k != "step"}
        step = check.take(f"{prefix}.{i}.step", (), torch.float32)
        if step.item() < 0 or step.item() != math.floor(step.item()):
            raise check.fail(f"tensor {shown(f'{prefix}.{i}.step')} must be a whole number >= 0, "
                             f"got {shown(step.item())}")
        for k in ("exp_avg_sq", "max_exp_avg_sq"):  # square roots are taken of these
            if k in entry and bool((entry[k] < 0).any()):
                raise check.fail(f"tensor {shown(f'{prefix}.{i}.{k}')} holds negative values")
        state[i] = {**entry, "step": step}
    return state


def _rng(check: _Checker, name: str, current: Tensor, device: str = "cpu") -> Tensor:
    t = check.take(name, current.shape, torch.uint8)
    try:  # a scratch generator says whether PyTorch accepts the state, the real one is untouched
        torch.Generator(device=device).set_state(t)
    except RuntimeError:
        raise check.fail(f"tensor {shown(name)} is not a valid random-generator state") from None
    return t


def _int(check: _Checker, key: str, value: Any, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise check.fail(f"{key} must be a whole number from {low} to {high}, got {shown(value)}")
    return value


def _number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _finite_json(value: Any, depth: int = 0) -> bool:
    """Only finite numbers, strings, booleans and None, in lists and tables (bounded depth)."""
    if depth > 32:
        return False
    if isinstance(value, dict):
        return all(isinstance(k, str) and _finite_json(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return all(_finite_json(v, depth + 1) for v in value)
    return value is None or isinstance(value, (str, bool)) or _number(value)


def _scaler(check: _Checker, trainer: Trainer, saved: Any) -> dict[str, Any] | None:
    """The loss scale and growth counter from the file; factors and interval from the run."""
    if saved is None or not trainer.scaler.is_enabled():
        return None
    if not isinstance(saved, dict):
        raise check.fail(f"'scaler' must be a table, got {shown(saved)}")
    scale = saved.get("scale")
    if not _number(scale) or scale <= 0:
        raise check.fail(f"scaler scale must be a finite number > 0, got {shown(scale)}")
    tracker = _int(check, "scaler _growth_tracker", saved.get("_growth_tracker"), 0, MAX_COUNT)
    return {**trainer.scaler.state_dict(), "scale": float(scale), "_growth_tracker": tracker}


def check_state(trainer: Trainer, tensors: dict[str, Tensor], meta: dict[str, Any]) -> Restored:
    """Everything `trainer` would restore from (tensors, meta), checked; changes nothing."""
    where = f"the checkpoint of step {meta.get('step')} cannot be resumed"
    check = _Checker(tensors, where)
    arch = meta["arch"]
    if arch["name"] != trainer.c.arch.name or arch["options"] != \
            trainer.c.arch.options.model_dump(mode="json"):
        raise check.fail(f"it is for {shown(arch['name'])} with other options than this run's "
                         f"{trainer.c.arch.name}")
    _classes(check, trainer, meta.get("classes"))
    modules = {"G": check.module("G", trainer.G), "D": check.module("D", trainer.D)}
    if trainer.G_ema is not None and meta.get("has_ema"):
        modules["G_ema"] = check.module("G_ema", trainer.G_ema)
    else:
        check.ignore("G_ema.")
    optimizers = {name: _optimizer(check, name, getattr(trainer, name), meta.get(f"{name}_groups"))
                  for name in ("opt_g", "opt_d")}
    rng_cuda = None
    if trainer.device.type == "cuda" and "rng.cuda" in tensors:
        rng_cuda = _rng(check, "rng.cuda", torch.cuda.get_rng_state(trainer.device),
                        str(trainer.device))
    restored = Restored(
        modules=modules, optimizers=optimizers,
        rng_torch=_rng(check, "rng.torch", torch.get_rng_state()),
        rng_sampler=_rng(check, "rng.sampler", trainer.sampler.rng.get_state()),
        rng_cuda=rng_cuda,
        fixed_z=check.take("fixed_z", trainer.fixed_z.shape, trainer.fixed_z.dtype),
        sampler=_sampler(check, trainer, meta.get("sampler")),
        step=meta["step"],
        world_size=_int(check, "world_size", meta.get("world_size", 1), 1, MAX_WORLD_SIZE),
        lr_factor=_lr_factor(check, meta.get("lr_factor", 1.0)),
        rollbacks=_int(check, "rollbacks", meta.get("rollbacks", 0), 0, MAX_COUNT),
        budget_spent=_budget_spent(check, meta.get("budget")),
        last_stats=_last_stats(check, meta.get("last_stats", {})),
        scaler=_scaler(check, trainer, meta.get("scaler")),
    )
    check.leftover()
    schedules = meta.get("schedules", {})
    for s in trainer.c.schedules:
        if s.name in schedules and not (isinstance(schedules[s.name], dict)
                                        and _finite_json(schedules[s.name])):
            raise check.fail(f"the state of schedule {s.name!r} must be a table of finite values")
    return restored


def _classes(check: _Checker, trainer: Trainer, saved: Any) -> None:
    """A conditional checkpoint resumes only as a conditional run on the same classes."""
    try:
        classes = ClassInfo.from_meta(saved, check.where)
    except CheckpointError as exc:
        raise check.fail(str(exc).removeprefix(f"{check.where}: ")) from None
    mine = trainer.classes
    if classes is None and mine is None:
        return
    if classes is None or mine is None:
        raise check.fail("it is from a conditional run and this run is not" if mine is None
                         else "it is from an unconditional run and this run is conditional")
    if classes.names != mine.names:
        raise check.fail(f"it was trained on {len(classes)} classes "
                         f"({', '.join(shown(n) for n in classes.names[:6])}), the data has "
                         f"{len(mine)} ({', '.join(shown(n) for n in mine.names[:6])})")


def _sampler(check: _Checker, trainer: Trainer, saved: Any) -> dict[str, int]:
    if not isinstance(saved, dict):
        raise check.fail("'sampler' (the data order) is missing")
    return {"epoch": _int(check, "sampler epoch", saved.get("epoch"), 0, MAX_COUNT),
            "pos": _int(check, "sampler pos", saved.get("pos"), 0, trainer.sampler.n)}


def _budget_spent(check: _Checker, saved: Any) -> float:
    """Seconds of the time budget spent before this checkpoint (None: no budget was kept)."""
    if saved is None:
        return 0.0
    spent = saved.get("spent") if isinstance(saved, dict) else None
    if not _number(spent) or not 0 <= spent <= 1e12:
        raise check.fail(f"budget.spent must be a number of seconds >= 0, got {shown(spent)}")
    return float(spent)


def _lr_factor(check: _Checker, value: Any) -> float:
    if not _number(value) or not 0 < value <= 1:
        raise check.fail(f"lr_factor must be a number in (0, 1], got {shown(value)}")
    return float(value)


def _last_stats(check: _Checker, saved: Any) -> dict[str, float]:
    if not isinstance(saved, dict) or not all(_number(v) for v in saved.values()):
        raise check.fail("last_stats must be a table of finite numbers")
    return {str(k): float(v) for k, v in saved.items()}


@contextmanager
def _blamed(check_fail: Callable[[str], CheckpointError], what: str) -> Iterator[None]:
    try:
        yield
    except GanZooError:
        raise
    except Exception as exc:  # a plugin's own code: whatever it raises is this file's fault
        raise check_fail(f"{what} ({type(exc).__name__}: {shown(str(exc))})") from None


def _knob_problem(knobs: Any) -> str | None:
    if not isinstance(knobs, dict) or not all(_number(v) for v in knobs.values()):
        return "sets non-finite knobs"
    for name, value in knobs.items():
        low, high = KNOB_LIMITS.get(name, (-math.inf, math.inf))
        if not low <= value <= high:
            return f"sets {name} to {shown(value)}, outside [{low:g}, {high:g}]"
    return None


def load_schedules(trainer: Trainer, meta: dict[str, Any]) -> None:
    """Hand each schedule its saved state, then let a copy of it take one step (values, observe,
    values): whatever a plugin's code raises, a non-finite state and a knob outside what the
    trainer can use (1e12 D updates per step would be a hang) is one CheckpointError. The real
    schedule is untouched by the trial step, so a resume stays bit-identical."""
    check = _Checker({}, f"the checkpoint of step {meta.get('step')} cannot be resumed")
    saved = meta.get("schedules", {})
    stats = {**TRIAL_STATS, **meta.get("last_stats", {})}
    now = TrainState(meta["step"], trainer.total_steps, dict(stats))
    after = TrainState(meta["step"] + 1, trainer.total_steps, dict(stats))
    for s in trainer.c.schedules:
        if s.name not in saved:
            continue
        with _blamed(check.fail, f"schedule {s.name!r} refused its saved state"):
            s.load_state_dict(saved[s.name])
            trial = copy.deepcopy(s)
            knobs = [trial.values(now)]
            trial.observe(after, dict(stats))
            knobs.append(trial.values(after))
            states = [s.state_dict(), trial.state_dict()]
        problem = None if _finite_json(states) else "holds non-finite values"
        for k in knobs:
            problem = problem or _knob_problem(k)
        if problem:
            raise check.fail(f"schedule {s.name!r} {problem} after loading its saved state")


# ------------------------------------------------------------------ sampling from a checkpoint

def build_generator(arch: Any, tensors: dict[str, Tensor], prefix: str, where: str) -> nn.Module:
    """The architecture's generator holding a checkpoint's weights (`prefix` G or G_ema).

    The weights are checked first against the generator built on PyTorch's "meta" device
    (shapes without memory): a small file naming a huge width fails here, before gigabytes are
    allocated. Non-finite weights are refused: they sample black or noise images, and gan-zoo
    never saves them (save_checkpoint refuses), so such a file is damaged or forged."""
    try:
        with torch.device("meta"):
            template = arch.build_generator()
    except GanZooError:
        raise
    except Exception:  # an architecture that cannot be built on "meta": checked after building
        template = None
    generator = arch.build_generator() if template is None else None
    weights = _Checker(tensors, where).module(prefix, template or generator)
    generator = generator or arch.build_generator()
    try:
        generator.load_state_dict(weights)
    except RuntimeError as exc:  # a safety net: the check above names the tensor
        raise CheckpointError(f"{where}: {shown(str(exc))}") from None
    return generator
