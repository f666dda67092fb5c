"""Non-finite guard: NaN/inf losses and weights are caught at once, named with their step; with
on_nonfinite=rollback the run returns to its last good checkpoint with lower learning rates, a
bounded number of times; a non-finite checkpoint is never written."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from pydantic import Field

import gan_zoo
from gan_zoo import api
from gan_zoo.cli import cli
from gan_zoo.interfaces import Loss
from gan_zoo.options import Options
from gan_zoo.training import checkpoint as ckpt
from gan_zoo.training.rundir import RunDir
from gan_zoo.training.trainer import Callbacks, NonFiniteError

from .helpers import TINY, assert_all_checkpoints_sound, checkpoint_steps, temp_plugin, tiny_config, tiny_data


class _FaultOptions(Options):
    nan_after: int = Field(10**9, ge=0, description="generator-loss calls before it returns NaN")
    g_scale: float = Field(1.0, description="factor on the generator loss (huge = overflowing grads)")


class _FaultLoss(Loss):
    """BCE with injectable faults: NaN after some calls, or an enormous generator loss."""

    name = "t_fault"
    Options = _FaultOptions

    def __init__(self, options=None):
        super().__init__(options)
        self.calls = 0

    def real_loss(self, real_logits, real_target=1.0):
        return F.softplus(-real_logits).mean()

    def fake_loss(self, fake_logits):
        return F.softplus(fake_logits).mean()

    def generator_loss(self, fake_logits):
        self.calls += 1
        loss = F.softplus(-fake_logits).mean() * self.options.g_scale
        return loss * math.nan if self.calls > self.options.nan_after else loss


class _Plugin:
    @gan_zoo.hookimpl
    def register_losses(self, register):
        register(_FaultLoss)


@pytest.fixture(autouse=True)
def fault_loss():
    with temp_plugin(_Plugin(), "t_fault_plugin"):
        yield


def _fault_config(**fault):
    return tiny_config(loss="t_fault", options={**TINY, "t_fault": fault})


def _poison_at(steps: set[int] | None, after: int | None = None):
    """A step callback that writes NaN into a G weight once after each given step, or after
    every step from `after` on."""
    pending = set(steps or ())

    def poison(trainer, stats):
        if trainer.step in pending or (after is not None and trainer.step >= after):
            pending.discard(trainer.step)
            with torch.no_grad():
                trainer.G.dense.weight[0, 0] = math.nan

    return Callbacks(on_step=[poison])


def test_nan_loss_stops_naming_step_and_quantity(tmp_path):
    with pytest.raises(NonFiniteError, match=r"^loss_g became nan at step 4; training stopped"):
        api.train(_fault_config(nan_after=3), out=tmp_path / "r", data=tiny_data())
    # Checkpoint of step 2 only (the next would be step 4), and it is finite.
    assert checkpoint_steps(tmp_path / "r") == [2]
    assert assert_all_checkpoints_sound(tmp_path / "r") == 1


def test_nan_on_cli_is_one_message_and_exit_1(tmp_path, monkeypatch):
    monkeypatch.setattr("gan_zoo.api.load_dataset", lambda data, res: tiny_data())
    result = CliRunner().invoke(cli, ["train", "--arch", "conv32", "--loss", "t_fault", "-o",
                                      "t_fault.nan_after=2", "-o", "conv32.width=8", "--steps", "5",
                                      "--batch-size", "8", "--out", str(tmp_path / "c"), "-q"])
    assert result.exit_code == 1, result.output
    assert "Error: loss_g became nan at step 3" in result.output
    assert "Traceback" not in result.output and not isinstance(result.exception, NonFiniteError)


def test_overflowing_weights_are_caught_even_with_finite_losses(tmp_path):
    # g_scale 1e30 keeps the loss finite but squares gradients past float32: Adam's second
    # moment becomes inf (and with it later updates); the check after the step catches it.
    with pytest.raises(NonFiniteError, match=r"optimizer state opt_g\.\d+\.exp_avg_sq became "
                                             r"non-finite at step 1"):
        api.train(_fault_config(g_scale=1e30), out=tmp_path / "w", data=tiny_data())
    assert checkpoint_steps(tmp_path / "w") == []


def test_nan_weight_is_named(tmp_path):
    tr = api.prepare_training(tiny_config(), out=tmp_path / "n", data=tiny_data())
    tr.train_step()
    with torch.no_grad():
        tr.D.logit.weight[0, 0] = math.inf
    with pytest.raises(NonFiniteError, match="step 2"):
        tr.train_step()
    # And directly: the weight check names the tensor.
    with torch.no_grad():
        tr.D.logit.weight[0, 0] = 0.0
        tr.G.dense.weight[1, 1] = math.nan
    with pytest.raises(NonFiniteError, match=r"weight G\.dense\.weight became non-finite"):
        tr.guard.check_state(tr.step + 1)


def test_non_finite_checkpoint_is_never_written(tmp_path):
    # Poison right before the step-4 checkpoint: the save refuses, nothing new on disk.
    with pytest.raises(NonFiniteError, match=r"G\.dense\.weight is not finite at step 4; "
                                             "checkpoint not written"):
        api.train(tiny_config(), out=tmp_path / "p", data=tiny_data(), callbacks=_poison_at({4}))
    assert checkpoint_steps(tmp_path / "p") == [2]
    assert assert_all_checkpoints_sound(tmp_path / "p") == 1


def test_rollback_returns_to_last_checkpoint_with_lower_learning_rates(tmp_path):
    cfg = tiny_config(on_nonfinite="rollback", nonfinite_lr_factor=0.5, steps=10)
    notes: list[str] = []
    tr = api.prepare_training(cfg, out=tmp_path / "rb", data=tiny_data(), log=notes.append,
                              callbacks=_poison_at({5}))
    summary = tr.train()
    # Poisoned after step 5 -> NaN detected in step 6 -> back to the step-4 checkpoint.
    assert summary["step"] == 10 and tr.rollbacks == 1 and tr.lr_factor == 0.5
    assert [g["lr"] for g in tr.opt_g.param_groups] == [cfg.get("lr_g", 2e-4) * 0.5]
    assert [g["lr"] for g in tr.opt_d.param_groups] == [2e-4 * 0.5]
    assert any("rolled back to step 4" in n and "0.5x" in n for n in notes), notes
    events = [r for r in RunDir(tmp_path / "rb").read_metrics() if r.get("event") == "rollback"]
    assert len(events) == 1 and events[0]["step"] == 4 and "step 6" in events[0]["reason"]
    assert assert_all_checkpoints_sound(tmp_path / "rb") == 3
    # The lowered rates are part of the run: saved, and restored on resume.
    _, meta = ckpt.load(RunDir(tmp_path / "rb").step_checkpoint(10))
    assert meta["lr_factor"] == 0.5 and meta["rollbacks"] == 1
    resumed = api.prepare_training(resume=tmp_path / "rb", steps=12, data=tiny_data())
    assert resumed.lr_factor == 0.5 and resumed.rollbacks == 1


def test_rollback_when_the_checkpoint_itself_would_be_non_finite(tmp_path):
    cfg = tiny_config(on_nonfinite="rollback")
    tr = api.prepare_training(cfg, out=tmp_path / "rc", data=tiny_data(), callbacks=_poison_at({4}))
    assert tr.train()["step"] == 8
    events = [r for r in RunDir(tmp_path / "rc").read_metrics() if r.get("event") == "rollback"]
    assert [e["step"] for e in events] == [2]
    assert "checkpoint not written" in events[0]["reason"]
    assert assert_all_checkpoints_sound(tmp_path / "rc") == 3


def test_rollback_before_any_checkpoint_returns_to_the_start(tmp_path):
    cfg = tiny_config(on_nonfinite="rollback", checkpoint_every=100, steps=3)
    tr = api.prepare_training(cfg, out=tmp_path / "r0", data=tiny_data(), callbacks=_poison_at({1}))
    initial = {k: v.clone() for k, v in tr.G.state_dict().items()}
    tr.train()
    assert tr.step == 3 and tr.rollbacks == 1
    events = [r for r in RunDir(tmp_path / "r0").read_metrics() if r.get("event") == "rollback"]
    assert events[0]["step"] == 0
    assert not all(torch.equal(initial[k], v) for k, v in tr.G.state_dict().items())


def test_rollbacks_are_bounded(tmp_path):
    cfg = tiny_config(on_nonfinite="rollback", nonfinite_retries=3, nonfinite_lr_factor=0.5)
    with pytest.raises(NonFiniteError, match=r"after 3 rollback\(s\) with the learning rates "
                                             r"lowered to 0\.125x; training stopped"):
        api.train(cfg, out=tmp_path / "rr", data=tiny_data(), callbacks=_poison_at(None, after=3))
    events = [r for r in RunDir(tmp_path / "rr").read_metrics() if r.get("event") == "rollback"]
    assert [e["lr_factor"] for e in events] == [0.5, 0.25, 0.125]
    assert assert_all_checkpoints_sound(tmp_path / "rr") == 1


def test_rollback_options_are_validated(tmp_path):
    for bad in ({"on_nonfinite": "retry"}, {"nonfinite_lr_factor": 1.5},
                {"nonfinite_lr_factor": 0}, {"nonfinite_retries": 0}):
        result = CliRunner().invoke(cli, ["train", "--config", str(_toml(tmp_path, bad)),
                                          "--out", str(tmp_path / "v")])
        assert result.exit_code == 2 and "Error: invalid configuration" in result.output, bad
        assert list(bad)[0] in result.output


def _toml(tmp_path, values):
    from gan_zoo.util.tomlio import dumps_toml

    path = tmp_path / "cfg.toml"
    path.write_text(dumps_toml(values))
    return path
