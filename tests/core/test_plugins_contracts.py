"""gan_zoo.testing's contract checks: each one passes a well-behaved component and catches the
broken promise it is for (a contract check that cannot fail would prove nothing)."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch
import torch.nn.functional as F
from pydantic import ConfigDict, Field
from torch import Tensor, nn

from gan_zoo import (
    Architecture,
    Augmentation,
    Discriminator,
    Generator,
    Loss,
    Metric,
    Options,
    Schedule,
)
from gan_zoo.testing import ContractError, check_component, registered_plugin

# --------------------------------------------------------------------------- architectures


class MLPGenerator(Generator):
    def __init__(self, latent: int = 8, res: int = 8, squash: bool = True):
        super().__init__()
        self.latent_dim, self.resolution, self.channels = latent, res, 3
        self.fc = nn.Linear(latent, 3 * res * res)
        self.squash = squash

    def forward(self, z: Tensor) -> Tensor:
        x = self.fc(z).view(-1, 3, self.resolution, self.resolution)
        return torch.tanh(x) if self.squash else x


class MLPDiscriminator(Discriminator):
    def __init__(self, res: int = 8, flat: bool = True):
        super().__init__()
        self.resolution, self.channels = res, 3
        self.fc = nn.Linear(3 * res * res, 1)
        self.flat = flat

    def forward(self, x: Tensor) -> Tensor:
        out = self.fc(x.flatten(1))
        return out.squeeze(1) if self.flat else out


class Tiny(Architecture):
    """A tiny MLP GAN at 8x8."""

    name = "tiny-mlp"

    @property
    def resolution(self) -> int:
        return 8

    def build_generator(self) -> Generator:
        return MLPGenerator()

    def build_discriminator(self) -> Discriminator:
        return MLPDiscriminator()


class Unbounded(Tiny):
    """G without tanh."""

    name = "unbounded"

    def build_generator(self) -> Generator:
        return MLPGenerator(squash=False)


class ColumnLogits(Tiny):
    """D returns (N, 1)."""

    name = "column-logits"

    def build_discriminator(self) -> Discriminator:
        return MLPDiscriminator(flat=False)


class CountingGenerator(MLPGenerator):
    """Its output depends on a call counter that is not in the state dict."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, z: Tensor) -> Tensor:
        self.calls += 1
        return torch.tanh(self.fc(z).view(-1, 3, 8, 8) * (1 + 0.1 * self.calls))


class ForgetfulArch(Tiny):
    """G with state that checkpoints do not save."""

    name = "forgetful"

    def build_generator(self) -> Generator:
        return CountingGenerator()


def test_architecture_contract_passes_a_good_one():
    with registered_plugin(Tiny):
        check_component("arch", "tiny-mlp")


@pytest.mark.parametrize(("cls", "message"), [
    (Unbounded, "in [-1, 1]"),
    (ColumnLogits, "finite logits of shape"),
    (ForgetfulArch, "some state is not saved"),
], ids=["range", "logit-shape", "unsaved-state"])
def test_architecture_contract_catches(cls, message):
    with registered_plugin(cls), pytest.raises(ContractError, match=message.replace("[", r"\[")):
        check_component("arch", cls.name)


class LabelledMLPGenerator(MLPGenerator):
    def __init__(self, num_classes: int, use_labels: bool = True):
        super().__init__()
        self.num_classes, self.use_labels = num_classes, use_labels
        self.embed = nn.Embedding(max(num_classes, 1), 8) if num_classes else None

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        if self.embed is not None and self.use_labels:
            z = z + self.embed(y)
        return super().forward(z)


class LabelledMLPDiscriminator(MLPDiscriminator):
    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.embed = nn.Embedding(num_classes, 1) if num_classes else None

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        out = super().forward(x)
        return out if self.embed is None else out + self.embed(y).squeeze(1)


class TinyConditional(Tiny):
    """A class-conditional tiny MLP GAN."""

    name = "tiny-conditional"
    conditional = True
    use_labels: ClassVar[bool] = True

    def build_generator(self) -> Generator:
        return LabelledMLPGenerator(self.num_classes, self.use_labels)

    def build_discriminator(self) -> Discriminator:
        return LabelledMLPDiscriminator(self.num_classes)


class DeafConditional(TinyConditional):
    """Declares conditional, but G ignores the labels."""

    name = "deaf-conditional"
    use_labels = False


class NoClassesConditional(TinyConditional):
    """Declares conditional, but its modules never learn the number of classes."""

    name = "no-classes-conditional"

    def build_generator(self) -> Generator:
        return LabelledMLPGenerator(0)


def test_conditional_architecture_contract_passes_a_good_one():
    with registered_plugin(TinyConditional):
        check_component("arch", "tiny-conditional")


@pytest.mark.parametrize(("cls", "message"), [
    (DeafConditional, "the class label must change G's images"),
    (NoClassesConditional, "G and D must have num_classes 3"),
], ids=["ignores-labels", "no-num-classes"])
def test_conditional_architecture_contract_catches(cls, message):
    with registered_plugin(cls), pytest.raises(ContractError, match=message):
        check_component("arch", cls.name)


class NoPsiGenerator(MLPGenerator):
    truncation = "mapping"  # claims a mapping network, but forward takes no truncation_psi


class NoPsiArch(Tiny):
    """Declares mapping truncation without supporting it."""

    name = "no-psi"

    def build_generator(self) -> Generator:
        return NoPsiGenerator()


def test_a_mapping_generator_must_take_truncation_psi():
    with registered_plugin(NoPsiArch), pytest.raises(ContractError, match="truncation_psi"):
        check_component("arch", "no-psi")


def test_architecture_training_checks_need_registration():
    with pytest.raises(ContractError, match="must be registered"):
        check_component(Tiny)


# --------------------------------------------------------------------------- losses


class GoodLoss(Loss):
    """Softplus loss."""

    name = "good-loss"

    def real_loss(self, real_logits: Tensor, real_target: float = 1.0) -> Tensor:
        return F.softplus(-real_logits).mean()

    def fake_loss(self, fake_logits: Tensor) -> Tensor:
        return F.softplus(fake_logits).mean()

    def generator_loss(self, fake_logits: Tensor) -> Tensor:
        return F.softplus(-fake_logits).mean()


class PerSample(GoodLoss):
    """Forgets the mean."""

    name = "per-sample"

    def fake_loss(self, fake_logits: Tensor) -> Tensor:
        return F.softplus(fake_logits)


class Detached(GoodLoss):
    """Computes G's loss outside autograd."""

    name = "detached"

    def generator_loss(self, fake_logits: Tensor) -> Tensor:
        return F.softplus(-fake_logits.detach()).mean()


class NoGradPenalty(GoodLoss):
    """A penalty that does not reach D's weights."""

    name = "no-grad-penalty"

    def penalty(self, discriminator: nn.Module, real: Tensor, fake: Tensor) -> Tensor | None:
        return real.pow(2).mean().requires_grad_(True)


def test_loss_contract_passes_a_good_one():
    check_component(GoodLoss)


@pytest.mark.parametrize(("cls", "message"), [
    (PerSample, "fake_loss must return a 0-dim tensor"),
    (Detached, "generator_loss has no gradient"),
    (NoGradPenalty, "penalty does not depend on its inputs"),
], ids=["not-scalar", "no-gradient", "penalty"])
def test_loss_contract_catches(cls, message):
    with pytest.raises(ContractError, match=message):
        check_component(cls)


# --------------------------------------------------------------------------- schedules


class Ramp(Schedule):
    """Counts observed steps; D's learning-rate factor follows the count."""

    name = "ramp"
    knobs: ClassVar[tuple[str, ...]] = ("lr_d_scale",)

    def __init__(self, options: Options | None = None):
        super().__init__(options)
        self.seen = 0

    def values(self, state: Any) -> dict[str, float]:
        return {"lr_d_scale": 1.0 + 0.01 * self.seen}

    def observe(self, state: Any, stats: dict[str, float]) -> None:
        self.seen += 1

    def state_dict(self) -> dict[str, Any]:
        return {"seen": self.seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seen = state["seen"]


class Amnesic(Ramp):
    """Does not save its counter."""

    name = "amnesic"

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class Undeclared(Ramp):
    """Sets a knob it does not declare."""

    name = "undeclared"

    def values(self, state: Any) -> dict[str, float]:
        return {"lr_d_scale": 1.0, "d_steps": 2.0}


class TensorState(Ramp):
    """Keeps a tensor in its state."""

    name = "tensor-state"

    def state_dict(self) -> dict[str, Any]:
        return {"seen": torch.tensor(self.seen)}


class UnknownKnob(Ramp):
    """Declares a knob that does not exist."""

    name = "unknown-knob"
    knobs: ClassVar[tuple[str, ...]] = ("lr_scale",)


def test_schedule_contract_passes_a_good_one():
    check_component(Ramp)


@pytest.mark.parametrize(("cls", "message"), [
    (Amnesic, "missing from state_dict"),
    (Undeclared, "undeclared knob"),
    (TensorState, "not JSON-serializable"),
    (UnknownKnob, "unknown knob 'lr_scale'"),
], ids=["state-not-saved", "undeclared-knob", "not-json", "unknown-knob"])
def test_schedule_contract_catches(cls, message):
    with pytest.raises(ContractError, match=message):
        check_component(cls)


# --------------------------------------------------------------------------- augmentations


class Flip(Augmentation):
    """Horizontal flip of a random half of the images."""

    name = "flip"
    applies_to = "both"

    def __call__(self, images: Tensor, p: float = 1.0) -> Tensor:
        mask = (torch.rand(images.shape[0], 1, 1, 1) < 0.5 * p).to(images.dtype)
        return mask * images.flip(3) + (1 - mask) * images


class InPlace(Flip):
    """Flips into its input."""

    name = "in-place"

    def __call__(self, images: Tensor, p: float = 1.0) -> Tensor:
        images[:] = images.flip(3) if p > 0 else images
        return images


class IgnoresP(Flip):
    """Always flips."""

    name = "ignores-p"

    def __call__(self, images: Tensor, p: float = 1.0) -> Tensor:
        return images.flip(3)


class Cuts(Flip):
    """Detaches, so fakes get no gradient."""

    name = "cuts"

    def __call__(self, images: Tensor, p: float = 1.0) -> Tensor:
        return super().__call__(images.detach(), p) if p > 0 else images


class Brightens(Flip):
    """Leaves the [-1, 1] range."""

    name = "brightens"
    applies_to = "real"

    def __call__(self, images: Tensor, p: float = 1.0) -> Tensor:
        return images + 0.5 if p > 0 else images


def test_augmentation_contract_passes_a_good_one():
    check_component(Flip)


@pytest.mark.parametrize(("cls", "message"), [
    (InPlace, "modified its input in place"),
    (IgnoresP, "p=0"),
    (Cuts, "gradients do not reach"),
    (Brightens, "stay in"),
], ids=["in-place", "ignores-p", "no-gradient", "range"])
def test_augmentation_contract_catches(cls, message):
    with pytest.raises(ContractError, match=message):
        check_component(cls)


# --------------------------------------------------------------------------- options, metrics


class LooseOptions(Options):
    model_config = ConfigDict(extra="allow")
    gain: float = Field(1.0, description="a gain")


class Undescribed(Options):
    gain: float = 1.0


class Required(Options):
    gain: float = Field(description="a gain with no default")


def _loss_with(options: type[Options], name: str, doc: str | None = "A loss.") -> type[Loss]:
    return type(name.title(), (GoodLoss,), {"name": name, "Options": options, "__doc__": doc})


class MeanGap(Metric):
    """Distance between the mean feature of generated and real images."""

    name = "mean-gap"

    def evaluate(self, context: Any) -> dict[str, float]:
        fx = context.extractor("pixels")
        real = context.real_stats(fx).mu if hasattr(context, "real_stats") else None
        z = context.generator.sample_latent(32, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            images = ((context.generator(z) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        fake = fx.extract(images.permute(0, 2, 3, 1).numpy()).mean(0)
        return {"mean-gap": float(((fake - real) ** 2).sum()), "n": 32.0}


def _metric(name: str, evaluate: Any) -> type[Metric]:
    return type(name.title(), (MeanGap,), {"__doc__": "A broken metric.", "name": name,
                                           "evaluate": evaluate})


def test_metric_contract_passes_a_good_one():
    check_component(MeanGap)


@pytest.mark.parametrize(("cls", "message"), [
    (_metric("misnamed", lambda self, c: {"n": 1.0}), "with the key 'misnamed'"),
    (_metric("nan-metric", lambda self, c: {"nan-metric": float("nan")}), "non-finite"),
    (_metric("noisy", lambda self, c: {"noisy": float(torch.rand(1))}), "different numbers"),
], ids=["headline-key", "nan", "not-reproducible"])
def test_metric_contract_catches(cls, message):
    with pytest.raises(ContractError, match=message):
        check_component(cls)


@pytest.mark.parametrize(("cls", "message"), [
    (_loss_with(LooseOptions, "loose"), "forbid unknown fields"),
    (_loss_with(Undescribed, "undescribed"), "without a description: gain"),
    (_loss_with(Required, "required"), "with defaults is invalid"),
    (_loss_with(Options, "Bad Name"), "invalid component name"),
    (_loss_with(Options, "nodoc", doc=None), "has no docstring"),
], ids=["extra-allowed", "undescribed", "required-field", "bad-name", "no-docstring"])
def test_options_contract_catches(cls, message):
    with pytest.raises(ContractError, match=message):
        check_component(cls)
