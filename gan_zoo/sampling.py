"""Latents for the sampling tools: truncation (`--truncation PSI`) and latent walks (`--interpolate K`).

This module draws latents and turns them into images; writing them (a grid, an array, a folder,
an animation) is gan_zoo.data.sample_output's. Truncation trades variety for fidelity: images
from latents near the centre of the prior are the ones a GAN renders best. How a generator is
truncated is its class attribute ``truncation`` (gan_zoo.interfaces.Generator):

* ``"latent"`` (the default): z is drawn from the standard normal truncated to
  |z_i| <= 2 psi. The plain draw comes first (the same numbers as without truncation), then
  every component outside the bound is redrawn inside it, vectorized, until none is left
  outside; components already inside keep their values, so a truncated image is its
  untruncated one pulled toward the centre. psi = 1 is no truncation at all -- the plain draw,
  the same images as without the option -- not a bound of 2; psi -> 0 gives the mean latent 0.
  Why this scale: psi then reads as StyleGAN's does (1 all the variety, 0 one mean image, in
  between the trade), and 2 standard deviations at the top keeps the step at psi = 1 small
  (a bound of 2 moves 4.6% of the components; psi = 0.5 moves 32%, psi = 0.25 62%), while
  psi = 1 itself must change no image, so that the default leaves every seed's images as they
  were.
* ``"mapping"``: the generator truncates itself. Its forward takes ``truncation_psi`` and pulls
  its intermediate latent w toward a tracked mean (StyleGAN: w_avg + psi (w - w_avg)); z is the
  plain draw of ``sample_latent``.

The redraw samples the normal restricted to [-b, b] by rejection from a uniform proposal on
[-b, b], accepted with probability exp(-u^2 / 2): the same distribution as redrawing from the
normal until |z_i| <= b (Brock et al. 2019's truncation trick), but at least 60% of proposals
are accepted for every b <= 2, so a batch takes about 10-20 rounds whatever psi is, where
redrawing from the normal itself would take 60 draws per component at psi = 0.01 and a
billion at psi = 1e-9.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .data.classes import ClassInfo
from .errors import UsageError
from .interfaces import Generator
from .util.textsafe import shown

LATENT_BOUND = 2.0  # |z_i| <= LATENT_BOUND * psi for "latent" truncation with psi < 1
MODES = ("latent", "mapping")
MIN_WALK_LATENTS = 2


def check_psi(psi: Any, *, allow_zero: bool = False) -> float:
    """psi as a float, or one UsageError: a number in (0, 1] (1 = no truncation). allow_zero
    also takes 0 (one mean image for every latent), for pictures of the trade."""
    ok = isinstance(psi, numbers.Real) and not isinstance(psi, bool) and not math.isnan(psi)
    if not ok or not (0 <= psi <= 1) or (psi == 0 and not allow_zero):
        low = "[0, 1]" if allow_zero else "(0, 1]"
        raise UsageError(f"--truncation {shown(psi, 40)}: use a number in {low}: 1 is no "
                         "truncation (the default), smaller values trade variety for fidelity")
    return float(psi)


def truncation_mode(generator: Generator) -> str:
    """The generator's declared truncation, "latent" or "mapping" (one UsageError otherwise)."""
    mode = getattr(generator, "truncation", "latent")
    if mode not in MODES:
        raise UsageError(f"{shown(type(generator).__name__)} declares truncation = "
                         f"{shown(str(mode), 40)}; a generator declares 'latent' or 'mapping' "
                         "(docs/plugins.md)")
    return mode


def check_truncation(generator: Generator, psi: Any) -> float:
    """psi, checked, for this generator: refuses psi < 1 on a "latent" generator that draws its
    own latents (it overrides sample_latent: another prior, which gan-zoo cannot truncate)."""
    psi = check_psi(psi)
    _check_prior(generator, psi)
    return psi


def _check_prior(generator: Generator, psi: float) -> None:
    if psi < 1 and truncation_mode(generator) == "latent" and (
            type(generator).sample_latent is not Generator.sample_latent):
        raise UsageError(
            f"--truncation {psi:g}: {shown(type(generator).__name__)} draws its own latents (it "
            "overrides sample_latent), so gan-zoo cannot truncate them; its plugin can support "
            "truncation by declaring truncation = 'mapping' and truncating in "
            "forward(z, truncation_psi=...)")


def truncated_normal(n: int, dim: int, psi: float = 1.0, *,
                     generator: torch.Generator | None = None) -> Tensor:
    """(n, dim) float32 latents, standard normal truncated to |z_i| <= 2 psi (module docstring),
    on the CPU, the same for the same generator state. psi = 1: exactly
    torch.randn(n, dim, generator=generator); psi = 0: zeros."""
    psi = check_psi(psi, allow_zero=True)
    z = torch.randn(n, dim, generator=generator)
    if psi == 1:
        return z
    bound = LATENT_BOUND * psi
    flat = z.view(-1)
    todo = torch.nonzero(flat.abs() > bound).squeeze(1)
    while todo.numel():  # each round redraws every component still outside, at once
        u = (torch.rand(todo.numel(), generator=generator) * 2 - 1) * bound
        accept = torch.rand(todo.numel(), generator=generator) < torch.exp(-0.5 * u * u)
        flat[todo[accept]] = u[accept]
        todo = todo[~accept]
    return z


def draw_latents(generator: Generator, n: int, psi: float = 1.0,
                 rng: torch.Generator | None = None) -> Tensor:
    """n latents of `generator` for truncation psi, drawn from `rng` on the CPU: its own
    sample_latent at psi = 1 or for a "mapping" generator, else truncated_normal. psi may be
    0 here (the mean latent), as in images_for."""
    psi = check_psi(psi, allow_zero=True)
    if psi == 1 or truncation_mode(generator) == "mapping":
        return generator.sample_latent(n, generator=rng)
    _check_prior(generator, psi)
    return truncated_normal(n, generator.latent_dim, psi, generator=rng)


def images_for(generator: Generator, z: Tensor, psi: float = 1.0, *,
               y: Tensor | None = None) -> Tensor:
    """The generator's images for latents z (drawn by draw_latents for the same psi):
    G(z), or G(z, truncation_psi=psi) for a "mapping" generator with psi < 1. `y` (class
    labels of a conditional generator), when given, is passed as G(z, y=y). psi may be 0 here
    (the mean image), for pictures of the trade; the command line and gan_zoo.api take (0, 1].
    Runs in the caller's grad mode and autocast."""
    psi = check_psi(psi, allow_zero=True)
    kwargs: dict[str, Any] = {}
    if psi != 1 and truncation_mode(generator) == "mapping":
        kwargs["truncation_psi"] = psi
    if y is not None:
        kwargs["y"] = y
    return generator(z, **kwargs)


def class_indices(generator: Generator, chosen: Sequence[str | int] | None) -> list[int] | None:
    """`--class` values (names, or indices as text or int) as class indices of a conditional
    generator; None when none are chosen. One UsageError for an unconditional generator or an
    unknown class (with a did-you-mean)."""
    if not chosen:
        return None
    names = getattr(generator, "class_names", None)
    if not getattr(generator, "num_classes", 0):
        raise UsageError("--class: this generator is unconditional (trained without "
                         "--conditional), it has no classes")
    if names is None:  # a conditional generator built without a checkpoint's class names
        names = tuple(str(i) for i in range(generator.num_classes))
    counts = getattr(generator, "class_counts", None) or (0,) * len(names)
    info = ClassInfo(tuple(names), tuple(counts))
    return [c if isinstance(c, int) and 0 <= c < len(info) else info.index(str(c))
            for c in chosen]


def draw_labels(generator: Generator, n: int, rng: torch.Generator | None = None,
                classes: Sequence[int] | None = None, start: int = 0) -> Tensor | None:
    """Labels of n images of a conditional generator (None for an unconditional one): the
    chosen classes in turn (image i of the stream, counted from `start`, gets
    classes[i % len(classes)]), else drawn from rng as training drew them: by each class's
    share of the training images (the generator's class_counts), uniformly if unknown."""
    k = getattr(generator, "num_classes", 0)
    if not k:
        return None
    if classes:
        order = torch.tensor(list(classes), dtype=torch.long)
        return order[(torch.arange(n) + start) % len(order)]
    counts = getattr(generator, "class_counts", None)
    probs = torch.tensor(counts, dtype=torch.float64) if counts and sum(counts) > 0 \
        else torch.ones(k, dtype=torch.float64)
    return torch.multinomial(probs, n, replacement=True, generator=rng)


def slerp(a: Tensor, b: Tensor, t: Tensor | float) -> Tensor:
    """Spherical interpolation from a (t = 0) to b (t = 1), over the last dimension: the
    direction moves along the great circle from a's to b's at constant speed and the length
    goes linearly from |a| to |b|, so a walk between normal latents (lengths near sqrt(dim))
    stays where the prior has its mass instead of cutting through the low-norm middle as a
    straight line does. t broadcasts against the leading dimensions; t = 0 and t = 1 give a
    and b exactly. Parallel or zero vectors (and antipodal ones, which have no single great
    circle) fall back to the straight line. Computed in float64, returned in a's dtype."""
    t64 = torch.as_tensor(t, dtype=torch.float64)
    a64, b64 = a.double(), b.double()
    tt = t64[..., None]
    na, nb = a64.norm(dim=-1, keepdim=True), b64.norm(dim=-1, keepdim=True)
    ua, ub = a64 / na.clamp_min(1e-30), b64 / nb.clamp_min(1e-30)
    omega = torch.arccos((ua * ub).sum(-1, keepdim=True).clamp(-1.0, 1.0))
    sin = torch.sin(omega)
    direction = (torch.sin((1 - tt) * omega) * ua + torch.sin(tt * omega) * ub) / sin
    curved = ((1 - tt) * na + tt * nb) * direction
    straight = (1 - tt) * a64 + tt * b64
    flat = (sin < 1e-6) | (na == 0) | (nb == 0)
    out = torch.where(flat, straight, curved)
    out = torch.where(tt == 0, a64, torch.where(tt == 1, b64, out))
    return out.to(a.dtype)


def walk_latents(keys: Tensor, frames: int) -> Tensor:
    """A closed walk through the K latents `keys` (K, D): K segments key i -> key i+1 (the
    last back to the first), `frames` latents each at t = 0, 1/frames, ..., so that frame
    i * frames is key i exactly and the walk loops without a repeated frame. (K * frames, D)."""
    if keys.shape[0] < MIN_WALK_LATENTS:
        raise UsageError(f"a walk needs at least {MIN_WALK_LATENTS} latents, not {keys.shape[0]}")
    k = keys.shape[0]
    t = (torch.arange(frames, dtype=torch.float64) / frames).repeat(k)
    start = keys.repeat_interleave(frames, 0)
    end = keys.roll(-1, 0).repeat_interleave(frames, 0)
    return slerp(start, end, t)
