"""CLI runs: train at each resolution on tiny data, artifacts, exit codes, config files."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from gan_zoo.cli import cli

from .conftest import write_images


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("res", [32, 64, 128])
def test_train_each_resolution_writes_run(tmp_path, res):
    data = write_images(tmp_path / "imgs", 8, size=res + 7)
    out = tmp_path / f"run{res}"
    result = invoke("train", "--arch", f"conv{res}", "--data", data, "--steps", 2, "--batch-size",
                    4, "--out", out, "-o", f"conv{res}.width=8", "-q", "--sample-every", 1)
    assert result.exit_code == 0, result.output
    assert (out / "config.toml").exists()
    assert sorted(p.name for p in (out / "samples").iterdir()) == [
        "step-0000001.png", "step-0000002.png"]
    assert Image.open(out / "samples.png").size[0] > res
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-0000002.safetensors"]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 2
    assert {"loss_d", "loss_g", "d_real", "d_fake", "d_acc", "img_per_s"} <= set(records[-1])


def test_config_file_reruns_and_options_apply(tmp_path, image_folder):
    out = tmp_path / "first"
    assert invoke("train", "--data", image_folder, "--steps", 2, "--batch-size", 4, "--out", out,
                  "-o", "conv32.width=8", "-o", "conv32.dropout=0.2", "-q").exit_code == 0
    text = (out / "config.toml").read_text()
    assert "dropout = 0.2" in text and "steps = 2" in text
    again = tmp_path / "again"
    result = invoke("train", "--config", out / "config.toml", "--out", again, "-q")
    assert result.exit_code == 0, result.output
    assert (again / "config.toml").read_text() == text


def test_resume_extends_run(tmp_path, image_folder):
    out = tmp_path / "r"
    invoke("train", "--data", image_folder, "--steps", 2, "--batch-size", 4, "--out", out,
           "-o", "conv32.width=8", "-q")
    result = invoke("train", "--resume", out, "--steps", 4, "-q")
    assert result.exit_code == 0, result.output
    assert (out / "checkpoints" / "step-0000004.safetensors").exists()
    assert "steps = 4" in (out / "config.toml").read_text()


def test_sample_formats(tmp_path, image_folder):
    out = tmp_path / "r"
    invoke("train", "--data", image_folder, "--steps", 1, "--batch-size", 4, "--out", out,
           "-o", "conv32.width=8", "-q")
    assert invoke("sample", out, "--n", 6, "--out", tmp_path / "g.png").exit_code == 0
    assert invoke("sample", out, "--n", 6, "--out", tmp_path / "a.npy").exit_code == 0
    arr = np.load(tmp_path / "a.npy")
    assert arr.shape == (6, 32, 32, 3) and arr.dtype == np.uint8
    assert invoke("sample", out, "--n", 3, "--out", tmp_path / "folder").exit_code == 0
    assert len(list((tmp_path / "folder").glob("*.png"))) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-o", "conv32.dropout=2"], "conv32.dropout"),
        (["-o", "conv32.nope=1"], "unknown option"),
        (["-o", "dropout"], "COMPONENT.KEY=VALUE"),
        (["--batch-size", "0"], "batch_size"),
        (["--lr-g", "-1"], "lr_g"),
        (["--data", "/nonexistent/folder"], "does not exist"),
        (["-o", "conv64.width=8"], "does not use"),
    ],
)
def test_user_errors_are_one_message_no_traceback(tmp_path, args, message):
    result = CliRunner().invoke(cli, ["train", "--steps", "1", "--out", str(tmp_path / "x"), *args])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_bad_config_file_key(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('arch = "conv32"\nbatchsize = 3\n')
    result = CliRunner().invoke(cli, ["train", "--config", str(cfg)])
    assert result.exit_code == 2 and "unknown key 'batchsize'" in result.output


def test_python_module_entry_point():
    result = subprocess.run([sys.executable, "-m", "gan_zoo", "list", "arch"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "conv128" in result.stdout


def test_option_value_none_is_a_string_choice(tmp_path, image_folder):
    out = tmp_path / "n"
    result = invoke("train", "--data", image_folder, "--steps", 1, "--batch-size", 4, "--out", out,
                    "-o", "conv32.width=8", "-o", "conv32.d_norm=none", "-q")
    assert result.exit_code == 0, result.output
    assert 'd_norm = "none"' in (out / "config.toml").read_text()
