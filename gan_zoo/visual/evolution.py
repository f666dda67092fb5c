"""The evolution of the fixed-noise samples: one row per saved grid, the same images in each row.

Every grid in RUN/samples/ is drawn from the same fixed latent vectors, so reading a column
top to bottom shows one latent vector's image improving (or collapsing) over training.
"""

from __future__ import annotations

import io
import math
import os
import re
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from .curves import read_config, write_atomic
from .pictures import PictureSkipped, open_picture

GRID_RE = re.compile(r"^step-(\d+)\.png$")
PAD = 2  # gan_zoo.data.images.grid's padding between tiles
MAX_TILE = 512  # pixels of one drawn tile: ten rows of eight stay a reasonable picture


def sample_steps(samples_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """(step, path) of the saved sample grids, oldest first."""
    folder = Path(samples_dir)
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = GRID_RE.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def pick_evenly(items: list, k: int) -> list:
    """At most k items spread evenly, always keeping the first and the last."""
    if len(items) <= k:
        return list(items)
    if k == 1:
        return [items[-1]]
    idx = sorted({round(i * (len(items) - 1) / (k - 1)) for i in range(k)})
    return [items[i] for i in idx]


def grid_tiles(image: Image.Image, n_images: int, count: int) -> list[Image.Image]:
    """The first `count` tiles of a grid of n_images written by gan_zoo.data.images.grid."""
    nrow = max(1, math.ceil(math.sqrt(n_images)))
    width = image.width
    tile = (width - PAD) // nrow - PAD
    if tile <= 0:
        return [image]
    out = []
    for i in range(min(count, n_images)):
        r, c = divmod(i, nrow)
        y, x = PAD + r * (tile + PAD), PAD + c * (tile + PAD)
        if y + tile > image.height:
            break
        out.append(image.crop((x, y, x + tile, y + tile)))
    return out


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def render_evolution(grids: list[tuple[int, Path]], n_images: int = 64, columns: int = 8,
                     rows: int = 10, min_tile: int = 64, notes: list[str] | None = None) -> bytes:
    """PNG bytes of the strip: up to `rows` grids (evenly spread), `columns` images each.
    A grid that is not safe to read (gan_zoo.visual.pictures) or damaged leaves its row out,
    with a line in `notes`."""
    chosen = pick_evenly(grids, rows)
    tiles_per_row: list[tuple[int, list[Image.Image]]] = []
    for step, path in chosen:
        try:
            tiles_per_row.append((step, grid_tiles(open_picture(path), n_images, columns)))
        except PictureSkipped as exc:  # also a grid being replaced: leave its row out
            if notes is not None:
                notes.append(str(exc))
    if not tiles_per_row:
        raise ValueError("no readable sample grids")
    tile = max(t.width for _, tiles in tiles_per_row for t in tiles)
    scale = max(1, math.ceil(min_tile / tile))
    size = min(tile * scale, MAX_TILE)  # a grid read as one tile may be thousands of pixels
    n_cols = max(len(tiles) for _, tiles in tiles_per_row)
    font = _font(max(12, min(18, size // 4)))
    label_w = 110
    gap = 4
    width = label_w + n_cols * (size + gap) + gap
    height = gap + len(tiles_per_row) * (size + gap)
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for r, (step, tiles) in enumerate(tiles_per_row):
        y = gap + r * (size + gap)
        draw.text((8, y + size // 2), f"step {step}", fill=(30, 30, 30), font=font, anchor="lm")
        for c, t in enumerate(tiles):
            t = t.resize((size, size), Image.Resampling.NEAREST) if t.width != size else t
            canvas.paste(t, (label_w + gap + c * (size + gap), y))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


def evolution_strip(run_dir: str | os.PathLike, out: str | os.PathLike | None = None,
                    n_images: int | None = None, **kwargs) -> Path | None:
    """Write RUN/evolution.png from RUN/samples/*.png; None when the run saved no grids yet.
    n_images: images per grid (the run's sample_grid; read from config.toml when omitted)."""
    run_dir = Path(run_dir)
    grids = sample_steps(run_dir / "samples")
    if not grids:
        return None
    if n_images is None:
        n_images = _grid_size(run_dir)
    out = Path(out) if out is not None else run_dir / "evolution.png"
    write_atomic(out, render_evolution(grids, n_images, **kwargs))
    return out


def _grid_size(run_dir: Path) -> int:
    value = read_config(run_dir / "config.toml")[0].get("sample_grid", 64)
    return value if isinstance(value, int) and 0 < value <= 1_000_000 else 64

