"""The reference: a training loop as a user writes it by hand, after the classic PyTorch DCGAN
example (pytorch/examples, dcgan/main.py), on the same generator and discriminator modules.

What makes it "classic", on purpose (this is the baseline, not a strawman):
* data: an image-folder Dataset that opens, resizes, crops and normalizes each PNG with
  PIL/torchvision transforms on every step, through a shuffling DataLoader (workers=2 as the
  example's default);
* D step: a real-only pass, backward, a fake-only pass, backward, one optimizer step;
* G step: D run again on the fake batch with D's parameter gradients enabled (they are computed
  and then thrown away by the next ``netD.zero_grad()``);
* one fake batch per step (the example does that too), plain fp32, default memory format,
  ``torch.optim.Adam`` with its defaults.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


class ImageFiles(Dataset):
    """Every image under a folder, decoded and transformed when asked for (torchvision style)."""

    def __init__(self, root: str | Path, resolution: int):
        self.files = sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise ValueError(f"no images in {root}")
        self.transform = transforms.Compose([
            transforms.Resize(resolution),
            transforms.CenterCrop(resolution),
            transforms.ToTensor(),
            transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
        ])

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        with Image.open(self.files[i]) as im:
            return self.transform(im.convert("RGB"))


def make_loader(root: str | Path, resolution: int, batch_size: int, workers: int = 2,
                seed: int = 0) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    return DataLoader(ImageFiles(root, resolution), batch_size=batch_size, shuffle=True,
                      num_workers=workers, drop_last=True, generator=g)


def endless(loader: DataLoader) -> Iterator[torch.Tensor]:
    while True:
        yield from loader


class ReferenceLoop:
    """DCGAN-example training of netG/netD (D returns one logit per image, shape (N,))."""

    def __init__(self, netG: nn.Module, netD: nn.Module, latent_dim: int, lr: float = 2e-4):
        self.netG, self.netD, self.nz = netG, netD, latent_dim
        self.criterion = nn.BCEWithLogitsLoss()
        self.optimizerD = torch.optim.Adam(netD.parameters(), lr=lr, betas=(0.5, 0.999))
        self.optimizerG = torch.optim.Adam(netG.parameters(), lr=lr, betas=(0.5, 0.999))
        netG.train()
        netD.train()

    def step(self, real: torch.Tensor) -> dict[str, float]:
        netG, netD, criterion = self.netG, self.netD, self.criterion
        b = real.size(0)
        # (1) Update D: maximize log(D(x)) + log(1 - D(G(z)))
        netD.zero_grad()
        label = torch.full((b,), 1.0)
        output = netD(real)
        errD_real = criterion(output, label)
        errD_real.backward()
        noise = torch.randn(b, self.nz)
        fake = netG(noise)
        label.fill_(0.0)
        output = netD(fake.detach())
        errD_fake = criterion(output, label)
        errD_fake.backward()
        self.optimizerD.step()
        # (2) Update G: maximize log(D(G(z)))
        netG.zero_grad()
        label.fill_(1.0)
        output = netD(fake)
        errG = criterion(output, label)
        errG.backward()
        self.optimizerG.step()
        return {"loss_d": (errD_real + errD_fake).item(), "loss_g": errG.item()}


def timed_steps(loop: ReferenceLoop, batches: Iterator[torch.Tensor], n: int
                ) -> tuple[list[float], list[float], list[dict[str, float]]]:
    """Run n steps; per step: total seconds, seconds spent waiting for the next batch, losses."""
    totals, waits, losses = [], [], []
    for _ in range(n):
        t0 = time.perf_counter()
        real = next(batches)
        t1 = time.perf_counter()
        losses.append(loop.step(real))
        t2 = time.perf_counter()
        totals.append(t2 - t0)
        waits.append(t1 - t0)
    return totals, waits, losses
