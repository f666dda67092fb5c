"""Optional TensorBoard logging: what reaches the event files, and the missing-package message."""

from __future__ import annotations

import sys

import pytest
from click.testing import CliRunner

from gan_zoo.cli import cli
from gan_zoo.visual.tensorboard import tag_for


def _train(tmp_path, image_folder, *extra):
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["train", "--data", str(image_folder), "--steps", "3",
                                   "--batch-size", "4", "--sample-every", "2", "-o",
                                   "conv32.width=8", "-q", "--out", str(out), *extra])
    return out, res


def test_tensorboard_gets_metrics_knobs_and_sample_grids(tmp_path, image_folder):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, res = _train(tmp_path, image_folder, "--tensorboard")
    assert res.exit_code == 0, res.output
    assert "tensorboard = true" in (out / "config.toml").read_text()
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    tags = acc.Tags()
    assert {"train/loss_d", "train/loss_g", "train/d_acc", "knobs/noise_std_real",
            "knobs/d_steps"} <= set(tags["scalars"])
    assert "train/time" not in tags["scalars"] and "train/step" not in tags["scalars"]
    assert [e.step for e in acc.Scalars("train/loss_d")] == [3]  # log_every 10: the last step
    assert [e.step for e in acc.Images("samples")] == [2, 3]


def test_missing_tensorboard_is_one_message_naming_the_extra(tmp_path, image_folder,
                                                            monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    out, res = _train(tmp_path, image_folder, "--tensorboard")
    assert res.exit_code == 2
    assert "pip install 'gan-zoo[tensorboard]'" in res.output
    assert "Traceback" not in res.output


def test_tags_group_records_by_kind():
    assert tag_for("loss_d", {"step": 1}) == "train/loss_d"
    assert tag_for("knob.noise_std_real", {"step": 1}) == "knobs/noise_std_real"
    assert tag_for("fid", {"step": 1, "event": "eval"}) == "eval/fid"
    assert tag_for("lr_factor", {"step": 1, "event": "rollback"}) == "events/lr_factor"
