"""Training images: a folder decoded once into a memory-mapped cache (``folders``), the
procedural *shapes* set used when no data is given (``builtin``), image arrays to and from
tensors and grids (``images``) and streaming ``ganzoo sample`` output (``sample_output``).

The names below are re-exported so that ``from gan_zoo.data import load_dataset`` keeps working."""

from .folders import (
    CACHE_FORMAT,
    IMAGE_EXTENSIONS,
    MAX_DECODE_BYTES,
    MAX_PIXELS,
    UNSUPPORTED_EXTENSIONS,
    EpochSampler,
    ImageArray,
    cache_dir,
    check_decode_size,
    gather,
    load_builtin,
    load_dataset,
    load_folder,
    load_image,
    pixel_bytes,
    scan_folder,
    scan_images,
)

__all__ = [
    "CACHE_FORMAT", "IMAGE_EXTENSIONS", "MAX_DECODE_BYTES", "MAX_PIXELS", "UNSUPPORTED_EXTENSIONS",
    "EpochSampler", "ImageArray", "cache_dir", "check_decode_size", "gather", "load_builtin",
    "load_dataset", "load_folder", "load_image", "pixel_bytes", "scan_folder", "scan_images",
]
