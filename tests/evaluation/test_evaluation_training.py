"""Evaluation during training: best checkpoint selection and early stopping on a scripted metric
sequence, the final evaluation, resume, and failing at the start when weights are missing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from click.testing import CliRunner
from pydantic import Field

import gan_zoo
from gan_zoo import api
from gan_zoo.cli import cli
from gan_zoo.evaluation import MissingWeightsError
from gan_zoo.evaluation import weights as weights_mod
from gan_zoo.interfaces import Metric
from gan_zoo.options import Options
from gan_zoo.plugins import plugin_system
from gan_zoo.testing import registered_plugin
from gan_zoo.training import checkpoint as ckpt


class ScriptedOptions(Options):
    values: list[float] = Field(description="the values returned by successive evaluations")


class Scripted(Metric):
    """Returns the next value of a scripted sequence (lower is better)."""

    name = "scripted"
    Options = ScriptedOptions
    higher_is_better: ClassVar[bool] = False

    def __init__(self, options=None):
        super().__init__(options)
        self.calls = 0

    def evaluate(self, context) -> dict[str, float]:
        assert context.generator is not None and not context.generator.training
        value = self.options.values[self.calls % len(self.options.values)]
        self.calls += 1
        return {self.name: value, f"{self.name}_call": self.calls}


class ScriptedUp(Scripted):
    """Scripted, higher is better."""

    name = "scripted_up"
    higher_is_better: ClassVar[bool] = True


class _Plugin:
    @gan_zoo.hookimpl
    def register_metrics(self, register):
        register(Scripted)
        register(ScriptedUp)


@pytest.fixture(autouse=True)
def _only_evaluation(monkeypatch: pytest.MonkeyPatch):
    """Live plots are not under test here: attach the evaluation alone, to save CPU."""
    from gan_zoo.evaluation import during_training

    monkeypatch.setattr("gan_zoo.api.CALLBACK_FACTORIES", [during_training.attach])


@pytest.fixture(autouse=True)
def scripted_metrics():
    system = plugin_system()
    system.add_plugin(_Plugin(), name="scripted-metrics")
    yield
    system.remove_plugin("scripted-metrics")


def run(data: Path, out: Path, metric: str, values: list[float], steps: int, **extra):
    config = {"arch": "conv32", "data": str(data), "batch_size": 8, "steps": steps,
              "eval_every": 2, "metric": metric, "checkpoint_every": 100, "sample_every": 100,
              "sample_grid": 4,
              "options": {"conv32": {"width": 8}, metric: {"values": values}}, **extra}
    return api.train(config, out=out)


def evals(out: Path) -> list[dict]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r.get("event") == "eval"]


def test_best_checkpoint_and_early_stop(tmp_path: Path, image_folder: Path):
    out = tmp_path / "run"
    result = run(image_folder, out, "scripted", [5, 3, 4, 2, 6, 7, 8, 1], steps=40,
                 early_stop_patience=3)
    # Evaluations at steps 2, 4, ..., 14; best 2 at step 8; then 3 without improvement.
    assert result.step == 14 and result.stopped.startswith("early stop")
    assert "best 2 at step 8" in result.stopped
    records = evals(out)
    assert [r["step"] for r in records] == [2, 4, 6, 8, 10, 12, 14]
    assert [r["best"] for r in records] == [True, True, False, True, False, False, False]
    assert all(r["metric"] == "scripted" and r["eval_seconds"] >= 0 for r in records)
    meta = ckpt.read_meta(out / "checkpoints" / "best.safetensors")
    assert meta["step"] == 8 and meta["best"] == {"metric": "scripted", "value": 2,
                                                  "step": 8, "higher_is_better": False}
    # The best checkpoint is used by name: the API, `ganzoo sample --best`, `ganzoo fid --best`.
    _, meta = api.load_generator(out, "best")
    assert meta["step"] == 8
    res = CliRunner().invoke(cli, ["sample", str(out), "--best", "--n", "4", "--out",
                                   str(tmp_path / "g.png")])
    assert res.exit_code == 0 and "step 8" in res.output, res.output
    # The run's last checkpoint is the early-stop step, beside best.
    assert (out / "checkpoints" / "step-0000014.safetensors").exists()


def test_higher_is_better_and_final_evaluation(tmp_path: Path, image_folder: Path):
    out = tmp_path / "run"
    result = run(image_folder, out, "scripted_up", [0.1, 0.5, 0.3], steps=5)
    assert result.step == 5 and result.stopped is None
    records = evals(out)
    assert [r["step"] for r in records] == [2, 4, 5]  # the end is evaluated too
    assert [r["best"] for r in records] == [True, True, False]
    assert ckpt.read_meta(out / "checkpoints" / "best.safetensors")["best"]["value"] == 0.5


def test_resume_keeps_best_and_patience(tmp_path: Path, image_folder: Path):
    out = tmp_path / "run"
    run(image_folder, out, "scripted", [5, 3, 4], steps=6)
    assert ckpt.read_meta(out / "checkpoints" / "best.safetensors")["step"] == 4
    # Resumed: the metric instance restarts its script (5, 3, ...); best 3 from step 4 stands.
    trainer = api.prepare_training(resume=out, steps=10)
    assert trainer.evaluator.best == 3 and trainer.evaluator.best_step == 4
    assert trainer.evaluator.stale == 1
    trainer.train()
    assert [r["step"] for r in evals(out)] == [2, 4, 6, 8, 10]
    assert trainer.evaluator.stale == 3
    assert ckpt.read_meta(out / "checkpoints" / "best.safetensors")["step"] == 4


def test_missing_weights_fail_before_training(tmp_path: Path, image_folder: Path,
                                              monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(weights_mod.ENV_VAR, raising=False)
    monkeypatch.setattr(weights_mod, "fid_helper_weights", lambda: None)
    monkeypatch.setattr(weights_mod, "cleanfid_weights", lambda: tmp_path / "absent.pt")
    out = tmp_path / "run"
    with pytest.raises(MissingWeightsError, match="fid-weights"):
        api.train({"arch": "conv32", "data": str(image_folder), "batch_size": 8, "steps": 4,
                   "eval_every": 2, "options": {"conv32": {"width": 8}}}, out=out)
    assert not list((out / "checkpoints").glob("*.safetensors"))
    res = CliRunner().invoke(cli, ["train", "--data", str(image_folder), "--steps", "4",
                                   "--batch-size", "8", "-o", "conv32.width=8", "--eval-every",
                                   "2", "--out", str(tmp_path / "run2"), "-q"])
    assert res.exit_code == 1 and "Inception network weights" in res.output
    assert "Traceback" not in res.output


def test_metric_options_need_eval_every(tmp_path: Path, image_folder: Path):
    res = CliRunner().invoke(cli, ["train", "--data", str(image_folder), "--steps", "2",
                                   "--batch-size", "8", "-o", "conv32.width=8", "-o", "fid.n=10",
                                   "--out", str(tmp_path / "r"), "-q"])
    assert res.exit_code == 2 and "'fid'" in res.output and "does not use" in res.output
    res = CliRunner().invoke(cli, ["train", "--data", str(image_folder), "--steps", "2",
                                   "--batch-size", "8", "-o", "conv32.width=8", "--eval-every", "1",
                                   "--metric", "fdi", "--out", str(tmp_path / "r2"), "-q"])
    assert res.exit_code == 2 and "fid" in res.output  # did-you-mean


@pytest.mark.parametrize(("junk", "needle"), [({"junk": "worse"}, "not a number"),
                                             ({"junk": 1.0, "step": 7}, "already in the record")])
def test_a_metric_returning_junk_during_training_is_one_message(tmp_path: Path,
                                                               image_folder: Path, junk, needle):
    """A plugin's metric that returns text, or a key the record has ('step'), stopped the run
    with a traceback or overwrote the step it logged; now one message naming the metric."""

    class Junk(Metric):
        """Returns what the test asks."""

        name = "junk"

        def evaluate(self, context) -> dict[str, float]:
            return junk

    with registered_plugin(Junk, name="junk-metric"):
        res = CliRunner().invoke(cli, [
            "train", "--data", str(image_folder), "--steps", "2", "--batch-size", "8",
            "-o", "conv32.width=8", "--eval-every", "1", "--metric", "junk",
            "--out", str(tmp_path / "run"), "-q"])
    assert res.exit_code == 1, res.output
    assert "metric 'junk' returned" in res.output and needle in res.output
    assert "Traceback" not in res.output


def test_evaluation_does_not_change_training(tmp_path: Path, image_folder: Path):
    """A real offline metric (coverage: builds a random network, samples the generator) leaves
    the training bit for bit as without evaluation."""
    base = {"arch": "conv32", "data": str(image_folder), "batch_size": 8, "steps": 4,
            "checkpoint_every": 100, "sample_every": 100, "ema_decay": 0, "sample_grid": 4}
    plain = api.train({**base, "options": {"conv32": {"width": 8}}}, out=tmp_path / "a")
    evald = api.train({**base, "eval_every": 2, "metric": "coverage",
                       "options": {"conv32": {"width": 8}, "coverage": {"n": 16}}},
                      out=tmp_path / "b")
    assert [r["step"] for r in evals(tmp_path / "b")] == [2, 4]
    for (k, v), (_, w) in zip(plain.trainer.G.state_dict().items(),
                              evald.trainer.G.state_dict().items(), strict=True):
        assert torch.equal(v, w), k
