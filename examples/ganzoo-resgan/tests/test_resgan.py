"""ganzoo-resgan: gan-zoo's contracts on each component, plus what is particular to each."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from ganzoo_resgan import AccuracyNoise, DraganLoss
from ganzoo_resgan.arch import DownBlock, UpBlock

from gan_zoo import TrainState, api
from gan_zoo.cli import cli
from gan_zoo.data import ImageArray
from gan_zoo.testing import check_component
from gan_zoo.training.assembly import build

TINY = {"width": 8, "latent_dim": 16}


@pytest.mark.parametrize(("kind", "name"), [("arch", "resgan"), ("loss", "dragan"),
                                            ("schedule", "acc-noise")])
def test_gan_zoo_contracts(kind, name):
    check_component(kind, name)


@pytest.mark.parametrize("res", [64, 128])
def test_contracts_at_other_resolutions(res):
    check_component("arch", "resgan", {**TINY, "resolution": res, "spectral_norm": False})


def test_registered_under_this_package(resgan_registered):
    result = CliRunner().invoke(cli, ["list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.output)}
    for name, kind in (("resgan", "arch"), ("dragan", "loss"), ("acc-noise", "schedule")):
        assert rows[name]["kind"] == kind
        assert rows[name]["plugin"] == resgan_registered
        assert rows[name]["distribution"] == "ganzoo-resgan"


def test_generator_is_residual_and_doubles_per_block():
    arch = build("arch", "resgan", {**TINY, "resolution": 64})
    G, D = arch.build_generator(), arch.build_discriminator()
    ups = [m for m in G.modules() if isinstance(m, UpBlock)]
    downs = [m for m in D.modules() if isinstance(m, DownBlock)]
    assert len(ups) == 4 and len(downs) == 4  # 4 -> 64 pixels and back
    x = torch.randn(2, 128, 4, 4)
    ups[0].eval()
    with torch.no_grad():
        assert ups[0](x).shape == (2, 64, 8, 8)
        # Residual: the output is the main path plus the shortcut.
        assert torch.allclose(ups[0](x), ups[0].main(x) + ups[0].shortcut(x))


def test_spectral_norm_option():
    with_sn = build("arch", "resgan", TINY).build_discriminator()
    without = build("arch", "resgan", {**TINY, "spectral_norm": False}).build_discriminator()
    assert any(hasattr(m, "parametrizations") for m in with_sn.modules())
    assert not any(hasattr(m, "parametrizations") for m in without.modules())


def test_dragan_penalty_pulls_gradient_norm_to_one():
    loss = DraganLoss(DraganLoss.Options(gp_weight=1.0))
    real = torch.rand(4, 3, 8, 8) * 2 - 1

    class Linear(torch.nn.Module):
        def __init__(self, scale: float):
            super().__init__()
            self.w = torch.nn.Parameter(torch.full((3 * 8 * 8,), scale))

        def forward(self, x):
            return x.flatten(1) @ self.w

    # A linear D's input gradient is w everywhere: penalty = (|w| - 1)^2.
    unit = Linear(1 / (3 * 8 * 8) ** 0.5)
    assert loss.penalty(unit, real, real).item() == pytest.approx(0.0, abs=1e-10)
    steep = Linear(3 / (3 * 8 * 8) ** 0.5)
    assert loss.penalty(steep, real, real).item() == pytest.approx(4.0, rel=1e-5)
    assert DraganLoss(DraganLoss.Options(gp_weight=0)).penalty(steep, real, real) is None


def test_acc_noise_follows_discriminator_accuracy():
    s = AccuracyNoise(AccuracyNoise.Options(initial=0.1, step=0.01, smoothing=0.0, max_std=0.15))
    state = TrainState(0, 100)
    for _ in range(10):
        s.observe(state, {"d_acc": 0.95})  # D winning: more noise, up to the cap
    assert s.values(state) == {"noise_std_real": 0.15, "noise_std_fake": 0.15}
    for _ in range(3):
        s.observe(state, {"d_acc": 0.5})  # D at chance: less noise
    assert s.values(state)["noise_std_real"] == pytest.approx(0.12)
    with pytest.raises(ValueError, match="initial"):
        AccuracyNoise.Options(initial=0.9, max_std=0.5)


def test_trains_by_name_and_checkpoint_names_the_package(tmp_path):
    rng = np.random.default_rng(0)
    data = ImageArray(rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8), "test")
    result = api.train({"arch": "resgan", "loss": "dragan", "schedules": ["acc-noise"],
                        "batch_size": 4, "steps": 3, "options": {"resgan": TINY}},
                       out=tmp_path / "run", data=data)
    assert result.step == 3
    _, meta, _ = api.load_checkpoint(result.run_dir)
    assert meta["arch"]["name"] == "resgan"
    assert meta["arch"]["distribution"] == "ganzoo-resgan"
    assert meta["schedules"]["acc-noise"]["std"] >= 0
    G, _ = api.load_generator(result.run_dir)
    assert api.sample(G, 2).shape == (2, 3, 32, 32)
