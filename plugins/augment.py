"""Built-in augmentations, done on whole batches as tensors (no per-image PIL work).

* ``classic`` -- the aircraft seed's Albumentations pipeline on real images only: horizontal
  flip (p = 0.5), translation +-5%, rotation +-10 degrees, scale +-5%, as one affine resampling.
* ``diffaugment`` -- DiffAugment (Zhao et al. 2020): colour, translation and cutout applied to
  real and fake batches alike and differentiable, so G is trained through it and D never sees a
  distribution only real images have (the "leak" of real-only augmentation).

Random numbers come from torch's global generator (saved in checkpoints), always the same count
per batch whatever ``p`` is, so runs are reproducible and resumable bit for bit.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import Tensor

import gan_zoo
from gan_zoo import Augmentation, Options


def _uniform(n: int, low: float, high: float, like: Tensor) -> Tensor:
    return low + (high - low) * torch.rand(n, device=like.device, dtype=torch.float32)


def _chosen(n: int, p: float, like: Tensor) -> Tensor:
    """Per-image Bernoulli(p) selection, shape (n, 1, 1, 1); always draws n numbers."""
    return (torch.rand(n, device=like.device) < p).view(n, 1, 1, 1)


# --------------------------------------------------------------------------- classic


class ClassicOptions(Options):
    flip: float = Field(0.5, ge=0, le=1, description="probability of a horizontal flip")
    translate: float = Field(
        0.05, ge=0, le=0.5, description="largest shift, as a fraction of the side, each axis")
    rotate: float = Field(10.0, ge=0, le=180, description="largest rotation in degrees")
    scale: float = Field(0.05, ge=0, lt=1, description="largest relative zoom in or out")
    padding: Literal["reflection", "border", "zeros"] = Field(
        "reflection", description="what fills pixels moved in from outside (Albumentations' "
        "default is reflection)")


class Classic(Augmentation):
    """The aircraft seed's flip, shift, rotation and zoom, on real images only."""

    name = "classic"
    Options = ClassicOptions
    applies_to = "real"

    def __call__(self, images: Tensor, p: float = 1.0) -> Tensor:
        o, n = self.options, len(images)
        if n == 0:
            return images
        angle = _uniform(n, -o.rotate, o.rotate, images) * (math.pi / 180)
        zoom = _uniform(n, 1 - o.scale, 1 + o.scale, images)
        shift = _uniform(2 * n, -o.translate, o.translate, images).view(n, 2) * 2  # [-1,1] units
        flip = torch.rand(n, device=images.device) < o.flip
        # affine_grid maps each output pixel to where it is read from, so build the inverse of
        # "flip, zoom, rotate, shift": x_in = F R(-a) / zoom (x_out - shift).
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        rot = torch.stack([torch.stack([cos, sin], 1), torch.stack([-sin, cos], 1)], 1)  # (n,2,2)
        sign = torch.where(flip, -1.0, 1.0).to(rot)
        rot = rot * torch.stack([sign, torch.ones_like(sign)], 1).view(n, 2, 1)
        theta = torch.cat([rot, -(rot @ shift.unsqueeze(2))], 2)
        grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
        out = F.grid_sample(images, grid, mode="bilinear", padding_mode=o.padding,
                            align_corners=False)
        # Bilinear weights are convex, so the range holds up to rounding; clamp that away.
        out = out.clamp(-1, 1)
        return torch.where(_chosen(n, p, images), out, images)


# --------------------------------------------------------------------------- diffaugment

DIFF_OPS = ("color", "translation", "cutout")


class DiffAugmentOptions(Options):
    policy: list[str] = Field(
        ["color", "translation", "cutout"], min_length=1,
        description="operations in order, from: color, translation, cutout")
    translation: float = Field(
        0.125, ge=0, le=0.5, description="largest shift as a fraction of the side (paper: 1/8)")
    cutout: float = Field(
        0.5, gt=0, le=1, description="side of the zeroed square as a fraction of the image "
        "(paper: 1/2)")
    clamp: bool = Field(
        True, description="clip colour changes back into [-1, 1] (the paper does not; the "
        "augmentation contract keeps the range)")

    @field_validator("policy")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [v for v in value if v not in DIFF_OPS]
        if unknown:
            raise ValueError(f"unknown operation {unknown[0]!r}; choose from {', '.join(DIFF_OPS)}")
        return value


def _color(x: Tensor) -> Tensor:
    n = len(x)
    brightness = _uniform(n, -0.5, 0.5, x).view(n, 1, 1, 1).to(x.dtype)
    x = x + brightness
    saturation = _uniform(n, 0.0, 2.0, x).view(n, 1, 1, 1).to(x.dtype)
    mean_c = x.mean(dim=1, keepdim=True)
    x = (x - mean_c) * saturation + mean_c
    contrast = _uniform(n, 0.5, 1.5, x).view(n, 1, 1, 1).to(x.dtype)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * contrast + mean


def _translate(x: Tensor, ratio: float) -> Tensor:
    """Shift each image by whole pixels, zeros coming in; indexing keeps it differentiable."""
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (n, 1), device=x.device)
    dx = torch.randint(-sw, sw + 1, (n, 1), device=x.device)
    ys = torch.arange(h, device=x.device).view(1, h) - dy  # (n, h): source row of each row
    xs = torch.arange(w, device=x.device).view(1, w) - dx
    valid = ((ys >= 0) & (ys < h)).view(n, 1, h, 1) & ((xs >= 0) & (xs < w)).view(n, 1, 1, w)
    rows = ys.clamp(0, h - 1).view(n, 1, h, 1).expand(n, x.shape[1], h, w)
    cols = xs.clamp(0, w - 1).view(n, 1, 1, w).expand(n, x.shape[1], h, w)
    out = x.gather(2, rows).gather(3, cols)
    return out * valid.to(x.dtype)


def _cutout(x: Tensor, ratio: float) -> Tensor:
    """Zero a square of side ratio*side at a random centre (it may hang over the border)."""
    n, _, h, w = x.shape
    half_h, half_w = h * ratio / 2, w * ratio / 2
    cy = torch.randint(0, h, (n, 1), device=x.device)
    cx = torch.randint(0, w, (n, 1), device=x.device)
    ys = torch.arange(h, device=x.device).view(1, h)
    xs = torch.arange(w, device=x.device).view(1, w)
    inside = (((ys - cy).abs() < half_h).view(n, 1, h, 1)
              & ((xs - cx).abs() < half_w).view(n, 1, 1, w))
    return x * (~inside).to(x.dtype)


class DiffAugment(Augmentation):
    """Differentiable colour, translation and cutout on real and fake images (Zhao et al. 2020)."""

    name = "diffaugment"
    Options = DiffAugmentOptions
    applies_to = "both"

    def __call__(self, images: Tensor, p: float = 1.0) -> Tensor:
        o, n = self.options, len(images)
        if n == 0:
            return images
        x = images
        for op in o.policy:
            if op == "color":
                out = _color(x)
                if o.clamp:
                    out = out.clamp(-1, 1)
            elif op == "translation":
                out = _translate(x, o.translation)
            else:
                out = _cutout(x, o.cutout)
            # Each operation is applied to each image with probability p (an adaptive schedule
            # can drive p); torch.where passes gradients through both branches.
            x = torch.where(_chosen(n, p, images), out, x)
        return x


@gan_zoo.hookimpl
def register_augmentations(register):
    for cls in (Classic, DiffAugment):
        register(cls)
