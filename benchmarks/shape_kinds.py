"""A small classifier of the built-in shapes' kind (disc, square, triangle), trained on the
shapes themselves in seconds: it tells which class a generated image shows, so a conditional
generator can be checked against the class it was asked for (tests/training/
test_conditional_shapes.py, benchmarks/conditional.py) and an unconditional one's samples can
be sorted by class.

    from benchmarks.shape_kinds import train_kind_classifier, classify
    model, held_out_accuracy = train_kind_classifier(32)
    kinds = classify(model, images)  # images in [-1, 1], (N, 3, 32, 32)
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn


class KindClassifier(nn.Module):
    """Three strided convs, global average pooling, one linear layer: 3 kind logits."""

    def __init__(self, width: int = 16):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for c_out in (width, 2 * width, 2 * width, 2 * width):
            layers += [nn.Conv2d(c_in, c_out, 3, 2, 1), nn.BatchNorm2d(c_out), nn.ReLU()]
            c_in = c_out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(c_in, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def _as_tensor(images: np.ndarray) -> Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [-1, 1]."""
    return torch.from_numpy(np.array(images, dtype=np.uint8)).permute(0, 3, 1, 2).float() / 127.5 - 1


def train_kind_classifier(resolution: int, steps: int = 300, seed: int = 0,
                          held_out: int = 512) -> tuple[KindClassifier, float]:
    """A classifier trained on the built-in shapes at this resolution (all but the last
    `held_out` images), and its accuracy on those held out."""
    from gan_zoo.data.folders import load_builtin

    data = load_builtin(resolution)
    x, y = _as_tensor(data.images[:]), torch.from_numpy(np.asarray(data.labels))
    x_train, y_train, x_test, y_test = x[:-held_out], y[:-held_out], x[-held_out:], y[-held_out:]
    torch.manual_seed(seed)
    model = KindClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    rng = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(len(x_train), (64,), generator=rng)
        loss = nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    accuracy = float((classify(model, x_test) == y_test).float().mean())
    return model, accuracy


@torch.no_grad()
def classify(model: KindClassifier, images: Tensor, batch_size: int = 256) -> Tensor:
    """The kind index of each image ((N, 3, H, W) in [-1, 1]), int64 (N,)."""
    was = model.training
    model.eval()
    out = torch.cat([model(images[s : s + batch_size].float()).argmax(1)
                     for s in range(0, len(images), batch_size)])
    model.train(was)
    return out
