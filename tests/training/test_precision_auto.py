"""`--precision auto` (the default): resolved per device in the Trainer, the same through the CLI
and the Python API, shown in the run header, recorded in checkpoints, and the thread count
applied at the start of training."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from gan_zoo import api
from gan_zoo.cli import cli
from gan_zoo.errors import UsageError
from gan_zoo.training.config import TrainConfig, make_config
from gan_zoo.util import hardware

from .test_training_step import TINY, tiny_data


@pytest.fixture
def bf16_units(monkeypatch):
    """bf16_units(list): fake this CPU's bf16 matrix units ([] = none: auto picks fp32)."""
    return lambda units: monkeypatch.setattr(hardware, "cpu_bf16_units", lambda: list(units))


def config(**extra):
    return {"arch": "conv32", "batch_size": 8, "steps": 2, "options": TINY,
            "checkpoint_every": 2, **extra}


def test_auto_is_the_default_and_validated():
    assert TrainConfig().precision == "auto"
    assert make_config({"precision": "auto"}).precision == "auto"
    with pytest.raises(UsageError, match="precision"):
        make_config({"precision": "bf32"})


@pytest.mark.parametrize("units,expected,dtype", [(["AVX512_BF16"], "bf16", torch.bfloat16),
                                                  ([], "fp32", None)])
def test_api_resolves_auto_per_cpu(tmp_path, bf16_units, units, expected, dtype):
    bf16_units(units)
    trainer = api.prepare_training(config(), out=tmp_path / "run", data=tiny_data())
    assert trainer.config.precision == "auto"
    assert trainer.precision == expected
    assert trainer.autocast_dtype is dtype
    assert trainer.precision_reason.startswith("auto: this CPU has")
    assert not trainer.scaler.is_enabled()
    trainer.train()
    tensors, meta, _ = api.load_checkpoint(tmp_path / "run")
    assert meta["precision"] == expected and meta["config"]["precision"] == "auto"
    assert 'precision = "auto"' in (tmp_path / "run" / "config.toml").read_text()


def test_a_named_precision_is_not_changed_by_auto(tmp_path, bf16_units):
    bf16_units(["AMX-BF16"])
    trainer = api.prepare_training(config(precision="fp32"), out=tmp_path / "run",
                                   data=tiny_data())
    assert (trainer.precision, trainer.precision_reason) == ("fp32", "as requested")
    assert trainer.autocast_dtype is None


def test_cli_header_says_what_was_chosen_and_why(tmp_path, bf16_units, image_folder):
    bf16_units(["AVX512_BF16"])
    result = CliRunner().invoke(cli, [
        "train", "--data", str(image_folder), "--steps", "1", "--batch-size", "4",
        "--out", str(tmp_path / "run"), "-o", "conv32.width=8", "--precision", "auto"],
        catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "precision bf16 (auto: this CPU has AVX512_BF16; same FID as fp32 within seed noise)" \
        in result.output
    threads, why = hardware.choose_threads()
    assert f"threads {threads} ({why})" in result.output
    assert "channels-last (" in result.output
    bf16_units([])
    result = CliRunner().invoke(cli, [
        "train", "--data", str(image_folder), "--steps", "1", "--batch-size", "4",
        "--out", str(tmp_path / "run2"), "-o", "conv32.width=8", "--no-channels-last"],
        catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "precision fp32 (auto: this CPU has neither AMX nor AVX512_BF16" in result.output
    assert "channels-first (channels_last off)" in result.output


def test_resume_on_other_hardware_says_the_precision_changed(tmp_path, bf16_units):
    bf16_units(["AVX512_BF16"])
    api.train(config(), out=tmp_path / "run", data=tiny_data())
    bf16_units([])
    messages: list[str] = []
    trainer = api.prepare_training(resume=tmp_path / "run", steps=3, data=tiny_data(),
                                   log=messages.append)
    assert trainer.precision == "fp32"
    assert any(m.startswith("note: this run trained in bf16 until now and continues in fp32 "
                            "(auto: this CPU has neither") for m in messages), messages


def test_training_start_applies_the_thread_choice(tmp_path, monkeypatch):
    monkeypatch.setattr(hardware, "choose_threads", lambda: (1, "of 1 usable core"))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        api.prepare_training(config(), out=tmp_path / "run", data=tiny_data())
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
