"""The non-finite guard: NaN/inf losses, weights and optimizer moments stop the run, or with
on_nonfinite=rollback return it to the last good checkpoint with lower learning rates."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ..errors import GanZooError

if TYPE_CHECKING:
    from .distributed import DistContext
    from .trainer import Trainer

State = tuple[dict[str, Tensor], dict[str, Any]]  # a checkpoint's tensors and metadata


class NonFiniteError(GanZooError):
    """A loss or weight became NaN or infinite; ``detail`` says which and at which step."""

    HINT = "try a lower learning rate, --loss hinge, r1_gamma, spectral norm or on_nonfinite=rollback"

    def __init__(self, detail: str, hint: bool = True):
        self.detail = detail
        super().__init__(f"{detail}; training stopped ({self.HINT})" if hint else detail)


def named_state(modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer]
                ) -> list[tuple[str, Tensor]]:
    """Weights, float buffers and optimizer moments, by checkpoint name."""
    out = []
    for prefix, module in modules.items():
        out += [(f"{prefix}.{k}", v) for k, v in module.state_dict().items()
                if v.is_floating_point()]
    for prefix, opt in optimizers.items():
        for i, state in enumerate(opt.state.values()):
            out += [(f"{prefix}.{i}.{k}", v) for k, v in state.items()
                    if torch.is_tensor(v) and v.is_floating_point() and v.dim() > 0]
    return out


def check_checkpoint(tensors: dict[str, Tensor], step: int) -> None:
    """A checkpoint is written only when every float tensor in it is finite."""
    for name, t in tensors.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise NonFiniteError(f"{name} is not finite at step {step}; checkpoint not written")


class NonFiniteGuard:
    """Checks a step's losses and the state it left; keeps the state a rollback returns to."""

    def __init__(self, dist: DistContext, modules: dict[str, nn.Module],
                 optimizers: dict[str, torch.optim.Optimizer]):
        self.dist, self.modules, self.optimizers = dist, modules, optimizers
        self.pending: NonFiniteError | None = None
        self.good_state: State | None = None  # in-memory copy of the last checkpoint

    def check_losses(self, step: int, **values: Tensor) -> None:
        """`step` is the one being computed (1-based)."""
        for name, value in values.items():
            if not torch.isfinite(value).all():
                error = NonFiniteError(
                    f"{name} became {value.item() if value.numel() == 1 else 'non-finite'} at "
                    f"step {step}")
                if not self.dist.active:
                    raise error
                # Losses are per rank: raising here alone would leave the other ranks waiting
                # in this step's all-reduce. Every rank decides together in check_state.
                self.pending = self.pending or error

    def check_state(self, step: int) -> None:
        """An update can make weights or Adam's moments NaN/inf while every loss was finite (a
        huge gradient squared overflows); check them all after each step, one sync in total."""
        named = named_state(self.modules, self.optimizers)
        # A sum is NaN/inf when any element is: one pass per tensor where isfinite() takes five
        # (16 -> 2 ms per conv64 step). Finite values that overflow the sum (|x| ~ 1e32) only
        # trigger the exact per-element test, which decides.
        all_ok = bool(torch.isfinite(torch.stack([t.sum() for _, t in named])).all())
        if not all_ok:
            ok = torch.stack([torch.isfinite(t).all() for _, t in named])
            all_ok = bool(ok.all())
        pending, self.pending = self.pending, None
        # Distributed: one decision for every rank (buffers and losses are per rank).
        if self.dist.any_flag(not all_ok or pending is not None):
            if pending is not None:
                raise pending
            if all_ok:
                raise NonFiniteError(
                    f"a loss or weight became non-finite on another rank at step {step}")
            name = named[int((~ok).nonzero()[0])][0]
            what = "optimizer state" if name.startswith("opt_") else "weight"
            raise NonFiniteError(f"{what} {name} became non-finite at step {step}")

    def keep(self, state: State) -> None:
        """Remember a checkpoint's state to roll back to (copies: training changes tensors)."""
        tensors, meta = state
        self.good_state = ({k: v.detach().clone() for k, v in tensors.items()}, meta)

    def roll_back(self, trainer: Trainer, exc: NonFiniteError) -> None:
        """With on_nonfinite=rollback: return to the last good checkpoint with both learning
        rates lowered, at most nonfinite_retries times; otherwise re-raise."""
        cfg = trainer.config
        if cfg.on_nonfinite != "rollback" or self.good_state is None:
            raise exc
        if trainer.rollbacks >= cfg.nonfinite_retries:
            raise NonFiniteError(
                f"{exc.detail}, after {trainer.rollbacks} rollback(s) with the learning rates "
                f"lowered to {trainer.lr_factor:g}x") from None
        rollbacks, factor = trainer.rollbacks + 1, trainer.lr_factor * cfg.nonfinite_lr_factor
        tensors, meta = self.good_state  # copies: loading must not alias the kept state
        trainer.load_state({k: v.clone() for k, v in tensors.items()}, copy.deepcopy(meta))
        trainer.rollbacks, trainer.lr_factor = rollbacks, factor
        trainer.notify(f"warning: {exc.detail}; rolled back to step {trainer.step} with the "
                       f"learning rates at {factor:g}x (rollback {rollbacks} of "
                       f"{cfg.nonfinite_retries})")
        if trainer.run is not None:
            trainer.run.log({"step": trainer.step, "event": "rollback", "reason": exc.detail,
                             "lr_factor": factor, "rollbacks": rollbacks})
