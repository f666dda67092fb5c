"""The built-in dataset: procedurally drawn shapes, made by the package at any resolution.

No download and no data file: a newcomer can run `ganzoo train` and watch a GAN learn
recognisable structure (a coloured disc, square or triangle on a shaded background) in minutes.
"""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageDraw

BUILTIN_NAME = "shapes"
BUILTIN_SIZE = 4096
SUPERSAMPLE = 4
# The shape kinds, in the order of draw_shape's `kind`: the classes of a conditional run on the
# built-in dataset.
SHAPE_KINDS = ("disc", "square", "triangle")


def _colour(rng: np.random.Generator, light: tuple[float, float]) -> tuple[int, int, int]:
    h, s, v = rng.random(), rng.uniform(0.55, 0.95), rng.uniform(*light)
    return tuple(int(c * 255) for c in colorsys.hsv_to_rgb(h, s, v))


def draw_shape(rng: np.random.Generator, resolution: int, *, kind: int | None = None,
               colour: tuple[int, int, int] | None = None,
               centre: tuple[float, float] | None = None,
               size: float | None = None) -> np.ndarray:
    """One image (see draw_labelled_shape)."""
    return draw_labelled_shape(rng, resolution, kind=kind, colour=colour, centre=centre,
                               size=size)[0]


def draw_labelled_shape(rng: np.random.Generator, resolution: int, *, kind: int | None = None,
                        colour: tuple[int, int, int] | None = None,
                        centre: tuple[float, float] | None = None,
                        size: float | None = None) -> tuple[np.ndarray, int]:
    """One image and the kind of shape in it: a vertical two-colour gradient and one shape,
    anti-aliased by supersampling.

    kind (0 disc, 1 square, 2 triangle), colour (RGB 0-255), centre (x, y as fractions of the
    side) and size (fraction of the side; 0 draws no shape, the background alone) fix what is
    otherwise drawn at random, so that benchmarks.modes can draw shapes of known modes with the
    same code; a value given draws nothing from rng, so the default output (and the built-in
    dataset) is unchanged."""
    side = resolution * SUPERSAMPLE
    top = np.array(_colour(rng, (0.15, 0.45)), np.float32)
    bottom = np.array(_colour(rng, (0.15, 0.45)), np.float32)
    t = np.linspace(0, 1, side, dtype=np.float32)[:, None, None]
    background = (top * (1 - t) + bottom * t).repeat(side, axis=1).astype(np.uint8)
    img = Image.fromarray(background)
    draw = ImageDraw.Draw(img)
    size = (rng.uniform(0.35, 0.65) if size is None else size) * side
    if centre is None:
        cx, cy = rng.uniform(size / 2, side - size / 2, size=2)
    else:
        cx, cy = centre[0] * side, centre[1] * side
    box = (cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2)
    colour = _colour(rng, (0.75, 1.0)) if colour is None else colour
    kind = int(rng.integers(3)) if kind is None else kind
    if size > 0 and kind == 0:  # size 0: the background alone
        draw.ellipse(box, fill=colour)
    elif size > 0 and kind == 1:
        draw.rectangle(box, fill=colour)
    elif size > 0:
        draw.polygon([(cx, box[1]), (box[2], box[3]), (box[0], box[3])], fill=colour)
    return np.asarray(img.resize((resolution, resolution), Image.Resampling.BOX)), kind


def make_shapes(n: int, resolution: int, seed: int = 0) -> np.ndarray:
    """(n, resolution, resolution, 3) uint8, identical for the same arguments."""
    return make_labelled_shapes(n, resolution, seed)[0]


def make_labelled_shapes(n: int, resolution: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """make_shapes's images and each one's shape kind (int64, an index into SHAPE_KINDS)."""
    rng = np.random.default_rng(seed)
    drawn = [draw_labelled_shape(rng, resolution) for _ in range(n)]
    return np.stack([d[0] for d in drawn]), np.array([d[1] for d in drawn], np.int64)
