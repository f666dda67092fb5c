"""fp16 training with a gradient scaler, run on CPU so the CUDA-only crash cannot come back.

GradScaler allows one step() per optimizer between update() calls; every D pass and the G step
must step and update the scaler once (alternating D updates once stepped D twice).
"""

from __future__ import annotations

import math

import pytest
import torch

from gan_zoo import api
from gan_zoo.training.rundir import RunDir
from gan_zoo.training.trainer import Trainer

from ..reliability.helpers import TINY, assert_bit_identical, tiny_config, tiny_data

pytestmark = pytest.mark.filterwarnings("ignore:--precision fp16 on CPU")

NO_NORM = {"conv32": {**TINY["conv32"], "d_norm": "none"}}  # wgan-gp wants a D without batch norm
REGULARIZED = {
    "plain": {},
    "r1": {"r1_gamma": 1.0},
    "wgan-gp": {"loss": "wgan-gp", "options": NO_NORM},
}
D_PASSES = {"joint": 1, "separate": 1, "alternating": 2}


def fp16_trainer(tmp_path, **extra) -> Trainer:
    return api.prepare_training(tiny_config(precision="fp16", **extra), out=tmp_path / "run",
                                data=tiny_data())


def record_scaler_calls(tr: Trainer) -> list[str]:
    """Log "d"/"g" for each scaler.step (by optimizer) and "update" for each scaler.update."""
    calls: list[str] = []
    step, update = tr.scaler.step, tr.scaler.update

    def logged_step(optimizer, *args, **kwargs):
        calls.append("d" if optimizer is tr.opt_d else "g")
        return step(optimizer, *args, **kwargs)

    def logged_update(*args, **kwargs):
        calls.append("update")
        return update(*args, **kwargs)

    tr.scaler.step, tr.scaler.update = logged_step, logged_update
    return calls


@pytest.mark.parametrize("regularizer", REGULARIZED)
@pytest.mark.parametrize("mode", D_PASSES)
def test_fp16_steps_and_updates_the_scaler_once_per_pass(tmp_path, mode, regularizer):
    tr = fp16_trainer(tmp_path, d_update=mode, **REGULARIZED[regularizer])
    assert tr.scaler.is_enabled() and tr.autocast_dtype is torch.float16
    calls = record_scaler_calls(tr)
    d_before = {k: v.clone() for k, v in tr.D.state_dict().items()}
    steps = 3
    stats = [tr.train_step() for _ in range(steps)]
    one_step = ["d", "update"] * D_PASSES[mode] + ["g", "update"]
    assert calls == one_step * steps
    assert all(math.isfinite(s["loss_d"]) and math.isfinite(s["loss_g"]) for s in stats)
    # The scaler really ran: it counts updates without an overflow since its last change.
    tracker = tr.scaler.state_dict()["_growth_tracker"]
    assert 0 < tracker <= len(one_step) // 2 * steps
    assert any(not torch.equal(d_before[k], v) for k, v in tr.D.state_dict().items())
    assert all(p.dtype == torch.float32 for p in tr.D.parameters())  # weights stay float32


@pytest.mark.parametrize("mode", D_PASSES)
def test_overflowing_gradients_skip_the_step_without_tripping_the_guard(tmp_path, mode):
    # A scale of 2**100 overflows every fp16 gradient (R1's input gradient included): the scaler
    # skips each step and halves its scale; the loss stayed finite, so no rollback.
    tr = fp16_trainer(tmp_path, d_update=mode, r1_gamma=1.0)
    tr.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**100)
    g_before = {k: v.clone() for k, v in tr.G.state_dict().items() if v.is_floating_point()}
    d_before = {k: v.clone() for k, v in tr.D.named_parameters()}
    stats = tr.train_step()
    updates = D_PASSES[mode] + 1
    assert tr.scaler.get_scale() == 2.0 ** (100 - updates)
    assert tr.rollbacks == 0 and math.isfinite(stats["loss_d"]) and math.isfinite(stats["loss_g"])
    assert_bit_identical(d_before, dict(tr.D.named_parameters()))
    assert_bit_identical({k: p for k, p in g_before.items() if k in dict(tr.G.named_parameters())},
                         {k: p for k, p in tr.G.named_parameters() if k in g_before})
    tr.train_step()  # still no error, and training goes on


def test_fp16_r1_keeps_small_gradients(tmp_path):
    # R1 differentiates D's scaled output: with D's input gradients around 1e-6 (fp16's normal
    # range ends at 6e-5) an unscaled fp16 backward loses them (12% off here); scaled, R1
    # matches float32.
    tr = fp16_trainer(tmp_path, r1_gamma=1.0)
    with torch.no_grad():
        tr.D.logit.weight.mul_(1e-5)
    real, _ = tr.real_batch()
    x = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(tr.D(x).float().sum(), x)
    exact = 0.5 * grad.pow(2).flatten(1).sum(1).mean()
    assert tr._r1(real).item() == pytest.approx(exact.item(), rel=0.02)


def test_fp16_on_cpu_warns_that_it_is_slow(tmp_path):
    with pytest.warns(UserWarning, match="fp16 on CPU is much slower"):
        fp16_trainer(tmp_path)


def test_resume_restores_the_scaler(tmp_path):
    cfg = tiny_config(precision="fp16", d_update="alternating", r1_gamma=1.0, steps=4,
                      checkpoint_every=100, seed=5)
    api.train(cfg, out=tmp_path / "straight", data=tiny_data())
    api.train({**cfg, "steps": 2}, out=tmp_path / "split", data=tiny_data())
    _, _, saved, problems = RunDir(tmp_path / "split").latest_valid()
    assert not problems and saved["step"] == 2
    assert saved["scaler"]["_growth_tracker"] > 0  # differs from a fresh scaler's state
    resumed = api.prepare_training(resume=tmp_path / "split", steps=4, data=tiny_data())
    assert resumed.scaler.is_enabled() and resumed.scaler.state_dict() == saved["scaler"]
    resumed.train()
    (_, ta, ma, _), (_, tb, mb, _) = (RunDir(tmp_path / run).latest_valid()
                                      for run in ("straight", "split"))
    assert ma["step"] == mb["step"] == 4
    assert ma["scaler"] == mb["scaler"]
    assert_bit_identical(ta, tb)
