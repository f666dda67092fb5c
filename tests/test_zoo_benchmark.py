"""benchmarks.zoo: every family's recommended recipe is a valid run, and the table says what
was measured (budget, N, the floor) from the comparisons' own files."""

from __future__ import annotations

import argparse
import json

import pytest

from benchmarks import zoo
from gan_zoo.training.assembly import build_components
from gan_zoo.training.config import load_config_file, make_config


@pytest.mark.parametrize("res", [32, 64, 128])
def test_family_recipes_build(tmp_path, res):
    paths = zoo.write_recipes(tmp_path, list(zoo.FAMILIES), res)
    assert [p.name for p in paths] == [f"{f}-{res}.toml" for f in zoo.FAMILIES]
    for path in paths:
        cfg = make_config(load_config_file(path), str(path))
        comps = build_components(cfg)
        assert comps.arch.resolution == res
    sg2 = load_config_file(tmp_path / f"stylegan2-{res}.toml")
    assert sg2["r1_gamma"] == pytest.approx(0.0002 * res * res / 64)


def _row(name: str, fid: float | None, status: str = "ok") -> dict:
    metrics = {} if fid is None else {"fid": {"value": fid}, "kid": {"value": 0.05},
                                      "coverage": {"value": 0.4}}
    return {"candidate": name, "status": status, "metrics": metrics, "steps": 900,
            "checkpoint_step": 500, "images_per_s": 40.0, "params_g": 1000, "params_d": 500,
            "train_seconds": 600.0, "train_clock": "cpu", "config": {"batch_size": 64},
            "reason": None if status == "ok" else "loss_d became nan"}


def test_table_from_finished_comparisons(tmp_path):
    args = argparse.Namespace(out=str(tmp_path), res=64, minutes=[10.0], n=1000,
                              eval_every=1000, precision="bf16", cpu="Test CPU",
                              date="2026-12-03", data_name="faces128")
    for family, row in (("conv", _row("conv-64", 120.0)), ("resnet", _row("resnet-64", 95.5)),
                        ("fastgan", _row("fastgan-64", None, "failed"))):
        folder = zoo.comparison_dir(args, 10.0, family)
        folder.mkdir(parents=True)
        (folder / "compare.json").write_text(json.dumps({"candidates": [row]}))
    budgets = zoo.collect(args)
    assert [r["candidate"] for r in budgets[10.0]["candidates"]] == \
        ["resnet-64", "conv-64", "fastgan-64"]  # ranked by FID, failed last
    text = zoo.table(budgets, {"fid": 17.0, "kid": 0.001}, args, None)
    lines = [ln for ln in text.splitlines() if ln.startswith("| 10 min")]
    # 900 steps of batch 64 in 600 CPU-seconds: 96 images per CPU-second
    assert lines[0].startswith("| 10 min | resnet | 95.5 | 50.0 | 0.40 | 500 of 900 | 96 |")
    assert "loss_d became nan" in lines[2]
    assert "FID 17.0" in text and "N = 1000" in text and "Test CPU" in text


def test_table_states_each_budgets_eval_interval(tmp_path):
    args = argparse.Namespace(out=str(tmp_path), res=64, minutes=[10.0, 30.0], n=1000,
                              eval_every=500, precision="bf16", cpu="Test CPU",
                              date="2026-12-04", data_name="faces128")
    for minutes, family, every in ((10.0, "conv", 1000), (10.0, "fastgan", 1000),
                                   (10.0, "resnet", 100000), (30.0, "conv", 2000)):
        folder = zoo.comparison_dir(args, minutes, family)
        folder.mkdir(parents=True)
        (folder / "compare.json").write_text(json.dumps(
            {"eval_every": every, "candidates": [dict(_row(f"{family}-64", 100.0), steps=5000)]}))
    text = zoo.table(zoo.collect(args), {"fid": 17.0, "kid": 0.001}, args, None)
    assert ("evaluated every 1000 steps (10 min; resnet: at the end only) and "
            "2000 steps (30 min).") in text


def test_fid_curve_points_and_figure(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    records = [{"step": 100, "loss_d": 1.0},
               {"step": 500, "event": "eval", "metric": "fid", "fid": 200.0},
               {"step": 1000, "event": "eval", "metric": "fid", "fid": 150.0},
               {"step": 1000, "event": "compare-eval", "fid": 149.0}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    row = dict(_row("conv-64", 150.0), steps=1000, run_dir=str(run))
    assert zoo.fid_points(row, 30.0) == [(15.0, 200.0), (30.0, 150.0)]
    assert zoo.fid_points(dict(row, run_dir=str(tmp_path / "gone")), 30.0) == []
    png = tmp_path / "curves.png"
    zoo.fid_curves({30.0: {"candidates": [row]}, 10.0: {"candidates": []}}, {"fid": 17.0},
                   png, 64)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cpu_rate_only_for_cpu_budgets():
    row = _row("conv-64", 100.0)
    assert zoo.cpu_rate(row) == pytest.approx(900 * 64 / 600)
    assert zoo.cpu_rate(dict(row, train_clock="wall")) is None
    assert zoo.cpu_rate(dict(row, train_seconds=None)) is None
