"""Class-conditional training: labels reach G and D, the classes are kept in the run's config and
checkpoints, a resume is bit-exact and refuses other classes, every loss/D-update path runs,
and an unconditional architecture or unlabelled data is one message."""

from __future__ import annotations

import json
import shutil
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import gan_zoo
from gan_zoo import api
from gan_zoo.cli import cli
from gan_zoo.data import ImageArray
from gan_zoo.errors import CheckpointError, DataError, UsageError
from plugins.conv import Conv32, ConvDiscriminator, ConvGenerator, ConvOptions

from ..conftest import write_images
from ..reliability.helpers import (
    TINY,
    assert_bit_identical,
    final_checkpoint,
    labelled_data,
    stop_at,
    temp_plugin,
)


def config(steps: int = 4, **extra: Any) -> dict[str, Any]:
    return {"arch": "conv32", "conditional": True, "batch_size": 6, "steps": steps, "seed": 2,
            "options": dict(TINY), "ema_decay": 0.9, "checkpoint_every": 100,
            "sample_every": 1000, **extra}


def test_a_conditional_run_keeps_its_classes_and_samples_by_class(tmp_path):
    result = api.train(config(), out=tmp_path / "r", data=labelled_data())
    trainer = result.trainer
    text = (tmp_path / "r" / "config.toml").read_text()
    assert 'classes = [\n    "a",\n    "b",\n    "c",\n]' in text
    assert "class_counts = [\n    8,\n    8,\n    8,\n]" in text
    _, meta = final_checkpoint(tmp_path / "r")
    assert meta["classes"] == {"names": ["a", "b", "c"], "counts": [8, 8, 8]}
    # The class grid: one class per row, the same noise down each column.
    assert trainer.fixed_y.tolist()[:16] == [0] * 8 + [1] * 8
    assert torch.equal(trainer.fixed_z[0], trainer.fixed_z[8])
    G, _ = api.load_generator(tmp_path / "r")
    assert G.num_classes == 3 and G.class_names == ("a", "b", "c")
    z = torch.randn(2, 16)
    with torch.no_grad():
        a, b = G(z, y=torch.tensor([0, 0])), G(z, y=torch.tensor([2, 2]))
    assert a.shape == (2, 3, 32, 32) and not torch.equal(a, b)  # the class changes the image


def test_the_labels_reach_the_discriminator():
    o = ConvOptions(width=8, latent_dim=16)
    D = ConvDiscriminator(o, 32, num_classes=3)
    with torch.no_grad():
        D.projection.embed.weight[2].normal_()
    x = torch.randn(4, 3, 32, 32)
    y0, y2 = torch.zeros(4, dtype=torch.long), torch.full((4,), 2)
    assert not torch.allclose(D(x, y=y0), D(x, y=y2))
    with pytest.raises(ValueError, match="without labels"):
        D(x)
    with pytest.raises(ValueError, match="without labels"):
        ConvGenerator(o, 32, num_classes=3)(torch.randn(2, 16))


def test_unconditional_modules_are_unchanged():
    o = ConvOptions(width=8, latent_dim=16)
    for module in (ConvGenerator(o, 32), ConvDiscriminator(o, 32)):
        keys = set(module.state_dict())
        assert not any(k.startswith(("projection", "embed")) or ".gain." in k for k in keys)
    with pytest.raises(ValueError, match="with labels"):
        ConvDiscriminator(o, 32)(torch.randn(2, 3, 32, 32), y=torch.zeros(2, dtype=torch.long))


ACGAN = {"options": {"conv32": {**TINY["conv32"], "d_condition": "both", "acgan_weight": 0.5}}}


@pytest.mark.parametrize("extra", [
    {},
    {"class_balance": True, "d_update": "joint", "r1_gamma": 1.0, "loss": "hinge"},
    {**ACGAN, "d_update": "joint", "loss": "rahinge"},
    {"loss": "rsgan", "d_update": "separate", "options": {"conv32": {
        **ACGAN["options"]["conv32"], "d_norm": "spectral", "d_condition": "acgan"}}},
], ids=["projection", "balanced-joint-r1", "acgan-joint", "acgan-relativistic-spectral"])
def test_2n_steps_equal_n_then_resume_then_n(tmp_path, extra):
    data = labelled_data()
    api.train(config(6, **extra), out=tmp_path / "straight", data=data)

    api.train(config(6, **extra), out=tmp_path / "split", data=data,
              callbacks=stop_at(3))
    assert api.train(resume=tmp_path / "split", data=data).step == 6
    (ta, ma), (tb, mb) = final_checkpoint(tmp_path / "straight"), final_checkpoint(tmp_path / "split")
    assert_bit_identical(ta, tb)
    assert ma["sampler"] == mb["sampler"]
    assert (tmp_path / "straight" / "samples.png").read_bytes() == \
        (tmp_path / "split" / "samples.png").read_bytes()


@pytest.mark.parametrize("loss, d_update", [("wgan-gp", "separate"), ("rahinge", "joint"),
                                            ("bce", "alternating")])
def test_every_loss_and_d_update_path_takes_labels(tmp_path, loss, d_update):
    result = api.train(config(3, loss=loss, d_update=d_update, r1_gamma=0.5, r1_every=2),
                       out=tmp_path / "r", data=labelled_data())
    assert result.step == 3
    assert all(np.isfinite(v) for v in result.last.values())


def test_acgan_classifies_reals_for_d_and_fakes_for_g():
    o = ConvOptions(width=8, latent_dim=16, d_condition="acgan", acgan_weight=0.5)
    D = ConvDiscriminator(o, 32, num_classes=3)
    assert D.projection is None and D.aux_losses == ("cls_real",)
    assert D.g_aux_losses == ("cls_fake",) and ConvDiscriminator.g_aux_losses == ()
    x, y = torch.randn(5, 3, 32, 32), torch.tensor([0, 1, 2, 0, 1])
    with torch.no_grad():
        plain = D(x, y=y)
        logits, real_terms = D(x, y=y, aux=2)
        _, fake_terms = D(x, y=y, g_aux=2)
        mean = D.features(x).float().mean((2, 3))
        want_real = torch.nn.functional.cross_entropy(D.classifier(mean[:2]), y[:2]) * 0.5
        want_fake = torch.nn.functional.cross_entropy(D.classifier(mean[2:]), y[2:]) * 0.5
    assert torch.equal(logits, plain)  # the class enters only through the classifier
    torch.testing.assert_close(real_terms["cls_real"], want_real)
    torch.testing.assert_close(fake_terms["cls_fake"], want_fake)


def test_acgan_terms_are_logged_and_reach_g(tmp_path):
    result = api.train(config(2, **ACGAN, log_every=1), out=tmp_path / "r", data=labelled_data())
    records = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in records if "loss_d" in r][-1]
    assert np.isfinite(last["aux_cls_real"]) and np.isfinite(last["aux_cls_fake"])
    assert result.step == 2


def test_a_d_returning_an_undeclared_g_step_loss_is_an_error():
    trainer = api.prepare_training(config(1, **ACGAN), data=labelled_data())
    forward = trainer.D.forward

    def renamed(x, y=None, aux=None, g_aux=None):
        out = forward(x, y=y, aux=aux, g_aux=g_aux)
        return (out[0], {"surprise": out[1]["cls_fake"]}) if g_aux is not None else out

    trainer.D.forward = renamed  # type: ignore[method-assign]
    with pytest.raises(TypeError, match=r"G-step losses \['surprise'\] not named"):
        trainer.train_step()


def test_the_generator_regularizer_gets_the_step_labels():
    trainer = api.prepare_training(config(1), data=labelled_data())
    calls = []
    trainer.G.regularizer = lambda step, n, **kw: calls.append((n, kw.get("y"))) or {}
    trainer.train_step()
    (n, y), = calls
    assert n == 6 and y is not None and y.shape == (6,) and y.dtype == torch.long


def test_balanced_batches_see_a_rare_class_as_often_as_a_common_one():
    labels = np.array([0] * 40 + [1] * 4, np.int64)
    data = ImageArray(np.zeros((44, 32, 32, 3), np.uint8), "rare", labels=labels,
                      classes=("common", "rare"))
    for balanced, low, high in ((True, 0.4, 0.6), (False, 0.0, 0.2)):
        trainer = api.prepare_training(config(class_balance=balanced, batch_size=20), data=data)
        share = torch.cat([trainer.real_batch()[1] for _ in range(20)]).float().mean().item()
        assert low < share < high, (balanced, share)


def test_resume_refuses_data_with_other_classes(tmp_path):
    root = tmp_path / "data"
    for i, name in enumerate(("cat", "dog")):
        write_images(root / name, 4, seed=i)
    cfg = config(2, data=str(root), batch_size=4)
    api.train(cfg, out=tmp_path / "r")
    shutil.move(root / "dog", root / "wolf")
    with pytest.raises(DataError, match=r"classes of .* \(2: 'cat', 'wolf'\) differ from this "
                       r"run's \(2: 'cat', 'dog'\)"):
        api.train(resume=tmp_path / "r", steps=4)


def test_a_checkpoint_resumes_only_with_its_own_classes(tmp_path):
    api.train(config(2), out=tmp_path / "r", data=labelled_data())
    tensors, meta = final_checkpoint(tmp_path / "r")
    other = api.prepare_training(config(2), data=labelled_data(classes=("a", "b", "z")))
    with pytest.raises(CheckpointError, match="trained on 3 classes \\('a', 'b', 'c'\\), the "
                       "data has 3 \\('a', 'b', 'z'\\)"):
        other.load_state(tensors, meta)
    meta_unconditional = {**meta, "classes": None}
    with pytest.raises(CheckpointError, match="from an unconditional run"):
        other.load_state(tensors, meta_unconditional)


class _Plain(Conv32):
    """An unconditional test architecture."""

    name = "t_plain32"
    conditional = False


class _PlainPlugin:
    @gan_zoo.hookimpl
    def register_architectures(self, register):
        register(_Plain)


def test_an_unconditional_architecture_is_refused_by_name():
    with temp_plugin(_PlainPlugin(), "t-plain"), pytest.raises(
            UsageError, match="architecture 't_plain32' is unconditional.*Conditional "
            "architectures: .*conv32"):
        api.prepare_training({**config(), "arch": "t_plain32",
                              "options": {"t_plain32": TINY["conv32"]}}, data=labelled_data())


def test_class_keys_need_a_conditional_run():
    with pytest.raises(UsageError, match="class_balance is for conditional runs"):
        api.make_config({"class_balance": True})


def test_cli_trains_on_the_builtin_shapes_and_refuses_a_flat_folder(tmp_path):
    runner = CliRunner()
    args = ["train", "--conditional", "--steps", "2", "--batch-size", "4", "-o",
            "conv32.width=8", "-o", "conv32.latent_dim=16"]
    ok = runner.invoke(cli, [*args, "--out", str(tmp_path / "r")])
    assert ok.exit_code == 0, ok.output
    assert "conditional: 3 classes ('disc', 'square', 'triangle')" in ok.output
    records = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 2
    flat = write_images(tmp_path / "flat", 4)
    bad = runner.invoke(cli, [*args, "--data", str(flat), "--out", str(tmp_path / "f")])
    assert bad.exit_code != 0
    assert "has no subfolders" in bad.output and "Traceback" not in bad.output
    assert not (tmp_path / "f" / "checkpoints").exists()


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("cond") / "r"
    api.train(config(2), out=run, data=labelled_data())
    return run


def test_class_grid_has_one_class_per_row_and_the_same_noise_down_each_column(conditional_run):
    G, _ = api.load_generator(conditional_run)
    grid = api.class_grid(G, ["c", 0], columns=3, seed=5)
    assert grid.shape == (6, 3, 32, 32)
    z = G.sample_latent(3, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        row_c = G(z, y=torch.full((3,), 2)).clamp(-1, 1)
        row_a = G(z, y=torch.zeros(3, dtype=torch.long)).clamp(-1, 1)
    torch.testing.assert_close(grid[:3], row_c, atol=1 / 127, rtol=0)
    torch.testing.assert_close(grid[3:], row_a, atol=1 / 127, rtol=0)
    assert api.class_grid(G, columns=2).shape == (6, 3, 32, 32)  # every class


def test_sample_by_class_takes_the_classes_in_turn(conditional_run):
    G, _ = api.load_generator(conditional_run)
    both = api.sample(G, 4, seed=1, classes=["a", "c"])
    only_a = api.sample(G, 4, seed=1, classes=["a"])
    only_c = api.sample(G, 4, seed=1, classes=[2])
    assert torch.equal(both[0], only_a[0]) and torch.equal(both[2], only_a[2])
    assert torch.equal(both[1], only_c[1]) and torch.equal(both[3], only_c[3])
    assert not torch.equal(only_a, only_c)
    with pytest.raises(UsageError, match="no class 'cc'; did you mean 'c'"):
        api.sample(G, 2, classes=["cc"])


def test_cli_sample_class_and_class_grid(conditional_run, tmp_path):
    runner = CliRunner()
    base = ["sample", str(conditional_run), "--seed", "3"]
    ok = runner.invoke(cli, [*base, "--class", "b", "-n", "3", "--out", str(tmp_path / "b")])
    assert ok.exit_code == 0, ok.output
    assert len(list((tmp_path / "b").glob("*.png"))) == 3
    grid = runner.invoke(cli, [*base, "--class-grid", "-n", "4", "--out",
                               str(tmp_path / "grid.png")])
    assert grid.exit_code == 0, grid.output
    from PIL import Image
    with Image.open(tmp_path / "grid.png") as im:
        assert im.height > im.width / 4 * 2  # three rows of four 32 px images (with padding)
    for args, message in (
            (["--class", "dgo", "--out", str(tmp_path / "x")], "no class 'dgo'; its classes: 'a', 'b', 'c'"),
            (["--class-grid", "--out", str(tmp_path / "grid.gif")], "--class-grid draws one"),
            (["--interpolate", "3", "--out", str(tmp_path / "w.gif")],
             None)):
        result = runner.invoke(cli, [*base, *args])
        if message is None:  # a walk without --class picks a class from the seed
            assert result.exit_code == 0, result.output
            continue
        assert result.exit_code != 0 and message in result.output, result.output
        assert "Traceback" not in result.output
    two = runner.invoke(cli, [*base, "--interpolate", "3", "--class", "a", "--class", "b",
                              "--out", str(tmp_path / "w2.gif")])
    assert two.exit_code != 0 and "give --class once" in two.output


def test_an_unconditional_generator_has_no_classes(tmp_path):
    api.train({**config(1), "conditional": False}, out=tmp_path / "u", data=labelled_data())
    G, _ = api.load_generator(tmp_path / "u")
    with pytest.raises(UsageError, match="this generator is unconditional"):
        api.sample(G, 2, classes=["a"])
    result = CliRunner().invoke(cli, ["sample", str(tmp_path / "u"), "--class-grid", "--out",
                                      str(tmp_path / "g.png")])
    assert result.exit_code != 0 and "needs a conditional generator" in result.output


def test_evaluation_draws_labels_by_the_training_shares(conditional_run):
    from gan_zoo.evaluation.core import generated_batches

    G, _ = api.load_generator(conditional_run)
    seen = []
    original = G.forward

    def spy(z, y=None, **kw):
        seen.append(y)
        return original(z, y=y, **kw)

    G.forward = spy  # type: ignore[method-assign]
    batches = list(generated_batches(G, 10, batch_size=4, seed=0))
    assert sum(len(b) for b in batches) == 10
    assert all(y is not None for y in seen)
    assert set(torch.cat(seen).tolist()) <= {0, 1, 2}
