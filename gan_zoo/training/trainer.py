"""The training loop: one readable file from batch to checkpoint.

Per generator step (defaults): draw z, compute the fake batch once; update D in the passes its
mode lists (D_PASSES) with the fake detached; update G through D with D's parameters frozen (so
no gradient ever accumulates in D's weights); update the EMA copy of G (ema.py); check losses,
weights and optimizer moments (nonfinite.py). Schedules set the knobs (instance noise, D updates
per step, learning-rate factors, augmentation probability) before each step and see its
statistics after. Code around the loop watches it through Callbacks (callbacks.py); what a
checkpoint holds is packed by checkpoint_state.py and checked on the way back by restore.py.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..data.classes import BalancedSampler, ClassInfo, grid_labels, run_classes
from ..data.folders import EpochSampler, ImageArray, gather
from ..data.images import from_uint8, grid_layout, save_grid
from ..errors import CheckpointError, GanZooWarning, UsageError
from ..interfaces import TrainState
from ..util.hardware import choose_precision
from ..util.textsafe import shown
from . import checkpoint as ckpt
from . import checkpoint_state, distributed, restore
from .assembly import Components
from .budget import TimeBudget
from .callbacks import Callbacks
from .config import TrainConfig, total_steps
from .ema import EMA
from .knobs import default_knobs
from .nonfinite import NonFiniteError, NonFiniteGuard, check_checkpoint
from .rundir import RunDir

__all__ = ["Callbacks", "D_PASSES", "DPass", "NonFiniteError", "Trainer", "d_output_stats",
           "resolve_device"]


@torch.no_grad()
def d_output_stats(real: Tensor, fake: Tensor, threshold: float = 0.0) -> dict[str, float]:
    """What D's outputs on a step's real and fake images say. D calls an image real when its
    output is above `threshold` (the loss's decision_threshold)."""
    calls_right = (real > threshold).float().sum() + (fake < threshold).float().sum()
    return {
        "d_real": torch.sigmoid(real).mean().item(),  # D(x), a probability for bce's logits
        "d_fake": torch.sigmoid(fake).mean().item(),
        # E[sign] on reals: the overfitting signal adaptive augmentation (ada) reads.
        "d_real_sign": torch.sign(real - threshold).mean().item(),
        "d_acc": (calls_right / (len(real) + len(fake))).item(),
    }


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was requested but no CUDA device is available")
    return torch.device(name)


@dataclass(frozen=True)
class DPass:
    """One optimizer step of D: the images it sees and the regularizers that go with them (R1
    on real images, the loss's penalty, e.g. wgan-gp, where fakes are seen)."""

    real: bool
    fake: bool
    joint: bool = False  # real and fake images in one forward (one batch-norm batch)

    @property
    def r1(self) -> bool:
        return self.real

    @property
    def penalty(self) -> bool:
        return self.fake


D_PASSES = {  # config.d_update -> D's passes per D update
    "separate": (DPass(real=True, fake=True),),  # a real and a fake forward (classic DCGAN)
    "joint": (DPass(real=True, fake=True, joint=True),),  # one mixed batch (the face seed's)
    # Keras-style: a real-only update, then a fake-only update (face seed's model 2).
    "alternating": (DPass(real=True, fake=False), DPass(real=False, fake=True)),
}


def _match_layouts(opt: torch.optim.Optimizer) -> None:
    """Give restored optimizer moments their parameter's memory layout: checkpoints store them
    contiguous, and fused Adam pairs elements by memory position, so a channels-last weight with
    NCHW moments would be updated with the wrong elements' moments."""
    for param, state in opt.state.items():
        for key, value in state.items():
            if torch.is_tensor(value) and value.shape == param.shape and value.stride() != param.stride():
                state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)


class Trainer:
    def __init__(
        self,
        config: TrainConfig,
        components: Components,
        data: ImageArray,
        run: RunDir | None = None,
        callbacks: Callbacks | None = None,
    ):
        self.config, self.c, self.data, self.run = config, components, data, run
        self.callbacks = callbacks or Callbacks()
        self.dist = distributed.setup()  # single-process unless started by torchrun
        self.device = self.dist.device_for(resolve_device(config.device))
        # "auto" (the default) becomes bf16 or fp32 for this device; the header shows why.
        self.precision, self.precision_reason = choose_precision(config.precision, self.device)
        if self.precision == "fp16" and self.device.type == "cpu":
            # It runs (tests/training/test_fp16.py trains it on CPU), but CPUs without fp16 arithmetic
            # emulate it: 68x slower than fp32 (conv32, width 64, batch 64, AVX-512 CPU).
            warnings.warn("--precision fp16 on CPU is much slower than fp32 on most CPUs; "
                          "use bf16 for speed on CPU", GanZooWarning, stacklevel=2)
        arch = components.arch
        if data.resolution != arch.resolution:
            raise UsageError(
                f"data is {data.resolution}px but {arch.name} needs {arch.resolution}px")
        # A conditional run's classes: checked here, before anything is built (a folder that
        # is not labelled, or whose classes differ from the run's, is one DataError).
        self.classes: ClassInfo | None = run_classes(config, data)
        if self.classes is not None:
            arch.num_classes = len(self.classes)
        self.total_steps = total_steps(config, len(data))
        # --minutes: the run ends when the budget is spent; total_steps is then a projection.
        self.budget = TimeBudget(config.time_budget, config.budget_clock) \
            if config.time_budget is not None else None
        self.step = 0
        self.stop_reason: str | None = None
        self._stop_signal: int | None = None
        self.started = time.perf_counter()  # set again when train() starts

        torch.manual_seed(config.seed)
        # Channels-last: oneDNN (CPU) and tensor cores (GPU) run NHWC convolutions without the
        # layout reorders NCHW needs on every call; real batches already arrive NHWC-strided.
        fmt = torch.channels_last if config.channels_last else torch.preserve_format
        self.G = arch.build_generator().to(self.device, memory_format=fmt)
        self.D = arch.build_discriminator().to(self.device, memory_format=fmt)
        if self.classes is not None:
            _check_conditional(arch.name, self.G, self.D, len(self.classes))
            # What sampling tools read to name and draw classes (copied into the EMA G).
            self.G.class_names, self.G.class_counts = self.classes.names, self.classes.counts
        # Distributed: G_train/D_train are DDP wrappers for the forwards whose gradients are
        # averaged over ranks; the EMA, samples, checkpoints and the G step's D use G and D.
        self.G = self.dist.prepare(self.G, config.sync_bn, self.device)
        self.D = self.dist.prepare(self.D, config.sync_bn, self.device)
        self.G_train = self.dist.wrap(self.G, self.device)
        # Auxiliary losses are computed on real images: a fake-only update leaves them unused.
        self.D_train = self.dist.wrap(self.D, self.device, partial=bool(
            self.D.aux_losses and config.d_update == "alternating"))
        self.label_probs = self.classes.probs(config.class_balance) \
            if self.classes is not None else None
        self.ema = EMA(self.G, config.ema_decay, config.seed, self.device, self.label_probs) \
            if config.ema_decay > 0 else None
        # Fused Adam: one pass over each parameter instead of one per arithmetic operation.
        fused = self.device.type in ("cpu", "cuda")
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=config.lr_g,
                                      betas=(config.beta1_g, config.beta2_g), fused=fused)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=config.lr_d,
                                      betas=(config.beta1_d, config.beta2_d), fused=fused)
        if config.compile:
            # In place (Module.compile): state_dict names, the EMA copy (made above, left
            # eager: it only samples) and the DDP wrappers see the same modules.
            self.G.compile()
            self.D.compile()
        if config.class_balance and self.classes is not None and data.labels is not None:
            self.sampler: EpochSampler | BalancedSampler = BalancedSampler(
                data.labels, len(self.classes), config.batch_size, config.seed,
                self.dist.rank, self.dist.world_size)
        else:
            self.sampler = EpochSampler(len(data), config.batch_size, config.seed,
                                        self.dist.rank, self.dist.world_size)
        self.labels = torch.from_numpy(data.labels) if self.classes is not None else None
        # Fixed noise for sample grids, from its own generator so it never shifts other draws.
        noise_rng = torch.Generator().manual_seed(config.seed + 1)
        self.fixed_z = self.G.sample_latent(config.sample_grid, generator=noise_rng)
        # Conditional: one class per grid row, the same noise down each column.
        self.fixed_y = None
        if self.classes is not None:
            ncol = grid_layout(config.sample_grid, 1, 1)[0]
            self.fixed_z = self.fixed_z[torch.arange(config.sample_grid) % ncol].clone()
            self.fixed_y = grid_labels(config.sample_grid, ncol, len(self.classes))
        self.dist.seed_rank(config.seed, 0)  # ranks >= 1 draw their own latents and noise
        self.knobs = default_knobs()
        self.last_stats: dict[str, float] = {}
        self.autocast_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[
            self.precision]
        # fp16 needs loss scaling (small gradients flush to zero); every optimizer step is
        # followed by one scaler.update(), which GradScaler requires (see _d_pass).
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        # Batch norm in D normalizes with batch statistics: after a D update on joint real+fake
        # batches, a fake-only batch in the G step would be normalized differently and D's
        # verdict would not be the one it was trained to give. Then the G step feeds the
        # joint batch too and uses the fake half.
        self.g_step_joint = config.d_update == "joint" and any(
            isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.D.modules())
        # Non-finite guard: rollbacks lower both learning rates by lr_factor (both are saved
        # in checkpoints and restored).
        self.guard = NonFiniteGuard(self.dist, {"G": self.G, "D": self.D},
                                    {"opt_g": self.opt_g, "opt_d": self.opt_d})
        self.lr_factor = 1.0
        self.rollbacks = 0

    # ------------------------------------------------------------------ pieces
    @property
    def G_ema(self) -> nn.Module | None:
        return self.ema.module if self.ema is not None else None

    def sampling_generator(self) -> nn.Module:
        """The weights used for samples and evaluation: the EMA copy when on."""
        return self.G if self.ema is None else self.ema.calibrated(self.step)

    def notify(self, message: str) -> None:
        """Tell the user something (a rollback, a resume note): the on_message callbacks."""
        for cb in self.callbacks.on_message:
            cb(self, message)

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def real_batch(self, n: int | None = None) -> tuple[Tensor, Tensor | None]:
        """The next real images (the first n) and, in a conditional run, their labels."""
        idx = self.sampler.next_indices()
        x = from_uint8(gather(self.data.images, idx).to(self.device, non_blocking=True))
        p = self.knobs["augment_p"]
        for aug in self.c.augments:
            x = aug(x, p)
        y = self.labels[idx].to(self.device) if self.labels is not None else None
        return (x[:n], y[:n] if y is not None else None) if n else (x, y)

    @staticmethod
    def _g(G: nn.Module, z: Tensor, y: Tensor | None) -> Tensor:
        """G's images; a conditional G also gets the labels (Generator's contract)."""
        return G(z) if y is None else G(z, y=y)

    @staticmethod
    def _d(D: nn.Module, x: Tensor, y: Tensor | None, **kwargs: Any) -> Any:
        """D's output; a conditional D also gets the labels (Discriminator's contract)."""
        return D(x, **kwargs) if y is None else D(x, y=y, **kwargs)

    def _d_input(self, x: Tensor, which: str, augment_fake: bool) -> Tensor:
        """What D sees: 'both'-kind augmentation on fakes, then instance noise."""
        if augment_fake:
            p = self.knobs["augment_p"]
            for aug in self.c.augments:
                if aug.applies_to == "both":
                    x = aug(x, p)
        std = self.knobs[f"noise_std_{which}"]
        if std > 0:
            x = x + std * torch.randn_like(x)
        return x

    def train_state(self, step: int, stats: dict[str, float]) -> TrainState:
        """What schedules see: with a time budget, progress is the share of it spent."""
        if self.budget is None:
            return TrainState(step, self.total_steps, stats)
        self.total_steps = self.budget.projected_steps(step)
        return TrainState(step, self.total_steps, stats, time_fraction=self.budget.fraction())

    def finished(self) -> bool:
        """The run has reached its length: its steps, or its time budget (spent on any rank:
        every rank ends after the same step)."""
        if self.budget is not None:
            return self.dist.any_flag(self.budget.exhausted())
        return self.step >= self.total_steps

    def _set_knobs(self) -> tuple[int, int]:
        """This step's knobs from the schedules, applied to the learning rates; returns the
        number of D updates and the images each of them uses."""
        state = self.train_state(self.step, dict(self.last_stats))
        self.knobs = default_knobs()
        for schedule in self.c.schedules:
            self.knobs.update({k: float(v) for k, v in schedule.values(state).items()})
        if self.c.schedules:  # every rank must take the same number of D steps (no deadlock)
            self.knobs = self.dist.same_knobs(self.knobs)
        for opt, lr, scale in ((self.opt_g, self.config.lr_g, "lr_g_scale"),
                               (self.opt_d, self.config.lr_d, "lr_d_scale")):
            for group in opt.param_groups:
                group["lr"] = lr * self.knobs[scale] * self.lr_factor
        batch = self.sampler.local_batch  # this rank's share of the global batch_size
        frac = min(1.0, max(self.knobs["d_batch_fraction"], 1.0 / batch))
        return max(1, int(round(self.knobs["d_steps"]))), max(1, int(round(batch * frac)))

    # ------------------------------------------------------------------ one step
    def train_step(self) -> dict[str, float]:
        """One generator step: knobs, D update(s), G update, EMA, the non-finite check."""
        G = self.G
        d_steps, n_d = self._set_knobs()
        # Conditional: the fakes take the real batch's labels, so G learns the class mix D
        # sees (the data's, or uniform with --class-balance) and real/fake pairs share labels
        # (gradient penalties interpolate between them).
        real, y = self.real_batch()
        z = G.sample_latent(self.sampler.local_batch, device=self.device)
        with self._autocast():
            # computed once; reused (detached) by D and (attached) by G
            fake = self._g(self.G_train, z, y)
        for k in range(d_steps):
            if k == 0:
                d_real, d_fake = real[:n_d], fake.detach()[:n_d]
                d_y = y[:n_d] if y is not None else None
            else:  # further D updates on new images
                d_real, d_y = self.real_batch(n_d)
                with torch.no_grad(), self._autocast():
                    d_fake = self._g(G, G.sample_latent(n_d, device=self.device), d_y)
            out = self.d_update(d_real, d_fake, d_y)
        loss_g, aux_g = self.g_update(real, fake, y)
        if self.ema is not None:
            self.ema.update(G, self.step)
        self.guard.check_state(self.step + 1)

        stats = {
            "loss_d": out["loss_d"].item(),
            "loss_g": loss_g.item(),
            **d_output_stats(out["real_logits"], out["fake_logits"],
                             self.c.loss.decision_threshold()),
            "d_steps": float(d_steps),
            # Architectures' auxiliary terms (Discriminator.aux_losses, Generator.regularizer).
            **{f"aux_{k}": v.item() for k, v in {**out["aux"], **aux_g}.items()},
        }
        stats = self.dist.mean_stats(stats)  # schedules read the same numbers on every rank
        self.step += 1
        for schedule in self.c.schedules:
            schedule.observe(self.train_state(self.step, stats), stats)
        self.last_stats = stats
        return stats

    def d_update(self, real: Tensor, fake: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        """One D update: one optimizer step per pass of the mode (D_PASSES; see _d_pass). In a
        conditional run, y labels both the real and the fake images."""
        real_in = self._d_input(real, "real", augment_fake=False)
        fake_in = self._d_input(fake, "fake", augment_fake=True)
        losses, logits, aux = [], {}, {}
        for p in D_PASSES[self.config.d_update]:
            loss, seen, terms = self._d_pass(p, real_in, fake_in, y)
            losses.append(loss)
            logits.update(seen)
            aux.update(terms)
        return {"loss_d": sum(losses[1:], losses[0]), **logits, "aux": aux}

    def _d_logits(self, D: nn.Module, x: Tensor, n_real: int, aux: dict[str, Tensor],
                  y: Tensor | None = None) -> Tensor:
        """D's logits on x (float32). A D that declares auxiliary losses computes them on the
        real images (the first n_real of x) in the same forward; they are added to aux."""
        if n_real and self.D.aux_losses:
            logits, terms = self._d(D, x, y, aux=n_real)
            unknown = set(terms) - set(self.D.aux_losses)
            if unknown:
                raise TypeError(f"{type(self.D).__name__} returned auxiliary losses "
                                f"{sorted(unknown)} not named in its aux_losses")
            aux.update(terms)
            return logits.float()
        return self._d(D, x, y).float()

    def _g_logits(self, D: nn.Module, x: Tensor, y: Tensor | None, first_fake: int,
                  terms: dict[str, Tensor]) -> Tensor:
        """D's logits on x (float32) in G's step. A D that declares g_aux_losses computes them
        on the fakes (x[first_fake:]) in the same forward; they are added to terms."""
        if not self.D.g_aux_losses:
            return self._d(D, x, y).float()
        logits, found = self._d(D, x, y, g_aux=first_fake)
        unknown = set(found) - set(self.D.g_aux_losses)
        if unknown:
            raise TypeError(f"{type(self.D).__name__} returned G-step losses {sorted(unknown)} "
                            "not named in its g_aux_losses")
        terms.update(found)
        return logits.float()

    def _d_pass(self, p: DPass, real_in: Tensor, fake_in: Tensor, y: Tensor | None = None
                ) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
        """Forward, the pass's regularizers, the non-finite check, then one scaled backward, one
        step and one scaler update: GradScaler refuses a second step before update()."""
        # D's logits come through the DDP wrapper (gradients averaged over ranks); penalties and
        # R1 call the plain D, whose extra uses of the weights add to the same gradients.
        loss_fn, cfg, D = self.c.loss, self.config, self.D_train
        self.opt_d.zero_grad(set_to_none=True)
        aux: dict[str, Tensor] = {}
        with self._autocast():
            if p.joint:
                both = self._d_logits(D, torch.cat([real_in, fake_in]), len(real_in), aux,
                                      torch.cat([y, y]) if y is not None else None)
                logits = {"real_logits": both[: len(real_in)], "fake_logits": both[len(real_in):]}
            else:
                logits = {}
                if p.real:
                    logits["real_logits"] = self._d_logits(D, real_in, len(real_in), aux, y)
                if p.fake:
                    logits["fake_logits"] = self._d_logits(D, fake_in, 0, aux, y)
            if p.real and p.fake:
                loss = loss_fn.discriminator_loss(logits["real_logits"], logits["fake_logits"],
                                                  cfg.real_label)
            elif p.real:
                loss = loss_fn.real_loss(logits["real_logits"], cfg.real_label)
            else:
                loss = loss_fn.fake_loss(logits["fake_logits"])
            if p.penalty:
                # The penalty mixes real and fake images: one dtype for both (under autocast G's
                # fakes are bf16/fp16, real images float32).
                penalty = loss_fn.penalty(self.D if y is None else LabelBound(self.D, y),
                                          real_in, fake_in.to(real_in.dtype))
                if penalty is not None:
                    loss = loss + penalty
            for term in aux.values():
                loss = loss + term.float()
        unregularized = loss
        if p.r1 and cfg.r1_gamma > 0 and self.step % cfg.r1_every == 0:
            loss = loss + self._r1(real_in, y) * cfg.r1_every
        # fp16: R1 differentiates a scaled output (_r1); when that overflows, R1 is inf and the
        # scaler skips this step and lowers its scale. Not a divergence: R1 goes unchecked then,
        # and unlogged (stats stay finite).
        fp16 = self.scaler.is_enabled()
        self.guard.check_losses(self.step + 1, loss_d=(unregularized if fp16 else loss).detach())
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt_d)
        self.scaler.update()
        if fp16:
            loss = torch.where(torch.isfinite(loss), loss, unregularized)
        return (loss.detach(), {k: v.detach() for k, v in logits.items()},
                {k: v.detach().float() for k, v in aux.items()})

    def _r1(self, real: Tensor, y: Tensor | None = None) -> Tensor:
        """R1 (Mescheder et al. 2018): gamma/2 * E ||grad_x D(x)||^2 on real images."""
        x = real.detach().requires_grad_(True)
        with self._autocast():
            out = self._d(self.D, x, y).float()
        if self.scaler.is_enabled():
            # fp16: differentiate the scaled output so that small input gradients do not flush
            # to zero, then unscale in float32 (PyTorch's AMP recipe for gradient penalties).
            # The mean, like the loss: scaling the sum would give each output the whole scale,
            # 2**16 at first, which is inf in fp16 (max 65504). An overflow still possible
            # makes R1 inf; the scaler then skips the step (see _d_pass).
            (grad,) = torch.autograd.grad(self.scaler.scale(out.mean()), x, create_graph=True)
            grad = grad.float() * (out.numel() / self.scaler.get_scale())
        else:
            (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
        return self.config.r1_gamma / 2 * grad.float().pow(2).flatten(1).sum(1).mean()

    def g_update(self, real: Tensor, fake: Tensor, y: Tensor | None = None
                 ) -> tuple[Tensor, dict[str, Tensor]]:
        """The generator's step through D, frozen so its weights get no gradient (its outputs
        still do); returns G's adversarial loss and the generator's own regularizer terms.
        In a conditional run, y labels both the real and the fake images."""
        D, loss_fn = self.D, self.c.loss
        D.requires_grad_(False)
        try:
            with self._autocast():
                fake_in = self._d_input(fake, "fake", augment_fake=True)
                real_logits = None
                d_terms: dict[str, Tensor] = {}
                if self.g_step_joint:
                    real_in = self._d_input(real, "real", augment_fake=False)
                    both = self._g_logits(D, torch.cat([real_in, fake_in]),
                                          torch.cat([y, y]) if y is not None else None,
                                          len(real_in), d_terms)
                    g_logits, real_logits = both[len(real_in):], both[: len(real_in)].detach()
                else:
                    g_logits = self._g_logits(D, fake_in, y, 0, d_terms)
                    if loss_fn.relativistic:  # its G term compares with D's view of reals
                        with torch.no_grad():
                            real_logits = self._d(D, self._d_input(real, "real",
                                                                   augment_fake=False), y).float()
                if loss_fn.relativistic:
                    loss_g = loss_fn.generator_loss(g_logits, real_logits)
                else:
                    loss_g = loss_fn.generator_loss(g_logits)
                # A conditional generator's terms see the step's labels (keyword: an
                # unconditional plugin's regularizer(step, batch_size) keeps working).
                extra = (self.G.regularizer(self.step, len(fake)) if y is None else
                         self.G.regularizer(self.step, len(fake), y=y))
                extra = {**d_terms, **extra}
            total = loss_g
            for term in extra.values():
                total = total + term.float()
            self.guard.check_losses(self.step + 1, loss_g=total.detach())
            self.opt_g.zero_grad(set_to_none=True)
            self.scaler.scale(total).backward()
            self.scaler.step(self.opt_g)
            self.scaler.update()
        finally:
            D.requires_grad_(True)
        return loss_g, {k: v.detach().float() for k, v in extra.items()}

    # ------------------------------------------------------------------ samples and checkpoints
    @torch.no_grad()
    def sample_fixed(self) -> Tensor:
        g = self.sampling_generator()
        was_training = g.training
        g.eval()
        try:
            ys = self.fixed_y.split(64) if self.fixed_y is not None else [None] * len(
                self.fixed_z.split(64))
            out = torch.cat([self._g(g, z.to(self.device), y if y is None else y.to(self.device))
                             for z, y in zip(self.fixed_z.split(64), ys, strict=True)]).float()
        finally:
            g.train(was_training)
        return out

    def save_samples(self) -> None:
        if self.run is None:
            return
        images = self.sample_fixed()
        path = save_grid(images, self.run.samples_dir / f"step-{self.step:07d}.png")
        save_grid(images, self.run.path / "samples.png")
        for cb in self.callbacks.on_sample:
            cb(self, path)

    def state_tensors(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """What a checkpoint of this moment holds (checkpoint_state.pack)."""
        return checkpoint_state.pack(self)

    def save_checkpoint(self) -> None:
        self.dist.seed_rank(self.config.seed, self.step)  # what a resume from here will draw
        tensors, meta = self.state_tensors()
        check_checkpoint(tensors, self.step)
        if self.config.on_nonfinite == "rollback":
            self.guard.keep((tensors, meta))
        if self.run is None:
            return
        try:
            path = ckpt.save(self.run.step_checkpoint(self.step), tensors, meta)
            self.run.prune(self.config.keep_checkpoints)
        except OSError as exc:  # disk full, read-only: stop; what is on disk stays valid
            raise CheckpointError(
                f"cannot write the checkpoint of step {self.step} in "
                f"{str(self.run.checkpoints_dir)!r}: {exc.strerror or exc}. The checkpoints "
                f"already saved are intact; fix this and continue with `ganzoo train --resume "
                f"{self.run.path}`") from None
        for cb in self.callbacks.on_checkpoint:
            cb(self, path)

    def load_state(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        """Continue from a checkpoint's state. Its checksum is no signature: a stranger's file
        can be well-formed safetensors holding nonsense, which must be an error, not a crash
        (gan_zoo.training.restore checks everything before anything is used)."""
        try:
            self._load_state(tensors, meta)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as exc:
            raise CheckpointError(  # a safety net: restore.check_state should have said why
                f"checkpoint state is incomplete or malformed ({type(exc).__name__}: "
                f"{shown(str(exc))}); cannot resume from it") from None

    def _load_state(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        state = restore.check_state(self, tensors, meta)  # changes nothing; raises first
        restore.load_schedules(self, meta)
        for name, weights in state.modules.items():
            getattr(self, name).load_state_dict(weights)
        for name, opt_state in state.optimizers.items():
            opt = getattr(self, name)  # hyperparameters stay the config's, not the file's
            opt.load_state_dict({"state": opt_state,
                                 "param_groups": opt.state_dict()["param_groups"]})
            _match_layouts(opt)
        torch.set_rng_state(state.rng_torch)
        if state.rng_cuda is not None:
            torch.cuda.set_rng_state(state.rng_cuda, self.device)
        self.dist.seed_rank(self.config.seed, state.step)
        if state.world_size != self.dist.world_size:
            self.notify(f"note: continuing a run of {state.world_size} process(es) with "
                        f"{self.dist.world_size}: same global batch and data order, other noise")
        self.sampler.load_state_dict({**state.sampler, "rng": state.rng_sampler})
        self.fixed_z = state.fixed_z
        if state.scaler is not None:
            self.scaler.load_state_dict(state.scaler)
        self.last_stats = state.last_stats
        self.lr_factor, self.rollbacks, self.step = state.lr_factor, state.rollbacks, state.step
        if self.budget is not None:  # the budget continues where the checkpoint left it
            self.budget = TimeBudget(self.config.time_budget or 0.0, self.config.budget_clock,
                                     spent=state.budget_spent)

    # ------------------------------------------------------------------ the loop
    def _install_signal_handlers(self) -> list:
        if threading.current_thread() is not threading.main_thread():
            return []

        def handler(signum, frame):  # finish the step, save, exit cleanly
            self._stop_signal = signum

        return [(sig, signal.signal(sig, handler)) for sig in (signal.SIGINT, signal.SIGTERM)]

    def train(self) -> dict[str, Any]:
        """Run to total_steps or the time budget (or a stop); callbacks watch (callbacks.py)."""
        cfg, run = self.config, self.run
        previous = self._install_signal_handlers()
        self.started = t_last = time.perf_counter()
        imgs = 0
        try:
            self.G.train()
            self.D.train()
            if cfg.on_nonfinite == "rollback" and self.guard.good_state is None:
                self.guard.keep(self.state_tensors())
            if self.budget is not None:
                self.budget.start()
            charged = self.budget.paused if self.budget is not None else contextlib.nullcontext
            done = self.finished()
            while not done and self.stop_reason is None:
                try:
                    # A copy: timing added for the log must not enter last_stats, which
                    # schedules read and checkpoints keep (it would break determinism).
                    stats = dict(self.train_step())
                except NonFiniteError as exc:
                    self.guard.roll_back(self, exc)
                    continue
                imgs += cfg.batch_size
                done = self.finished()  # the last step is always logged
                if self.step % cfg.log_every == 0 or done:
                    now = time.perf_counter()
                    stats["img_per_s"] = imgs / max(now - t_last, 1e-9)
                    t_last, imgs = now, 0
                    if run is not None:
                        run.log({"step": self.step, "epoch": self.sampler.epoch, **stats,
                                 **{f"knob.{k}": v for k, v in self.knobs.items()},
                                 "time": round(now - self.started, 3)})
                with charged():  # evaluation and plots are not training time
                    for cb in self.callbacks.on_step:
                        cb(self, stats)
                if self.step % cfg.sample_every == 0:
                    self.save_samples()
                if self.step % cfg.checkpoint_every == 0:
                    try:
                        self.save_checkpoint()
                    except NonFiniteError as exc:
                        self.guard.roll_back(self, exc)
                        continue
                if self._stop_signal is not None:
                    self.stop_reason = signal.Signals(self._stop_signal).name
                # Every rank stops after the same step (a signal may reach them apart).
                self.stop_reason = self.dist.agree_stop(self.stop_reason)
            if self.budget is not None and self.stop_reason is None:
                self.total_steps = self.step  # the budget is spent: this was the last step
            self.dist.sync_buffers(self.G, self.D, self.G_ema)  # rank 0's BN statistics
            if run is not None and self.step > 0:
                if self.step % cfg.sample_every:
                    self.save_samples()
                if self.step % cfg.checkpoint_every:
                    self.save_checkpoint()
            for cb in self.callbacks.on_end:
                cb(self)
        except RuntimeError as exc:
            if self.dist.active and distributed.is_comm_error(exc):
                raise self.dist.lost(exc) from None  # one message, not a traceback or a hang
            raise
        finally:
            for sig, old in previous:
                signal.signal(sig, old)
        return {"step": self.step, "total_steps": self.total_steps, "stopped": self.stop_reason,
                "seconds": time.perf_counter() - self.started, "last": self.last_stats}


class LabelBound(nn.Module):
    """A conditional D seen as an unconditional one, for code that calls ``D(x)``
    (Loss.penalty): every batch it sees is labelled y (real and fake images share labels)."""

    def __init__(self, discriminator: nn.Module, y: Tensor):
        super().__init__()
        self.discriminator, self.y = discriminator, y

    def forward(self, x: Tensor) -> Tensor:
        if len(x) % len(self.y):
            raise ValueError(f"a conditional D was called on {len(x)} images with "
                             f"{len(self.y)} labels")
        return self.discriminator(x, y=self.y.repeat(len(x) // len(self.y)))


def _check_conditional(arch: str, G: nn.Module, D: nn.Module, n: int) -> None:
    """An architecture declaring conditional must build modules that know the classes."""
    for what, module in (("generator", G), ("discriminator", D)):
        if getattr(module, "num_classes", 0) != n:
            raise TypeError(f"{arch} declares conditional = True but its {what} has "
                            f"num_classes {getattr(module, 'num_classes', 0)}, not {n}")
