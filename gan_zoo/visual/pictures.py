"""Reading the sample grids of a run folder that may come from anyone.

A PNG states its size in its first bytes and can claim 100,000 x 100,000 pixels in a few
kilobytes (rows of zeros compress a thousandfold): decoding it takes gigabytes. So a grid is
read only if it is a regular file (a FIFO would block the reader; a symbolic link could point a
shared report at a private picture elsewhere on the disk), at most MAX_PICTURE_BYTES
long, a PNG, and at most MAX_PICTURE_PIXELS by its header, checked before any pixel is decoded.
Anything else is skipped with a note for the reader instead of an error.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from pathlib import Path

from PIL import Image

from ..util.regular_files import read_regular_bytes
from ..util.textsafe import shown

# Sample grids gan-zoo writes are a few megapixels (64 images of 256 px: 2066 x 2066).
MAX_PICTURE_PIXELS = 25_000_000  # 5000 x 5000: at most ~100 MB decoded, even 16-bit RGBA
MAX_PICTURE_BYTES = 64 << 20
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class PictureSkipped(Exception):
    """A picture left out; str() is the note to show (escaped, names the file)."""


def _check_size(width: int, height: int, label: str) -> None:
    if width * height > MAX_PICTURE_PIXELS:
        raise PictureSkipped(f"skipped {label}: {width}x{height} pixels, over the "
                             f"{MAX_PICTURE_PIXELS // 1_000_000}-megapixel limit for a picture")


def _header(data: bytes, label: str) -> Image.Image:
    """The opened (not yet decoded) PNG in `data`, its size within the limits."""
    if data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
        raise PictureSkipped(f"skipped {label}: not a PNG")
    _check_size(*struct.unpack(">II", data[16:24]), label)  # the first chunk, before Pillow
    try:
        with warnings.catch_warnings():  # Pillow's own bomb warning: our limit is lower
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=["PNG"])
    except Image.DecompressionBombError as exc:
        raise PictureSkipped(f"skipped {label}: {exc}") from None
    except Exception:  # noqa: BLE001 - Pillow raises many kinds for a damaged header
        raise PictureSkipped(f"skipped {label}: not a readable PNG") from None
    _check_size(*image.size, label)
    return image


def _label(path: Path) -> str:
    return shown(f"{path.parent.name}/{path.name}" if path.parent.name == "samples"
                 else path.name)


def read_png(path: str | os.PathLike) -> bytes:
    """The bytes of a PNG that is safe to embed and decode; PictureSkipped otherwise."""
    path = Path(path)
    label = _label(path)
    try:
        # gan-zoo writes grids by renaming a new file into place, never as links.
        data = read_regular_bytes(path, MAX_PICTURE_BYTES, follow_symlinks=False)
    except OSError as exc:
        raise PictureSkipped(f"skipped {label}: {exc.strerror or exc}") from None
    _header(data, label)
    return data


def open_picture(path: str | os.PathLike) -> Image.Image:
    """A sample grid decoded as RGB; PictureSkipped when it is not safe or not readable."""
    path = Path(path)
    image = _header(read_png(path), _label(path))
    try:
        return image.convert("RGB")
    except Exception:  # noqa: BLE001 - a cut or damaged stream fails in many ways
        raise PictureSkipped(f"skipped {_label(path)}: the picture is damaged") from None
