"""Built-in augmentations: shape and range kept, p = 0 is the identity, the geometric ones do
what they say, diffaugment lets gradients through to G, classic touches real images only."""

from __future__ import annotations

import pytest
import torch

from gan_zoo import api
from gan_zoo.errors import UsageError
from gan_zoo.training.assembly import build

from ..training.test_training_step import TINY, tiny_data


def images(n: int = 6, side: int = 16) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(n, 3, side, side) * 2 - 1


@pytest.mark.parametrize("name", ["classic", "diffaugment"])
@pytest.mark.parametrize("p", [1.0, 0.5])
def test_shape_and_range_kept(name, p):
    aug = build("augment", name)
    x = images()
    y = aug(x, p)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert y.min() >= -1 and y.max() <= 1
    assert not torch.equal(y, x)


@pytest.mark.parametrize("name", ["classic", "diffaugment"])
def test_p_zero_is_identity_and_same_seed_same_result(name):
    aug = build("augment", name)
    x = images()
    assert torch.equal(aug(x, 0.0), x)
    torch.manual_seed(5)
    a = aug(x)
    torch.manual_seed(5)
    assert torch.equal(aug(x), a)


def test_classic_pure_flip_is_exact():
    aug = build("augment", "classic", {"flip": 1.0, "translate": 0, "rotate": 0, "scale": 0})
    x = images()
    assert torch.allclose(aug(x), x.flip(3), atol=1e-5)
    none = build("augment", "classic", {"flip": 0.0, "translate": 0, "rotate": 0, "scale": 0})
    assert torch.allclose(none(x), x, atol=1e-5)


def test_classic_shift_moves_content():
    # A bright column in the middle moves by at most 5% of the side (here 1 pixel of 20).
    x = -torch.ones(32, 3, 20, 20)
    x[..., 10] = 1.0
    aug = build("augment", "classic", {"flip": 0, "rotate": 0, "scale": 0, "translate": 0.05})
    y = aug(x)
    centre = (y[:, 0, 10, :] + 1).mul(torch.arange(20.0)).sum(1) / (y[:, 0, 10, :] + 1).sum(1)
    assert (centre - 10).abs().max() <= 1.0 + 1e-4
    assert (centre - 10).abs().max() > 0.05  # and it does move


def test_classic_is_real_only_in_training(tmp_path):
    tr = api.prepare_training({"arch": "conv32", "batch_size": 8, "steps": 1, "options": TINY,
                               "augment": ["classic"]}, out=tmp_path / "run", data=tiny_data())
    aug = tr.c.augments[0]
    assert aug.applies_to == "real"
    calls = []
    original = type(aug).__call__
    type(aug).__call__ = lambda self, x, p=1.0: calls.append(x.requires_grad) or original(self, x, p)
    try:
        tr.train_step()
    finally:
        type(aug).__call__ = original
    assert calls == [False]  # once, on the real batch; never on G's images


def test_diffaugment_lets_gradients_through_to_g():
    g = build("arch", "conv32", {"width": 8, "latent_dim": 16}).build_generator()
    fake = g(torch.randn(4, 16))
    aug = build("augment", "diffaugment")
    assert aug.applies_to == "both"
    aug(fake).pow(2).sum().backward()
    grads = [p.grad for p in g.parameters()]
    assert all(gr is not None for gr in grads) and any(gr.abs().sum() > 0 for gr in grads)


@pytest.mark.parametrize("op", ["color", "translation", "cutout"])
def test_diffaugment_each_op_is_differentiable(op):
    x = images(4).requires_grad_(True)
    build("augment", "diffaugment", {"policy": [op]})(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_diffaugment_translation_is_a_whole_pixel_shift():
    x = torch.rand(8, 3, 16, 16) * 2 - 1
    y = build("augment", "diffaugment", {"policy": ["translation"], "translation": 0.125})(x)
    for xi, yi in zip(x, y, strict=True):
        found = False
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                shifted = torch.zeros_like(xi)
                src = xi[:, max(0, -dy):16 - max(0, dy), max(0, -dx):16 - max(0, dx)]
                shifted[:, max(0, dy):16 - max(0, -dy), max(0, dx):16 - max(0, -dx)] = src
                found = found or torch.equal(shifted, yi)
        assert found


def test_diffaugment_cutout_zeroes_at_most_the_square():
    x = torch.ones(16, 3, 16, 16)
    y = build("augment", "diffaugment", {"policy": ["cutout"], "cutout": 0.5})(x)
    zeros = (y == 0).all(1).flatten(1).sum(1)
    assert (zeros > 0).all() and (zeros <= 8 * 8).all()
    assert set(y.unique().tolist()) <= {0.0, 1.0}


def test_diffaugment_applies_to_fakes_in_the_generator_step(tmp_path):
    tr = api.prepare_training({"arch": "conv32", "batch_size": 8, "steps": 1, "options": TINY,
                               "augment": ["diffaugment"]}, out=tmp_path / "run", data=tiny_data())
    aug = tr.c.augments[0]
    calls = []
    original = type(aug).__call__
    type(aug).__call__ = lambda self, x, p=1.0: calls.append(x.requires_grad) or original(self, x, p)
    try:
        tr.train_step()
    finally:
        type(aug).__call__ = original
    # Real batch, fakes for D (detached), fakes for G (attached to G's graph).
    assert calls == [False, False, True]


def test_diffaugment_rejects_unknown_operation():
    with pytest.raises(UsageError, match="unknown operation 'blur'"):
        build("augment", "diffaugment", {"policy": ["color", "blur"]})
