"""Curves and sample evolution: parsing metrics, drawing, and live updates during training."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from gan_zoo import api
from gan_zoo.data.images import grid
from gan_zoo.visual import curves, evolution, live
from gan_zoo.visual.curves import load_run, plot_curves, series_from_records

TINY = {"conv32": {"width": 8, "latent_dim": 16}}


def _train_record(step, loss_d=0.7, **extra):
    return {"step": step, "epoch": 0, "loss_d": loss_d, "loss_g": 1.0, "d_real": 0.6,
            "d_fake": 0.4, "d_acc": 0.5, "d_steps": 1.0, "img_per_s": 100.0,
            "knob.noise_std_real": 0.0, "knob.noise_std_fake": 0.0, "knob.d_steps": 1.0,
            "knob.d_batch_fraction": 1.0, "knob.lr_g_scale": 1.0, "knob.lr_d_scale": 1.0,
            "knob.augment_p": 1.0, "time": 0.1 * step, **extra}


def test_series_replaces_history_logged_again_after_rollback():
    records = [_train_record(s, loss_d=float(s)) for s in (1, 2, 3, 4)]
    records.append({"step": 2, "event": "rollback", "reason": "x", "lr_factor": 0.5,
                    "rollbacks": 1})
    records += [_train_record(s, loss_d=10.0 + s) for s in (3, 4, 5)]
    s = series_from_records(records, config={"lr_g": 2e-4, "lr_d": 4e-4})
    steps, values = s.train["loss_d"]
    assert steps.tolist() == [1, 2, 3, 4, 5]
    assert values.tolist() == [1.0, 2.0, 13.0, 14.0, 15.0]
    assert [e["event"] for e in s.events] == ["rollback"]
    assert s.evals == {}  # a rollback record is not a metric
    lrs = s.learning_rates()
    # the rollback at step 2 halves both rates for the steps run after it
    assert lrs["lr_g"][1] == pytest.approx([2e-4, 2e-4, 1e-4, 1e-4, 1e-4])
    assert lrs["lr_d"][1] == pytest.approx([4e-4, 4e-4, 2e-4, 2e-4, 2e-4])


def test_evaluation_records_become_metrics_with_best():
    records = [_train_record(s) for s in range(1, 7)]
    records += [{"step": 2, "event": "eval", "metric": "fid", "fid": 80.0, "fid_n": 500,
                 "best": True, "eval_seconds": 3.0},
                {"step": 4, "event": "fid", "fid": 55.0, "n": 500, "max_real": 1000,
                 "seconds": 3.0, "weights": "x.pt"},
                {"step": 6, "metric": "fid", "value": 61.0, "n": 500}]
    s = series_from_records(records)
    assert set(s.evals) == {"fid"}  # counts, timings and flags are bookkeeping
    assert s.evals["fid"][0].tolist() == [2, 4, 6]
    assert s.best("fid") == (4, 55.0)  # lower is better for FID
    assert s.last("fid") == 61.0
    assert s.last_step == 6


def test_higher_is_better_metric_best_is_the_maximum():
    s = series_from_records([{"step": 1, "recall": 0.2}, {"step": 2, "recall": 0.6},
                             {"step": 3, "recall": 0.4}])
    assert s.best("recall") == (2, 0.6)


def _png_size(path):
    with Image.open(path) as img:
        img.load()
        return img.size


def test_plot_one_run_several_runs_and_an_empty_one(tmp_path):
    a = series_from_records([_train_record(s, loss_d=1 / s) for s in range(1, 80)], "a",
                            {"arch": "conv32", "lr_g": 2e-4, "lr_d": 2e-4})
    noisy = [_train_record(s, **{"knob.noise_std_real": 0.3 * (s < 40), "d_steps": 1 + (s > 50)})
             for s in range(1, 80)]
    b = series_from_records(noisy + [{"step": 40, "fid": 70.0}], "b", {"lr_g": 1e-4, "lr_d": 4e-4})
    assert curves._knob_keys([a]) == []
    assert curves._knob_keys([a, b]) == ["noise_std_real"]
    assert _png_size(plot_curves(a, tmp_path / "one.png")) == (1300, 1100)
    assert _png_size(plot_curves([a, b], tmp_path / "two.png")) == (1300, 1100)
    assert _png_size(plot_curves(series_from_records([]), tmp_path / "none.png")) == (1300, 1100)
    # different data, different picture
    assert (tmp_path / "one.png").read_bytes() != (tmp_path / "two.png").read_bytes()
    with pytest.raises(ValueError):
        plot_curves([], tmp_path / "x.png")


def test_grid_tiles_recover_the_images():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10, 12, 12, 3), dtype=np.uint8)
    tiles = evolution.grid_tiles(grid(images), 10, 5)
    assert len(tiles) == 5
    for tile, original in zip(tiles, images[:5], strict=True):
        assert np.array_equal(np.asarray(tile), original)


def test_pick_evenly_keeps_first_and_last():
    assert evolution.pick_evenly(list(range(100)), 5) == [0, 25, 50, 74, 99]
    assert evolution.pick_evenly([1, 2], 5) == [1, 2]
    assert evolution.pick_evenly([1, 2, 3], 1) == [3]


def _train(tmp_path, image_folder, **cfg):
    config = {"arch": "conv32", "data": str(image_folder), "steps": 4, "batch_size": 4,
              "log_every": 1, "sample_every": 2, "sample_grid": 16, "options": TINY, **cfg}
    return api.train(config, out=tmp_path / "run")


def test_training_keeps_curves_and_evolution_in_the_run(tmp_path, image_folder):
    result = _train(tmp_path, image_folder)
    run = result.run_dir
    assert _png_size(run / "curves.png") == (1300, 1100)
    width, height = _png_size(run / "evolution.png")
    # two grids (steps 2 and 4) -> two rows of 8 images of 64 px (32 px doubled) and 4 px gaps
    assert height == 4 + 2 * (64 + 4)
    assert width == 110 + 8 * (64 + 4) + 4
    series = load_run(run)
    assert series.train["loss_d"][0].tolist() == [1, 2, 3, 4]
    assert series.config["arch"] == "conv32"
    assert not (run / "tensorboard").exists()  # only with --tensorboard
    for name in ("curves.png", "evolution.png"):  # readable by others, like any written file
        assert (run / name).stat().st_mode & 0o777 == 0o644


def test_live_plots_redraw_after_each_grid(tmp_path, image_folder, monkeypatch):
    drawn = []
    monkeypatch.setattr(live, "plot_curves", lambda s, out: drawn.append(s.last_step))
    # a run killed before its first checkpoint, while drawing
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "config.toml").write_text('arch = "conv32"\n')
    # a drawing cut short by the kill (gan_zoo.util.atomic's name), beside a user's look-alike
    litter = tmp_path / "run" / ".curves.png.ganzoo-abc12345.tmp"
    litter.write_bytes(b"half a png")
    users = tmp_path / "run" / ".curves.png.old.tmp"
    users.write_bytes(b"keep me")
    _train(tmp_path, image_folder, steps=5)
    assert not litter.exists()
    assert users.read_bytes() == b"keep me"
    # after the grids of steps 2, 4 and the last one (5); the end adds nothing new
    assert drawn == [2, 4, 5]


def test_a_failing_plot_is_one_warning_not_the_end_of_training(tmp_path, image_folder,
                                                               monkeypatch):
    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(live, "plot_curves", broken)
    monkeypatch.setattr(live, "evolution_strip", broken)
    messages = []
    trainer = api.prepare_training(
        {"arch": "conv32", "data": str(image_folder), "steps": 4, "batch_size": 4,
         "sample_every": 1, "options": TINY}, out=tmp_path / "run", log=messages.append)
    summary = trainer.train()
    assert summary["step"] == 4
    warnings = [m for m in messages if "not updated" in m]
    assert len(warnings) == 1 and "No space left" in warnings[0]
    assert (tmp_path / "run" / "checkpoints" / "step-0000004.safetensors").exists()


def test_metrics_lines_cut_by_a_crash_are_ignored(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(
        json.dumps(_train_record(1)) + "\n" + '{"step": 2, "loss_d": 0.' + "\n")
    s = load_run(tmp_path)
    assert s.train["loss_d"][0].tolist() == [1]
    assert s.config == {}


def test_the_closing_drawing_comes_after_other_end_callbacks(tmp_path, image_folder,
                                                           monkeypatch):
    """A final evaluation logged by a callback attached after the plots still reaches
    curves.png."""
    drawn = []
    monkeypatch.setattr(live, "plot_curves", lambda s, out: drawn.append(dict(s.evals)))
    trainer = api.prepare_training(
        {"arch": "conv32", "data": str(image_folder), "steps": 3, "batch_size": 4,
         "sample_every": 3, "options": TINY}, out=tmp_path / "run")
    trainer.callbacks.on_end.append(
        lambda tr: tr.run.log({"step": tr.step, "event": "eval", "metric": "fid", "fid": 42.0}))
    trainer.train()
    assert "fid" not in drawn[0]  # the grid at step 3, before the final evaluation
    assert drawn[-1]["fid"][1].tolist() == [42.0]
