"""Recipes: every one in gan_zoo/training/recipe_files validates and builds, they hold the seeds' settings,
`ganzoo train --recipe` runs one end to end with flags overriding it, --arch retargets its
architecture options, and mistakes are one message with exit code 2."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from gan_zoo.cli import cli
from gan_zoo.training.assembly import build_components
from gan_zoo.training.config import make_config
from gan_zoo.training.recipes import BUILTIN_DIR, available, find, start_values

from ..conftest import write_images

EXPECTED = {"face-model5-baseline", "face-model6-dropout", "face-model7-noise",
            "face-model8-balance", "face-model4.3-d-faster", "face-model4.4-g-faster",
            "aircraft-dcgan", "face-modern", "quality32", "quality64", "quality128"}


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def recipe(name: str):
    values = start_values(None, name, None)
    return make_config(values, name)


def test_all_seed_recipes_present_in_examples():
    found = available()
    assert set(found) >= EXPECTED
    assert all(found[n].path.parent == BUILTIN_DIR for n in EXPECTED)
    assert all(found[n].description for n in EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recipe_validates_and_builds(name):
    cfg = recipe(name)
    comps = build_components(cfg)  # names, options and knob owners all check out
    assert comps.arch.name == cfg.arch


def test_face_recipes_follow_the_seed():
    base = recipe("face-model5-baseline")
    assert (base.arch, base.batch_size, base.lr_g, base.lr_d, base.beta1_g) == (
        "conv32", 150, 2e-4, 2e-4, 0.5)
    assert base.d_update == "joint" and base.loss == "bce" and base.ema_decay == 0
    assert recipe("face-model6-dropout").options["conv32"]["dropout"] == 0.2
    m7 = recipe("face-model7-noise")
    noise = build_components(m7).schedules[0]
    assert noise.name == "noise-anneal" and noise.options.apply_to == "real"
    assert noise.options.levels == [0.3, 0.1, 0.0] and noise.options.shape == "staircase"
    m8 = build_components(recipe("face-model8-balance"))
    balance = [s for s in m8.schedules if s.name == "loss-balance"][0]
    assert balance.knobs == ("d_batch_fraction",) and balance.options.target == 0.5
    faster_d, faster_g = recipe("face-model4.3-d-faster"), recipe("face-model4.4-g-faster")
    assert (faster_d.lr_g, faster_d.lr_d) == (2e-4, 4e-4)
    assert (faster_g.lr_g, faster_g.lr_d) == (4e-4, 2e-4)


@pytest.mark.parametrize(("name", "res", "minutes"), [("quality64", 64, 30), ("quality128", 128, 120)])
def test_quality_recipes_are_the_zoo_tables_best_row(name, res, minutes, tmp_path):
    """quality64/128 train what benchmarks.zoo measured as the best family (docs/zoo.md), on a
    CPU-minute budget."""
    from benchmarks.zoo import write_recipes
    from gan_zoo.util.tomlio import read_toml

    measured = read_toml(write_recipes(tmp_path, ["fastgan"], res)[0])
    values = start_values(None, name, None)
    assert {k: values[k] for k in measured} == measured
    cfg = recipe(name)
    assert (cfg.time_budget, cfg.budget_clock, cfg.steps, cfg.epochs) == (minutes, "cpu", None, None)


def test_quality32_is_the_best_known_modes_variant():
    cfg = recipe("quality32")
    assert (cfg.arch, cfg.loss, cfg.time_budget, cfg.budget_clock) == ("conv32", "hinge", 5, "cpu")
    assert cfg.options["conv32"]["width"] == 32 and cfg.options["conv32"]["d_norm"] == "spectral"


def test_aircraft_recipe_builds_the_seeds_networks():
    cfg = recipe("aircraft-dcgan")
    assert (cfg.arch, cfg.batch_size, cfg.epochs, cfg.augment, cfg.d_update) == (
        "conv128", 64, 200, ["classic"], "alternating")
    arch = build_components(cfg).arch
    g, d = arch.build_generator(), arch.build_discriminator()
    assert g.latent_dim == 64 and g.dense.out_features == 512 * 8 * 8
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128, 256, 512]
    with torch.no_grad():
        assert g(torch.randn(2, 64)).shape == (2, 3, 128, 128)


def test_arch_flag_retargets_recipe_options():
    values = start_values(None, "aircraft-dcgan", "conv32")
    assert "conv128" not in values["options"] and values["options"]["conv32"]["g_start"] == 8
    cfg = make_config({**values, "arch": "conv32"})
    g = build_components(cfg).arch.build_generator()
    assert g.dense.out_features == 128 * 8 * 8  # width 32 doubled per scale, 8 -> 32 px


def test_train_with_recipe_end_to_end_flags_override(tmp_path):
    data = write_images(tmp_path / "imgs", 8, size=36)
    out = tmp_path / "run"
    result = invoke("train", "--recipe", "face-model7-noise", "--data", data, "--steps", 3,
                    "--batch-size", 4, "-o", "conv32.width=8", "--out", out, "-q")
    assert result.exit_code == 0, result.output
    cfg = (out / "config.toml").read_text()
    assert "noise-anneal" in cfg and "batch_size = 4" in cfg and "steps = 3" in cfg
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["knob.noise_std_real"] == 0.0 and rows[-1]["knob.noise_std_fake"] == 0.0


def test_recipe_by_path_and_listing(tmp_path):
    assert find(str(BUILTIN_DIR / "aircraft-dcgan.toml")).name == "aircraft-dcgan"
    result = invoke("recipes", "--json")
    assert result.exit_code == 0
    assert {r["name"] for r in json.loads(result.output)} >= EXPECTED
    assert "Face seed, model 7.3" in invoke("recipes").output


@pytest.mark.parametrize(("args", "message"), [
    (["--recipe", "face-model7-nois"], "unknown recipe 'face-model7-nois'. Did you mean: "
                                       "face-model7-noise"),
    (["--recipe", "face-model7-noise", "--config", "x.toml"], "--config or --recipe, not both"),
    (["--resume", "somewhere", "--recipe", "face-model7-noise"], "--resume continues a run"),
])
def test_recipe_mistakes_are_one_message(args, message):
    result = CliRunner().invoke(cli, ["train", *args])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
