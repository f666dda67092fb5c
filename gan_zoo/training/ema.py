"""The generator's exponential moving average (EMA): the weights used for samples, evaluation
and a saved run's generator.

Each step the copy moves toward G's weights and takes G's buffers. Before it is used its
batch-norm statistics are measured again on its own weights (torch.optim.swa_utils.update_bn),
once per step at most.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.optim.swa_utils import update_bn

NORM_BATCHES = 8  # batches of 64 that measure the EMA generator's batch-norm statistics


class EMA:
    def __init__(self, generator: nn.Module, decay: float, seed: int, device: torch.device,
                 label_probs: torch.Tensor | None = None):
        self.module = copy.deepcopy(generator).eval()
        self.module.requires_grad_(False)
        self.decay, self.seed, self.device = decay, seed, device
        # A conditional G is calibrated on labels drawn as training draws them.
        self.label_probs = label_probs
        self._norm_step = -1  # step at which the batch-norm statistics were last measured
        # Calibration size: NORM_BATCHES batches of 64; gan_zoo.testing shrinks it for speed.
        self.norm_batches, self.norm_batch_size = NORM_BATCHES, 64

    @torch.no_grad()
    def update(self, generator: nn.Module, step: int) -> None:
        # Warm-up: average over the steps so far until the nominal horizon is reached, so early
        # random weights do not linger in short runs.
        decay = min(self.decay, (1 + step) / (10 + step))
        for p_ema, p in zip(self.module.parameters(), generator.parameters(), strict=True):
            p_ema.lerp_(p.detach(), 1 - decay)
        for b_ema, b in zip(self.module.buffers(), generator.buffers(), strict=True):
            b_ema.copy_(b)

    def calibrated(self, step: int) -> nn.Module:
        """The copy with batch-norm statistics of its own weights.

        It takes G's running statistics each step, but those were measured on G's current
        weights, not on the averaged ones; with a fast-moving G the mismatch shifts every sample
        the same way (one hue for the whole grid). A few forward passes on fixed noise fix it.
        Their own noise generator, and the global one forked, so training stays bit-identical.
        """
        if self._norm_step != step:
            rng = torch.Generator().manual_seed(self.seed + 2)
            latents = [self.module.sample_latent(self.norm_batch_size, generator=rng)
                       for _ in range(self.norm_batches)]
            model: nn.Module = self.module
            if self.label_probs is not None:
                labels = [torch.multinomial(self.label_probs, self.norm_batch_size, True,
                                            generator=rng).to(self.device) for _ in latents]
                model = _Labelled(self.module, labels)
            devices = [self.device] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices):
                update_bn(latents, model, self.device)  # no batch norm: returns at once
            self._norm_step = step
        return self.module


class _Labelled(nn.Module):
    """A conditional generator fed update_bn's latents with the given labels, in turn."""

    def __init__(self, generator: nn.Module, labels: list[torch.Tensor]):
        super().__init__()
        self.generator, self.labels, self.calls = generator, labels, 0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        y = self.labels[self.calls % len(self.labels)]
        self.calls += 1
        return self.generator(z, y=y)
