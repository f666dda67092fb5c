"""The component interfaces every plugin implements.

The kinds of component are listed in gan_zoo.kinds: architectures (a generator/discriminator
pair), losses, schedules, augmentations and metrics. Each is a class with a global ``name``, an ``Options``
pydantic model (extra fields forbidden, every field described) and is built from validated
options. See docs/plugins.md for the full contracts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from .kinds import KIND_TITLES as KIND_TITLES  # re-exported: plugins import them from here
from .kinds import KINDS as KINDS
from .options import NoOptions, Options


class Component:
    """Base of all components: a registered name, an options model, validated options."""

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""
    Options: ClassVar[type[Options]] = NoOptions
    # Small option values for the contract tests (gan_zoo.testing), e.g. {"width": 8} so an
    # architecture's checks run in a second on a CPU; never used for training.
    contract_options: ClassVar[dict[str, Any]] = {}

    def __init__(self, options: Options | None = None):
        if options is None:
            options = self.Options()
        elif not isinstance(options, self.Options):
            raise TypeError(f"{self.name}: expected {self.Options.__name__}, got {options!r}")
        self.options = options

    @classmethod
    def summary(cls) -> str:
        """First line of the class docstring, shown by `ganzoo list`."""
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


# --------------------------------------------------------------------------- architectures


class Generator(nn.Module, ABC):
    """Maps latent vectors (N, latent_dim) to images (N, channels, resolution, resolution) in [-1, 1].

    A conditional generator (built with ``num_classes`` >= 2, see Architecture.conditional) is
    called ``G(z, y=labels)`` with int64 labels of shape (N,); an unconditional one ``G(z)``.
    """

    latent_dim: int
    resolution: int
    channels: int
    num_classes: int = 0  # 0: unconditional
    # How `ganzoo sample --truncation PSI` (PSI in (0, 1], 1 = off) truncates this generator
    # (gan_zoo.sampling). "latent": the engine draws z from the standard normal truncated to
    # |z_i| <= 2 PSI (components outside redrawn), so PSI -> 0 gives the mean latent 0 and
    # PSI = 1 is no truncation at all (not a bound of 2): the default changes no image. For the
    # default standard-normal prior only: with sample_latent overridden, psi < 1 is refused.
    # "mapping": the generator has a mapping network and truncates itself: forward takes a
    # keyword ``truncation_psi`` (default 1.0) and pulls w toward its tracked mean (StyleGAN).
    truncation: ClassVar[Literal["latent", "mapping"]] = "latent"

    @abstractmethod
    def forward(self, z: Tensor) -> Tensor: ...

    def sample_latent(
        self, n: int, *, generator: torch.Generator | None = None, device: Any = None
    ) -> Tensor:
        """Standard normal latents; override for other priors."""
        return torch.randn(n, self.latent_dim, generator=generator, device=device)

    def regularizer(self, step: int, batch_size: int, *, y: Tensor | None = None
                    ) -> dict[str, Tensor]:
        """Extra terms this generator adds to G's loss (StyleGAN2's path-length penalty).

        Called in every G step after the adversarial loss, under the run's autocast, with the
        0-based step index and the step's batch size (and, for a conditional generator only,
        ``y=``: the labels of the step's fake images, for terms that draw images of their
        own); returns ``{name: 0-dim tensor}``, already
        weighted (scale a lazy term by its interval), or ``{}`` on steps it skips. The engine
        adds them to G's loss and logs each as ``aux_<name>``. State it keeps (a running mean)
        must live in buffers so resume is exact. Default: no terms.
        """
        return {}


class Discriminator(nn.Module, ABC):
    """Maps images (N, channels, resolution, resolution) in [-1, 1] to one logit each, shape (N,).

    A conditional discriminator (``num_classes`` >= 2) is called ``D(x, y=labels)``, also with
    ``aux=n`` when it declares auxiliary losses; an unconditional one ``D(x)``.
    """

    resolution: int
    channels: int
    num_classes: int = 0  # 0: unconditional
    # Names of auxiliary losses this D computes on real images (FastGAN's reconstruction
    # decoders). When non-empty, D's updates call ``forward(x, aux=n)``, the first n images of
    # x being real, and forward returns ``(logits, {name: 0-dim loss})``; the engine adds the
    # losses to D's loss and logs each as ``aux_<name>``. Every other call is ``forward(x)``.
    aux_losses: ClassVar[tuple[str, ...]] = ()
    # Names of auxiliary losses this D computes for G's step on G's fakes (ACGAN's classifier:
    # the fakes should be classified as the class they were drawn for). When non-empty, G's
    # step calls ``forward(x, g_aux=k)`` (with ``y=`` when conditional), the images x[k:] being
    # G's fakes (k = 0, or the number of reals before them in a joint batch), and forward
    # returns ``(logits, {name: 0-dim loss})``; the engine adds the losses to G's loss and logs
    # each as ``aux_<name>``. Names must differ from aux_losses' (both are logged).
    g_aux_losses: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def forward(self, x: Tensor) -> Tensor: ...


class Architecture(Component):
    """A generator/discriminator pair at one resolution."""

    kind: ClassVar[str] = "arch"
    # Class-conditional runs (--conditional): an architecture that can take the class declares
    # conditional = True. The engine then sets num_classes (>= 2) on the instance before it
    # calls build_generator/build_discriminator, whose modules take the labels (see Generator
    # and Discriminator). Unconditional runs leave num_classes 0: the modules must then be
    # exactly the unconditional ones (same parameters), so old checkpoints keep loading.
    conditional: ClassVar[bool] = False
    num_classes: int = 0

    @property
    @abstractmethod
    def resolution(self) -> int: ...

    @property
    def channels(self) -> int:
        return 3

    @abstractmethod
    def build_generator(self) -> Generator: ...

    @abstractmethod
    def build_discriminator(self) -> Discriminator: ...


# --------------------------------------------------------------------------- losses


class Loss(Component):
    """An adversarial objective on discriminator logits, as a real term plus a fake term.

    ``real_target`` is the label for real images (1.0, or e.g. 0.9 with one-sided label
    smoothing); losses for which labels mean nothing (hinge, wgan) may ignore it. Each term is
    a mean over its batch so a real-only or fake-only update is well defined.
    """

    kind: ClassVar[str] = "loss"
    # Relativistic losses (Jolicoeur-Martineau 2019) compare real and fake logits of the same
    # step: then G's step also runs D on the step's real images and passes their logits as
    # generator_loss(fake_logits, real_logits), and D's terms are only used together
    # (discriminator_loss), so --d-update alternating is refused.
    relativistic: ClassVar[bool] = False

    @abstractmethod
    def real_loss(self, real_logits: Tensor, real_target: float = 1.0) -> Tensor:
        """D's loss on real images (scalar)."""

    @abstractmethod
    def fake_loss(self, fake_logits: Tensor) -> Tensor:
        """D's loss on generated images (scalar)."""

    @abstractmethod
    def generator_loss(self, fake_logits: Tensor, real_logits: Tensor | None = None) -> Tensor:
        """G's loss given D's logits on generated images (scalar). ``real_logits`` (D's
        logits on the step's real images, no gradient) is passed only to relativistic losses;
        other losses may leave the parameter out."""

    def discriminator_loss(
        self, real_logits: Tensor, fake_logits: Tensor, real_target: float = 1.0
    ) -> Tensor:
        return self.real_loss(real_logits, real_target) + self.fake_loss(fake_logits)

    def penalty(self, discriminator: nn.Module, real: Tensor, fake: Tensor) -> Tensor | None:
        """An extra discriminator term (for example a gradient penalty); None when there is none."""
        return None

    def decision_threshold(self) -> float:
        """D's output above which it calls an image real, for the logged `d_acc` and
        `d_real_sign`: 0 for losses on logits or scores (bce, hinge, wgan); a loss with other
        targets overrides it (lsgan: half way between its fake and real targets)."""
        return 0.0


# --------------------------------------------------------------------------- schedules


@dataclass
class TrainState:
    """What a schedule can read: progress and the latest step statistics.

    ``step`` is the 0-based index of the step about to run (in ``values``) or the number of
    steps done (in ``observe``); ``total_steps`` is the run's length. In a run with a time
    budget (``--minutes``), ``time_fraction`` is the share of the budget spent and
    ``total_steps`` a projection from the pace so far.
    """

    step: int
    total_steps: int
    stats: dict[str, float] = field(default_factory=dict)
    time_fraction: float | None = None

    @property
    def progress(self) -> float:
        """Where ``step`` lies in the run, in [0, 1]: step / (total_steps - 1), so the first
        step sees 0 and the last sees exactly 1 (a schedule annealing to 0 ends at 0); after
        the last step (``observe``) it stays 1. A one-step run's only step is its last: 1.
        With a time budget: the share of it spent."""
        if self.time_fraction is not None:
            return min(1.0, max(0.0, self.time_fraction))
        if self.total_steps <= 1:
            return 1.0
        return min(1.0, max(0.0, self.step / (self.total_steps - 1)))


class Schedule(Component):
    """Sets training knobs every step from the training state.

    ``knobs`` names the knobs this schedule drives (see gan_zoo.training.knobs.KNOBS); two schedules
    driving the same knob is an error at start. ``state_dict`` must be JSON-serializable: it is
    saved in checkpoints so a resumed run continues bit for bit.
    """

    kind: ClassVar[str] = "schedule"
    knobs: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def values(self, state: TrainState) -> dict[str, float]:
        """The knob values for the step about to run."""

    def observe(self, state: TrainState, stats: dict[str, float]) -> None:  # noqa: B027
        """Called after each step with its statistics (loss_d, loss_g, d_real, d_fake, ...)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027
        """Restore what state_dict returned."""


# --------------------------------------------------------------------------- augmentations


class Augmentation(Component):
    """Transforms a batch of images in [-1, 1], keeping shape and range.

    ``applies_to`` is "real" (only real images, as classic augmentation does) or "both"
    (real and fake, which must then be differentiable so gradients reach the generator).
    ``p`` is the probability knob (``augment_p``) for schedules that adapt it.
    """

    kind: ClassVar[str] = "augment"
    applies_to: ClassVar[Literal["real", "both"]] = "real"

    @abstractmethod
    def __call__(self, images: Tensor, p: float = 1.0) -> Tensor: ...


# --------------------------------------------------------------------------- metrics


class Metric(Component):
    """A quality number for a generator against real images.

    ``evaluate`` returns a dict whose key ``name`` is the headline value; other keys are extras
    (for example the number of samples used). ``higher_is_better`` tells early stopping which way
    improvement goes.
    """

    kind: ClassVar[str] = "metric"
    higher_is_better: ClassVar[bool] = False

    @abstractmethod
    def evaluate(self, context: Any) -> dict[str, float]: ...

    def prepare(self, context: Any) -> None:  # noqa: B027
        """Called once before training with --eval-every: load models now, so missing weights
        fail at the start instead of at the first evaluation (context: an EvalContext)."""
