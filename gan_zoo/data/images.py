"""Image tensors to uint8 arrays, grids and PNG files."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..util.atomic import SHARED_MODE, replacing_file


def to_uint8(images: Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (N, H, W, C) uint8, rounding to nearest."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().numpy()


def from_uint8(batch: Tensor) -> Tensor:
    """(N, H, W, C) uint8 -> (N, C, H, W) float32 in [-1, 1]."""
    return batch.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


# A .png grid is drawn whole in memory: at most this many images and pixels (an 8000 x 8000
# picture, 192 MB while drawn; under Pillow's decompression-bomb limit, so it opens anywhere).
MAX_GRID_IMAGES = 4096
MAX_GRID_PIXELS = 64_000_000


def grid_layout(n: int, h: int, w: int, nrow: int | None = None, pad: int = 2
                ) -> tuple[int, int, int]:
    """(images per row, height, width) of the grid of n images of h x w."""
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    return nrow, rows * (h + pad) + pad, nrow * (w + pad) + pad


def paste_tile(canvas: np.ndarray, i: int, image: np.ndarray, nrow: int, pad: int = 2) -> None:
    """Put the i-th (H, W, C) image of a grid in its place on the canvas."""
    h, w = image.shape[:2]
    r, col = divmod(i, nrow)
    y, x = pad + r * (h + pad), pad + col * (w + pad)
    canvas[y : y + h, x : x + w] = image


def grid(images: np.ndarray, nrow: int | None = None, pad: int = 2) -> Image.Image:
    """Tile (N, H, W, C) uint8 images into one picture, nrow images per row."""
    n, h, w, c = images.shape
    nrow, height, width = grid_layout(n, h, w, nrow, pad)
    canvas = np.full((height, width, c), 255, np.uint8)
    for i in range(n):
        paste_tile(canvas, i, images[i], nrow, pad)
    return Image.fromarray(canvas.squeeze(-1) if c == 1 else canvas)


def atomic_save_image(image: Image.Image, path: str | os.PathLike) -> Path:
    """Write a PNG so a viewer never sees a half-written file; readable like other pictures."""
    path = Path(path)
    with replacing_file(path, SHARED_MODE) as fh:
        image.save(fh, format="PNG")
    return path


def save_grid(images: Tensor, path: str | os.PathLike, nrow: int | None = None) -> Path:
    return atomic_save_image(grid(to_uint8(images), nrow), path)
