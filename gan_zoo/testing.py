"""Test helpers for plugin authors: register a plugin in-process, and run the component contracts.

    from gan_zoo.testing import check_component, registered_plugin
    import my_plugin

    def test_my_components():
        with registered_plugin(my_plugin, name="my-plugin") as info:
            for kind, name in info.components:
                check_component(kind, name)

With pytest, ``pytest_plugins = ["gan_zoo.testing"]`` in a conftest.py adds the fixture
``ganzoo_plugin``: ``ganzoo_plugin(module_or_object_or_classes, name=...)`` registers a plugin
for the duration of one test. Each ``check_*`` function raises ContractError (an
AssertionError) naming the component and the broken promise; docs/plugins.md lists the
contracts. They run on a CPU in about a second per component: set ``contract_options`` on a
component class (for example ``{"width": 8}``) to make its contract checks cheap.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError
from torch import Tensor, nn

from . import hookspecs
from .interfaces import (
    KINDS,
    Architecture,
    Augmentation,
    Component,
    Discriminator,
    Generator,
    Loss,
    Metric,
    Schedule,
    TrainState,
)
from .kinds import HOOK_KINDS, KIND_TABLE
from .options import Options, validate_options
from .plugins import PluginInfo, get_registry, plugin_system
from .registry import check_name
from .training import checkpoint as ckpt
from .training.knobs import KNOBS, check_knob_owners

__all__ = [
    "ContractError",
    "check_architecture",
    "check_augmentation",
    "check_component",
    "check_loss",
    "check_metric",
    "check_options",
    "check_schedule",
    "contract_cases",
    "metric_context",
    "plugin_of",
    "registered_plugin",
]


class ContractError(AssertionError):
    """A component breaks one of the promises in docs/plugins.md."""


def _fail(cls: type, message: str) -> ContractError:
    return ContractError(f"{getattr(cls, 'name', '') or cls.__qualname__}: {message}")


# --------------------------------------------------------------------------- registration


def plugin_of(*classes: type[Component]) -> object:
    """A plugin object whose register_* hooks register the given component classes."""
    by_kind: dict[str, list[type[Component]]] = {}
    for cls in classes:
        by_kind.setdefault(cls.kind, []).append(cls)
    hooks: dict[str, Callable[..., None]] = {}
    for hook_name, kind in HOOK_KINDS.items():
        if kind in by_kind:

            def impl(register: Callable[[type], None], _classes=tuple(by_kind[kind])) -> None:
                for c in _classes:
                    register(c)

            impl.__name__ = hook_name
            hooks[hook_name] = hookspecs.hookimpl(impl)
    return type("InProcessPlugin", (), {k: staticmethod(v) for k, v in hooks.items()})()


@contextlib.contextmanager
def registered_plugin(
    plugin: object, name: str = "test-plugin", distribution: str | None = None,
    version: str | None = None,
) -> Iterator[PluginInfo]:
    """Register a plugin (a module, an object with hook methods, or a component class or a list
    of them) in the process-wide registry for the duration of the block.

    Inside, its components work by name everywhere: ``api.train``, the CLI through click's
    CliRunner, ``ganzoo list``. A name collision or a failing hook raises at once. An installed
    third-party plugin of the same name (the package under test, after ``pip install -e``) is
    set aside for the block and put back after it."""
    if isinstance(plugin, type) and issubclass(plugin, Component):
        plugin = plugin_of(plugin)
    elif isinstance(plugin, list | tuple):
        plugin = plugin_of(*plugin)
    system = plugin_system()
    held = system.infos.get(name)
    # The same package pip-installed (loaded or failed) is set aside for the block, so a
    # plugin's own tests run unchanged from a checkout and after `pip install -e`.
    restore = system.set_aside(name) if held is not None and held.installed else None
    try:
        info = system.add_plugin(plugin, name, distribution, version)
        try:
            yield info
        finally:
            system.remove_plugin(name)
    finally:
        if restore is not None:
            restore()


def _fixture() -> Any:
    """The `ganzoo_plugin` pytest fixture, defined only when pytest is importable."""
    import pytest

    @pytest.fixture
    def ganzoo_plugin() -> Iterator[Callable[..., PluginInfo]]:
        """Factory: ganzoo_plugin(plugin, name=..., distribution=..., version=...) registers a
        plugin until the end of the test."""
        with contextlib.ExitStack() as stack:
            counter = iter(range(1_000_000))

            def add(plugin: object, name: str | None = None, distribution: str | None = None,
                    version: str | None = None) -> PluginInfo:
                return stack.enter_context(registered_plugin(
                    plugin, name or f"test-plugin-{next(counter)}", distribution, version))

            yield add

    return ganzoo_plugin


with contextlib.suppress(ImportError):  # pytest is a test dependency, not a run-time one
    ganzoo_plugin = _fixture()


# --------------------------------------------------------------------------- contracts


def contract_cases(kind: str | None = None) -> list[tuple[str, str]]:
    """(kind, name) of every registered component, for ``pytest.mark.parametrize``."""
    return [(e.kind, e.name) for e in get_registry().entries(kind)]


def _resolve(kind_or_cls: str | type[Component], name: str | None) -> type[Component]:
    if isinstance(kind_or_cls, str):
        if name is None:
            raise TypeError("pass (kind, name) or a component class")
        return get_registry().get(kind_or_cls, name)
    return kind_or_cls


def check_component(kind_or_cls: str | type[Component], name: str | None = None,
                    options: dict[str, Any] | None = None) -> None:
    """Run every contract that applies to a component: its options, then its kind's checks."""
    cls = _resolve(kind_or_cls, name)
    check_options(cls)
    checks = _kind_checks()
    if cls.kind not in checks:
        raise _fail(cls, f"kind {cls.kind!r} is not one of {', '.join(KINDS)}")
    checks[cls.kind](cls, options)


def _kind_checks() -> dict[str, Callable[..., None]]:
    """Kind -> its contract check, check_<title> (check_architecture, ...): one per row of the
    kinds table (a new row without its check fails here and in tests/core/test_registry.py)."""
    return {kind.name: globals()[f"check_{kind.title}"] for kind in KIND_TABLE}


def _build(cls: type[Component], options: dict[str, Any] | None) -> Component:
    values = dict(cls.contract_options if options is None else options)
    try:
        return cls(validate_options(cls.Options, values, cls.name))
    except Exception as exc:
        raise _fail(cls, f"cannot be built with options {values}: {exc}") from exc


def check_options(cls: type[Component]) -> None:
    """Naming rules, a summary line, and an options model that forbids unknown fields, describes
    every field, builds with its defaults and round-trips through JSON (configs, checkpoints)."""
    try:
        check_name(cls.name)
    except ValueError as exc:
        raise _fail(cls, str(exc)) from None
    if not cls.summary():
        raise _fail(cls, "has no docstring; its first line is what `ganzoo list` shows")
    model = cls.Options
    if not (isinstance(model, type) and issubclass(model, Options)):
        raise _fail(cls, "Options must subclass gan_zoo.Options")
    if model.model_config.get("extra") != "forbid":
        raise _fail(cls, "Options must forbid unknown fields (extra='forbid')")
    field = "surely_not_an_option_of_any_component"
    try:
        model(**{field: 1})
    except ValidationError as exc:
        if not any(e["type"] == "extra_forbidden" for e in exc.errors()):
            raise _fail(cls, f"an unknown field gave an unexpected error: {exc}") from None
    else:
        raise _fail(cls, f"Options accepted the unknown field {field!r}")
    undocumented = [n for n, f in model.model_fields.items() if not (f.description or "").strip()]
    if undocumented:
        raise _fail(cls, f"options without a description: {', '.join(undocumented)}")
    try:
        default = model()
    except ValidationError as exc:
        raise _fail(cls, f"Options() with defaults is invalid (every field needs a default so "
                         f"the component works by name alone): {exc}") from None
    dumped = json.loads(json.dumps(default.model_dump(mode="json")))
    if model(**dumped) != default:
        raise _fail(cls, "options do not survive a JSON round trip (config.toml, checkpoints)")
    if cls.contract_options:
        _build(cls, None)


# ------------------------------------------------------------------- architectures


def _tiny_images(n: int, resolution: int, seed: int = 0, classes: int = 0):
    from .data.folders import ImageArray

    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, resolution, resolution, 3), dtype=np.uint8)
    if not classes:
        return ImageArray(images, "contract-test")
    return ImageArray(images, "contract-test", labels=np.arange(n, dtype=np.int64) % classes,
                      classes=tuple(f"class{i}" for i in range(classes)))


def _trainer(name: str, options: dict[str, Any], resolution: int, classes: int = 0):
    from .training.assembly import build_components
    from .training.config import make_config
    from .training.trainer import Trainer

    cfg = make_config({"arch": name, "batch_size": 4, "steps": 4, "device": "cpu",
                       "options": {name: options} if options else {}, "sample_grid": 4,
                       "ema_decay": 0.9, "checkpoint_every": 1000, "sample_every": 1000,
                       "conditional": bool(classes)})
    trainer = Trainer(cfg, build_components(cfg), _tiny_images(8, resolution, classes=classes),
                      None)
    if trainer.ema is not None:  # the EMA's batch-norm calibration still runs, on fewer images
        trainer.ema.norm_batches, trainer.ema.norm_batch_size = 2, 8
    return trainer


def _same(a: dict[str, Tensor], b: dict[str, Tensor]) -> list[str]:
    """Names whose tensors differ in presence, dtype, shape or any bit."""
    return sorted(k for k in set(a) | set(b) if k not in a or k not in b
                  or a[k].dtype != b[k].dtype or not torch.equal(a[k], b[k]))


def check_architecture(cls: type[Architecture], options: dict[str, Any] | None = None) -> None:
    """Shapes, ranges and attributes of G and D; one training step changes both and stays
    finite; a checkpoint restores every tensor bit for bit, and training continues identically.

    The class must be registered (run it inside ``registered_plugin`` for your own)."""
    opts = dict(cls.contract_options if options is None else options)
    arch = _build(cls, opts)
    assert isinstance(arch, Architecture)
    res, ch = arch.resolution, arch.channels
    if not (isinstance(res, int) and res >= 4):
        raise _fail(cls, f"resolution must be an int >= 4, got {res!r}")
    G, D = arch.build_generator(), arch.build_discriminator()
    if not isinstance(G, Generator) or not isinstance(D, Discriminator):
        raise _fail(cls, "build_generator/build_discriminator must return gan_zoo.Generator and "
                         "gan_zoo.Discriminator modules")
    if (G.resolution, G.channels, D.resolution, D.channels) != (res, ch, res, ch):
        raise _fail(cls, f"G/D resolution and channels ({G.resolution}, {G.channels}, "
                         f"{D.resolution}, {D.channels}) must match the architecture's "
                         f"({res}, {ch})")
    z = G.sample_latent(3, generator=torch.Generator().manual_seed(0))
    z2 = G.sample_latent(3, generator=torch.Generator().manual_seed(0))
    if z.shape != (3, G.latent_dim) or not torch.equal(z, z2):
        raise _fail(cls, f"sample_latent(3) must give a seeded (3, {G.latent_dim}) tensor, "
                         f"got {tuple(z.shape)}")
    for mode in ("train", "eval"):
        G.train(mode == "train")
        D.train(mode == "train")
        n = 3 if mode == "train" else 1  # sampling one image must work
        with torch.no_grad():
            x = G(G.sample_latent(n) * 10)  # large latents must still land in range
            logits = D(x)
        if x.shape != (n, ch, res, res):
            raise _fail(cls, f"G ({mode} mode) gave shape {tuple(x.shape)}, expected "
                             f"{(n, ch, res, res)}")
        if not torch.isfinite(x).all() or x.min() < -1 or x.max() > 1:
            raise _fail(cls, f"G ({mode} mode) output must be finite and in [-1, 1], got "
                             f"[{x.min().item():.3g}, {x.max().item():.3g}]")
        if logits.shape != (n,) or not torch.isfinite(logits).all():
            raise _fail(cls, f"D ({mode} mode) must return {n} finite logits of shape ({n},), "
                             f"got {tuple(logits.shape)}")
    if getattr(G, "truncation", "latent") == "mapping":
        _check_mapping_truncation(cls, G)
    if cls.conditional:
        _check_conditional(cls, opts, G, D)
    if ch != 3:
        return  # the data pipeline feeds RGB; the training checks need RGB images
    _check_training_and_resume(cls, arch.name, opts, res)
    if cls.conditional:
        _check_training_and_resume(cls, arch.name, opts, res, classes=3)


def _check_mapping_truncation(cls: type[Architecture], G: Generator) -> None:
    """A generator with truncation = "mapping" truncates itself (docs/plugins.md): forward takes
    the keyword truncation_psi, gives in-range images, and psi = 1 is no truncation at all."""
    G.eval()
    z = G.sample_latent(2, generator=torch.Generator().manual_seed(0))
    try:
        with torch.no_grad():
            plain, same, cut = G(z), G(z, truncation_psi=1.0), G(z, truncation_psi=0.5)
    except TypeError as exc:
        raise _fail(cls, f"declares truncation = 'mapping' but forward does not take the "
                         f"keyword truncation_psi ({exc})") from None
    if cut.shape != plain.shape or not torch.isfinite(cut).all() or cut.abs().max() > 1:
        raise _fail(cls, "G(z, truncation_psi=0.5) must give finite images in [-1, 1] of the "
                         "same shape as G(z)")
    if not torch.equal(plain, same):
        raise _fail(cls, "G(z, truncation_psi=1.0) must equal G(z): psi = 1 is no truncation")


def _check_conditional(cls: type[Architecture], opts: dict[str, Any], G_plain: Generator,
                       D_plain: Discriminator) -> None:
    """A conditional architecture (docs/plugins.md): with num_classes set, G(z, y=labels) and
    D(x, y=labels) take the labels and the class changes both outputs; without, the modules are
    the unconditional ones (its parameters decide which checkpoints load)."""
    arch = _build(cls, opts)
    arch.num_classes = 3
    G, D = arch.build_generator(), arch.build_discriminator()
    if (G.num_classes, D.num_classes) != (3, 3):
        raise _fail(cls, f"with num_classes = 3 set on the architecture, G and D must have "
                         f"num_classes 3, got {G.num_classes} and {D.num_classes}")
    if G_plain.num_classes or D_plain.num_classes:
        raise _fail(cls, "an unconditional build (num_classes 0) must give num_classes 0 modules")
    for plain, labelled in ((G_plain, G), (D_plain, D)):
        plain.train(), labelled.train()
    torch.manual_seed(0)
    for m in (G, D):  # fresh class parameters may start equal for all classes (gain 1, bias 0)
        for name, p in m.named_parameters():
            if "embed" in name or "gain" in name or "bias" in name or "proj" in name:
                with torch.no_grad():
                    p.add_(torch.randn_like(p) * 0.1)
    z = G.sample_latent(2, generator=torch.Generator().manual_seed(0))
    y_a, y_b = torch.tensor([0, 1]), torch.tensor([2, 2])
    with torch.no_grad():
        xa, xb = G(z, y=y_a), G(z, y=y_b)
        la, lb = D(xa, y=y_a), D(xa, y=y_b)
    res, ch = G_plain.resolution, G_plain.channels
    if xa.shape != (2, ch, res, res) or la.shape != (2,):
        raise _fail(cls, f"G(z, y=labels) gave {tuple(xa.shape)} and D(x, y=labels) "
                         f"{tuple(la.shape)}, expected {(2, ch, res, res)} and (2,)")
    if torch.equal(xa, xb) or torch.equal(la, lb):
        raise _fail(cls, "the class label must change G's images and D's logits")
    if D.aux_losses:
        with torch.no_grad():
            out = D(xa, y=y_a, aux=1)
        if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict)
                and out[0].shape == (2,)):
            raise _fail(cls, "D(x, y=labels, aux=n) must return (logits of shape (N,), "
                             "{name: loss})")


def _check_training_and_resume(cls: type, name: str, opts: dict[str, Any], res: int,
                               classes: int = 0) -> None:
    if name not in get_registry().names("arch") or get_registry().get("arch", name) is not cls:
        raise _fail(cls, "must be registered for the training checks; wrap the call in "
                         "gan_zoo.testing.registered_plugin(...)")
    tr = _trainer(name, opts, res, classes)
    before_g = {k: v.clone() for k, v in tr.G.state_dict().items()}
    before_d = {k: v.clone() for k, v in tr.D.state_dict().items()}
    stats = tr.train_step()
    if not all(math.isfinite(v) for v in stats.values()):
        raise _fail(cls, f"one training step gave non-finite statistics {stats}")
    for label, module, before in (("G", tr.G, before_g), ("D", tr.D, before_d)):
        if not _same(before, module.state_dict()):
            raise _fail(cls, f"one training step did not change {label}'s weights")
    tensors, meta = tr.state_tensors()
    with tempfile.TemporaryDirectory() as tmp:
        path = ckpt.save(Path(tmp) / "contract.safetensors", tensors, meta)
        loaded, loaded_meta = ckpt.load(path)
    tr2 = _trainer(name, opts, res, classes)
    tr2.load_state(loaded, loaded_meta)
    differ = _same(tensors, tr2.state_tensors()[0])
    if differ:
        raise _fail(cls, f"checkpoint round trip changed {', '.join(differ[:5])}")
    # Both continue from the saved random state (the global torch generator is shared).
    rng = torch.get_rng_state()
    tr.train_step()
    torch.set_rng_state(rng)
    tr2.train_step()
    for label in ("G", "D"):
        differ = _same(getattr(tr, label).state_dict(), getattr(tr2, label).state_dict())
        if differ:
            raise _fail(cls, f"a step after resuming differs from the uninterrupted one in "
                             f"{label}.{differ[0]}: some state is not saved (buffers? "
                             "non-parameter attributes?)")


# ------------------------------------------------------------------- losses


class _TinyD(nn.Module):
    """A small discriminator for checking loss penalties."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, 2, 1)
        self.fc = nn.Linear(4 * 4 * 4, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(torch.tanh(self.conv(x)), 1)).squeeze(1)


def _scalar(cls: type, what: str, out: object, wrt: list[Tensor]) -> None:
    if not isinstance(out, Tensor) or out.dim() != 0:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise _fail(cls, f"{what} must return a 0-dim tensor, got {shape}")
    if not torch.isfinite(out):
        raise _fail(cls, f"{what} returned {out.item()}")
    if not out.requires_grad:
        raise _fail(cls, f"{what} has no gradient (computed outside autograd?)")
    grads = torch.autograd.grad(out, wrt, allow_unused=True, retain_graph=True)
    if all(g is None for g in grads):
        raise _fail(cls, f"{what} does not depend on its inputs")
    if not all(g is None or torch.isfinite(g).all() for g in grads):
        raise _fail(cls, f"{what} has non-finite gradients")
    if all(g is None or not g.any() for g in grads):
        raise _fail(cls, f"{what} has all-zero gradients on spread-out logits")


def check_loss(cls: type[Loss], options: dict[str, Any] | None = None) -> None:
    """Every term is a finite scalar with finite, non-zero gradients (for a relativistic loss:
    discriminator_loss and generator_loss(fake, real_logits)); a penalty is None or a finite
    scalar with gradients into D's weights; the decision threshold is a finite number."""
    loss = _build(cls, options)
    assert isinstance(loss, Loss)
    real = torch.linspace(-3, 3, 8).requires_grad_(True)
    fake = torch.linspace(-2.5, 3.5, 8).requires_grad_(True)
    if loss.relativistic:  # its terms exist only for real and fake together
        _scalar(cls, "generator_loss", loss.generator_loss(fake, real.detach()), [fake])
        _scalar(cls, "discriminator_loss with real_target=0.9",
                loss.discriminator_loss(real, fake, 0.9), [real, fake])
    else:
        _scalar(cls, "real_loss", loss.real_loss(real, 1.0), [real])
        _scalar(cls, "real_loss with real_target=0.9", loss.real_loss(real, 0.9), [real])
        _scalar(cls, "fake_loss", loss.fake_loss(fake), [fake])
        _scalar(cls, "generator_loss", loss.generator_loss(fake), [fake])
    _scalar(cls, "discriminator_loss", loss.discriminator_loss(real, fake, 1.0), [real, fake])
    torch.manual_seed(0)
    D = _TinyD()
    x_real = torch.rand(4, 3, 8, 8) * 2 - 1
    x_fake = (torch.rand(4, 3, 8, 8) * 2 - 1).requires_grad_(True)
    penalty = loss.penalty(D, x_real, x_fake)
    if penalty is not None:
        _scalar(cls, "penalty", penalty, list(D.parameters()))
    threshold = loss.decision_threshold()
    assert isinstance(threshold, float | int) and math.isfinite(threshold), (
        f"{cls.__name__}.decision_threshold() must be a finite number, got {threshold!r}")


# ------------------------------------------------------------------- schedules


def _fake_stats(rng: random.Random) -> dict[str, float]:
    d_real, d_fake = rng.uniform(0.2, 0.95), rng.uniform(0.05, 0.8)
    return {"loss_d": rng.uniform(0.1, 2.0), "loss_g": rng.uniform(0.3, 4.0), "d_real": d_real,
            "d_fake": d_fake, "d_acc": rng.uniform(0.3, 1.0), "d_steps": 1.0}


def check_schedule(cls: type[Schedule], options: dict[str, Any] | None = None,
                   steps: int = 40) -> None:
    """Declared knobs exist; values() returns finite numbers for declared knobs only; the state
    survives JSON, and a schedule restored half-way continues exactly like the original."""
    first = _build(cls, options)
    assert isinstance(first, Schedule)
    try:
        check_knob_owners([first])
    except Exception as exc:
        raise _fail(cls, str(exc)) from None
    if not first.knobs:
        raise _fail(cls, f"declares no knobs; set knobs = (...) from {', '.join(KNOBS)}")

    def step(s: Schedule, i: int, stats: dict[str, float], last: dict[str, float]) -> dict:
        values = s.values(TrainState(i, steps, dict(last)))
        if not isinstance(values, dict):
            raise _fail(cls, f"values() must return a dict, got {type(values).__name__}")
        stray = set(values) - set(s.knobs)
        if stray:
            raise _fail(cls, f"values() sets undeclared knob(s) {sorted(stray)}; declare them in "
                             "knobs so conflicts between schedules are caught")
        out = {}
        for k, v in values.items():
            try:
                out[k] = float(v)
            except (TypeError, ValueError):
                raise _fail(cls, f"knob {k} = {v!r} is not a number") from None
            if not math.isfinite(out[k]):
                raise _fail(cls, f"knob {k} = {v!r} at step {i}")
        s.observe(TrainState(i + 1, steps, stats), stats)
        return out

    rng = random.Random(0)
    stream = [_fake_stats(rng) for _ in range(steps)]
    last: dict[str, float] = {}
    half = steps // 2
    for i in range(half):
        step(first, i, stream[i], last)
        last = stream[i]
    state = first.state_dict()
    try:
        text = json.dumps(state)
    except (TypeError, ValueError) as exc:
        raise _fail(cls, f"state_dict() is not JSON-serializable: {exc}") from None
    second = _build(cls, options)
    assert isinstance(second, Schedule)
    second.load_state_dict(json.loads(text))
    for i in range(half, steps):
        a, b = step(first, i, stream[i], last), step(second, i, stream[i], last)
        if a != b:
            raise _fail(cls, f"after restoring state_dict() at step {half}, step {i} gives {b} "
                             f"instead of {a}: some state is missing from state_dict()")
        last = stream[i]
    if json.dumps(first.state_dict(), sort_keys=True) != json.dumps(second.state_dict(),
                                                                   sort_keys=True):
        raise _fail(cls, "restored and original schedules end with different state_dict()")


# ------------------------------------------------------------------- augmentations


def check_augmentation(cls: type[Augmentation], options: dict[str, Any] | None = None,
                       resolution: int = 32) -> None:
    """Keeps shape, dtype and the [-1, 1] range; p=0 changes nothing; the input is not
    modified; the same seed gives the same output; 'both' augmentations pass gradients."""
    aug = _build(cls, options)
    assert isinstance(aug, Augmentation)
    if cls.applies_to not in ("real", "both"):
        raise _fail(cls, f"applies_to must be 'real' or 'both', got {cls.applies_to!r}")
    torch.manual_seed(0)
    x = torch.rand(6, 3, resolution, resolution) * 2 - 1
    original = x.clone()
    torch.manual_seed(1)
    y = aug(x, 1.0)
    if not torch.equal(x, original):
        raise _fail(cls, "modified its input in place")
    if not isinstance(y, Tensor) or y.shape != x.shape or y.dtype != x.dtype:
        raise _fail(cls, f"must keep shape and dtype {tuple(x.shape)} {x.dtype}")
    if not torch.isfinite(y).all() or y.min() < -1 - 1e-5 or y.max() > 1 + 1e-5:
        raise _fail(cls, f"output must stay in [-1, 1], got [{y.min().item():.3g}, "
                         f"{y.max().item():.3g}]")
    torch.manual_seed(1)
    if not torch.equal(aug(x, 1.0), y):
        raise _fail(cls, "is not reproducible: the same torch seed gave different outputs")
    if not torch.equal(aug(x, 0.0), x):
        raise _fail(cls, "with p=0 (augment_p knob) the images must pass unchanged")
    if cls.applies_to == "both":
        xg = x.clone().requires_grad_(True)
        torch.manual_seed(1)
        out = aug(xg, 1.0)
        if out.requires_grad:
            (out * torch.linspace(-1, 1, x.numel()).view_as(x)).sum().backward()
        if xg.grad is None or not torch.isfinite(xg.grad).all() or not xg.grad.any():
            raise _fail(cls, "applies_to='both' but gradients do not reach the generator's "
                             "images")


# ------------------------------------------------------------------- metrics


class _ContractGenerator(Generator):
    """A small random generator with varied outputs, for evaluating metrics."""

    def __init__(self, resolution: int) -> None:
        super().__init__()
        self.latent_dim, self.resolution, self.channels = 16, resolution, 3
        self.fc = nn.Linear(16, 3 * 4 * 4)

    def forward(self, z: Tensor) -> Tensor:
        x = torch.tanh(self.fc(z)).view(-1, 3, 4, 4)
        return torch.nn.functional.interpolate(x, size=(self.resolution,) * 2, mode="bilinear",
                                               align_corners=False).clamp(-1, 1)


def metric_context(n_real: int = 200, resolution: int = 16, seed: int = 0) -> Any:
    """A small offline evaluation context for metric checks: a random generator, ``n_real``
    random smooth reference images and, for every feature space a metric asks for, a cheap
    12-feature extractor standing in for Inception (no weights, no cache on disk)."""
    from .evaluation import ArraySource, EvalContext, FeatureExtractor

    class Pooled(FeatureExtractor):
        name, dim = "contract-pooled", 12

        def forward(self, x: Tensor) -> Tensor:
            pooled = torch.nn.functional.adaptive_avg_pool2d(x / 255.0, 2).flatten(1)
            return pooled + 0.1 * pooled**2

    rng = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = _ContractGenerator(resolution).eval()
    base = torch.rand(n_real, 3, 4, 4, generator=rng)
    real = torch.nn.functional.interpolate(base, size=(resolution,) * 2, mode="bilinear",
                                           align_corners=False)
    real_u8 = (real * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    extractor = Pooled(workers=1)
    return EvalContext(generator, ArraySource(real_u8, "contract"), cache=None, batch_size=64,
                       seed=seed, extractor_factory=lambda *a, **k: extractor)


def check_metric(cls: type[Metric], options: dict[str, Any] | None = None,
                 context: Any = None) -> None:
    """Builds from its options and declares its direction; evaluate() on a context (by default
    metric_context(): offline, a stand-in feature extractor) returns finite numbers with the
    headline under the metric's name, the same numbers twice for the same seed."""
    metric = _build(cls, options)
    assert isinstance(metric, Metric)
    if not isinstance(cls.higher_is_better, bool):
        raise _fail(cls, "higher_is_better must be True or False")
    own = context is None
    if own:
        try:
            context = metric_context()
        except ImportError:  # pragma: no cover - no evaluation engine in this gan-zoo
            return
    prepare = getattr(metric, "prepare", None)
    if prepare is not None:
        prepare(context)
    result = metric.evaluate(context)
    if not isinstance(result, dict) or cls.name not in result:
        raise _fail(cls, f"evaluate() must return a dict with the key {cls.name!r}")
    bad = {k: v for k, v in result.items() if not isinstance(v, int | float)
           or not math.isfinite(float(v))}
    if bad:
        raise _fail(cls, f"evaluate() returned non-finite or non-numeric values {bad}")
    if own and metric.evaluate(metric_context()) != result:
        raise _fail(cls, "evaluate() gave different numbers for the same seed and images")
