"""`ganzoo report`: the self-contained HTML page about one or several runs."""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from gan_zoo import api
from gan_zoo.cli import cli
from gan_zoo.data.images import grid
from gan_zoo.visual.report import build_report

TINY = {"conv32": {"width": 8, "latent_dim": 16}}


def make_run(folder: Path, steps: int = 40, fids: tuple[float, ...] = (90.0, 60.0, 70.0),
             noise: bool = False, name_in_config: str = "conv32") -> Path:
    """A run directory written the way the trainer writes one, without training (fast)."""
    rng = np.random.default_rng(len(fids) + steps)
    (folder / "samples").mkdir(parents=True)
    (folder / "checkpoints").mkdir()
    (folder / "config.toml").write_text(
        f'arch = "{name_in_config}"\nloss = "bce"\nsteps = {steps}\nbatch_size = 8\n'
        'schedules = ["noise-anneal"]\nlr_g = 0.0002\nlr_d = 0.0004\nsample_grid = 16\n'
        '[options.conv32]\nwidth = 8\n')
    lines = []
    for s in range(1, steps + 1):
        lines.append({"step": s, "loss_d": 1.4 - s / steps, "loss_g": 0.7 + s / steps,
                      "d_real": 0.6, "d_fake": 0.3, "d_acc": 0.7, "d_steps": 1.0,
                      "img_per_s": 200.0, "knob.noise_std_real": 0.3 if noise else 0.0,
                      "knob.noise_std_fake": 0.0, "knob.d_steps": 1.0, "knob.lr_g_scale": 1.0,
                      "knob.lr_d_scale": 1.0, "knob.d_batch_fraction": 1.0,
                      "knob.augment_p": 1.0, "time": s * 0.5})
    for i, fid in enumerate(fids):
        lines.append({"step": (i + 1) * steps // len(fids), "event": "eval", "metric": "fid",
                      "fid": fid, "fid_n": 500, "best": fid == min(fids), "eval_seconds": 2.0})
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    for s in (steps // 2, steps):
        images = rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
        grid(images).save(folder / "samples" / f"step-{s:07d}.png")
        grid(images).save(folder / "samples.png")
    return folder


def embedded_images(text: str) -> list[Image.Image]:
    out = []
    for data in re.findall(r'src="data:image/png;base64,([^"]+)"', text):
        img = Image.open(__import__("io").BytesIO(base64.b64decode(data)))
        img.load()
        out.append(img)
    return out


def test_one_run_report_has_config_metrics_and_three_pictures(tmp_path):
    run = make_run(tmp_path / "baseline")
    out = build_report([run], tmp_path / "out" / "report.html")
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    # self-contained: no reference to anything outside the file
    assert not re.search(r'(src|href)="(?!data:|#)', text)
    assert "<script" not in text
    images = embedded_images(text)
    assert [img.size for img in images][0] == (1300, 1100)  # curves
    assert len(images) == 3  # curves, evolution, final grid
    assert images[2].size == Image.open(run / "samples.png").size
    # config, status, final values, best metric with its step
    assert "noise-anneal" in text and "options.conv32.width" in text
    assert "40 of 40 steps" in text
    assert "20 s" in text  # wall time: the last record's time
    assert "60 <span class=dim>@ 26</span>" in text  # best FID 60 at step 26 (lower is better)
    assert "lower is better" in text
    assert "Comparison" not in text


def test_several_runs_compare_and_overlay(tmp_path):
    a = make_run(tmp_path / "a", fids=(90.0, 60.0, 70.0))
    b = make_run(tmp_path / "b", fids=(80.0, 50.0), noise=True)
    text = build_report([a, b], tmp_path / "r.html", title="seed recipes").read_text()
    assert "<title>seed recipes</title>" in text
    assert "Comparison" in text and "Curves overlaid" in text
    assert len(embedded_images(text)) == 1 + 2 * 3
    # b has the better best FID: its cell is the highlighted one
    row_b = text[text.index('<td><a href="#run-2">'):]
    assert row_b.index('class="win"') < row_b.index("</tr>")
    row_a = text[text.index('<td><a href="#run-1">'):text.index('<td><a href="#run-2">')]
    assert 'class="win"' not in row_a


def test_runs_with_the_same_folder_name_are_told_apart(tmp_path):
    a = make_run(tmp_path / "x" / "run")
    b = make_run(tmp_path / "y" / "run")
    text = build_report([a, b], tmp_path / "r.html").read_text()
    assert "x/run" in text and "y/run" in text


def test_hostile_names_and_values_are_escaped(tmp_path):
    run = make_run(tmp_path / "<b>evil</b>", name_in_config="<script>alert(1)</script>")
    text = build_report([run], tmp_path / "r.html").read_text()
    assert "<script>" not in text and "<b>evil" not in text
    assert html.escape("<script>alert(1)</script>") in text


def test_a_run_without_samples_or_metrics_still_reports(tmp_path):
    run = tmp_path / "fresh"
    run.mkdir()
    (run / "config.toml").write_text('arch = "conv32"\n')
    text = build_report([run], tmp_path / "r.html").read_text()
    assert "not available yet" in text
    assert "0 steps" in text


def test_report_of_a_trained_run_through_the_cli(tmp_path, image_folder):
    result = api.train({"arch": "conv32", "data": str(image_folder), "steps": 3, "batch_size": 4,
                        "log_every": 1, "sample_every": 2, "options": TINY}, out=tmp_path / "run")
    out = tmp_path / "report.html"
    res = CliRunner().invoke(cli, ["report", str(result.run_dir), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert f"wrote {out}" in res.output
    text = out.read_text()
    assert "3 of 3 steps" in text and "conv32" in text
    assert len(embedded_images(text)) == 3


@pytest.mark.parametrize("args, message", [
    (["report", "{tmp}/missing"], "does not exist"),
    (["report", "{tmp}"], "is not a run directory"),
    (["report", "{run}/config.toml"], "is not a run directory"),
    (["report", "{run}", "--out", "{tmp}"], "is a folder"),
    (["report"], "Missing argument"),
])
def test_user_errors_are_one_message(tmp_path, args, message):
    run = make_run(tmp_path / "run")
    args = [a.format(tmp=tmp_path, run=run) for a in args]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2
    assert message in res.output
    assert "Traceback" not in res.output
