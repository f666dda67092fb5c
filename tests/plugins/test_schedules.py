"""Built-in schedules: the knob values they set at given steps, that instance noise reaches D's
input (and never G's images), loss-balance moving D's work with hysteresis, learning-rate
factors reaching the optimizers, state and knobs in checkpoints and logs, knob conflicts."""

from __future__ import annotations

import json
import math

import pytest
import torch

from gan_zoo import api
from gan_zoo.errors import UsageError
from gan_zoo.interfaces import TrainState
from gan_zoo.training.assembly import build

from ..training.test_training_step import TINY, tiny_data


def at(schedule, step: int, total: int = 90) -> dict[str, float]:
    """The values at progress step / total: in a run of total + 1 steps, the first (step 0)
    sees progress 0 and the last (step total) sees 1."""
    return schedule.values(TrainState(step, total + 1))


def trainer(tmp_path, **cfg):
    values = {"arch": "conv32", "batch_size": 8, "steps": 4, "options": TINY, **cfg}
    if "options" in cfg:
        values["options"] = {**TINY, **cfg["options"]}
    return api.prepare_training(values, out=tmp_path / "run", data=tiny_data())


# --------------------------------------------------------------------------- progress


@pytest.mark.parametrize("total", [2, 3, 7, 90, 1000])
def test_progress_is_0_at_the_first_step_and_1_at_the_last(total):
    seen = [TrainState(step, total).progress for step in range(total)]
    assert seen[0] == 0.0 and seen[-1] == 1.0
    assert seen == sorted(seen) and len(set(seen)) == total  # rising, one value per step
    assert TrainState(total, total).progress == 1.0  # what observe() sees after the last step


def test_progress_of_a_one_step_run_is_1():
    """Its only step is the last: a schedule's final value is what it trains with."""
    assert TrainState(0, 1).progress == 1.0
    assert TrainState(1, 1).progress == 1.0
    assert TrainState(0, 0).progress == 1.0


def _knob_rows(run_dir) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "knob.noise_std_real" in r]


@pytest.mark.parametrize(("shape", "decay"), [("staircase", "linear"), ("linear", "cosine"),
                                              ("cosine", "linear")])
def test_annealing_ends_at_its_final_value_on_the_last_step_of_a_run(tmp_path, shape, decay):
    """Issue 15: the last step saw progress (total - 1) / total, so noise annealed to 0 ended
    above 0 and a learning-rate decay above its final factor."""
    res = api.train({"arch": "conv32", "batch_size": 8, "steps": 5, "log_every": 1,
                     "schedules": ["noise-anneal", "lr"],
                     "options": {**TINY, "noise-anneal": {"shape": shape, "std": 0.3},
                                 "lr": {"decay": decay, "decay_start": 0.0, "final": 0.25}}},
                    out=tmp_path / "run", data=tiny_data())
    rows = _knob_rows(res.run_dir)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    noise = [r["knob.noise_std_real"] for r in rows]
    lr = [r["knob.lr_g_scale"] for r in rows]
    assert noise[0] == pytest.approx(0.3) and noise[-1] == 0.0
    assert noise[-2] > 0 or shape == "staircase"
    assert lr[0] == 1.0 and lr[-1] == 0.25
    assert noise == sorted(noise, reverse=True) and lr == sorted(lr, reverse=True)


# --------------------------------------------------------------------------- noise-anneal


@pytest.mark.parametrize(("step", "std"), [(0, 0.3), (29, 0.3), (30, 0.1), (59, 0.1), (60, 0.0),
                                           (89, 0.0), (90, 0.0)])
def test_noise_staircase_is_the_face_seeds_thirds(step, std):
    s = build("schedule", "noise-anneal")
    assert at(s, step) == {"noise_std_real": pytest.approx(std), "noise_std_fake": pytest.approx(std)}


@pytest.mark.parametrize(("shape", "step", "std"), [
    ("linear", 0, 0.4), ("linear", 25, 0.2), ("linear", 40, 0.08), ("linear", 50, 0.0),
    ("linear", 80, 0.0),
    ("cosine", 0, 0.4), ("cosine", 25, 0.2), ("cosine", 10, 0.2 * (1 + math.cos(math.pi / 5))),
    ("cosine", 50, 0.0), ("constant", 99, 0.4),
])
def test_noise_linear_and_cosine_reach_zero_at_end(shape, step, std):
    s = build("schedule", "noise-anneal", {"shape": shape, "std": 0.4, "end": 0.5})
    assert at(s, step, total=100)["noise_std_real"] == pytest.approx(std, abs=1e-9)


def test_noise_real_only_option_and_custom_levels():
    s = build("schedule", "noise-anneal", {"apply_to": "real", "levels": [0.5, 0.2], "end": 0.5})
    assert at(s, 0, 100) == {"noise_std_real": 0.5, "noise_std_fake": 0.0}
    assert at(s, 30, 100) == {"noise_std_real": 0.2, "noise_std_fake": 0.0}
    assert at(s, 50, 100) == {"noise_std_real": 0.0, "noise_std_fake": 0.0}
    with pytest.raises(UsageError, match="levels"):
        build("schedule", "noise-anneal", {"levels": [0.3, -0.1]})


@pytest.mark.parametrize("apply_to", ["both", "real"])
def test_noise_reaches_d_input_not_g_output(tmp_path, apply_to):
    tr = trainer(tmp_path, schedules=["noise-anneal"], options={
        "noise-anneal": {"shape": "constant", "std": 0.5, "apply_to": apply_to}})
    seen: dict[str, torch.Tensor] = {}
    real_batch = tr.real_batch

    def capture_real(n=None):
        batch = real_batch(n)
        seen["real"] = batch[0]
        return batch

    tr.real_batch = capture_real

    def keep(key: str, value: torch.Tensor) -> None:  # returns None: observes, replaces nothing
        seen.setdefault(key, value.detach().clone())

    d_inputs: list[torch.Tensor] = []
    tr.G.register_forward_hook(lambda m, i, out: keep("fake", out))
    tr.D.register_forward_pre_hook(lambda m, i: d_inputs.append(i[0].detach().clone()))
    tr.train_step()
    assert tr.knobs["noise_std_real"] == 0.5
    # G's images are untouched by the noise: still tanh outputs in [-1, 1].
    assert seen["fake"].abs().max() <= 1
    # D's update saw the 8 reals, then the 8 fakes (two passes, or one joint batch).
    d_in = torch.cat(d_inputs)[:16]
    real_noise = d_in[:8] - seen["real"]
    fake_noise = d_in[8:] - seen["fake"]
    assert 0.4 < real_noise.std() < 0.6
    if apply_to == "both":
        assert 0.4 < fake_noise.std() < 0.6
    else:
        assert torch.equal(fake_noise, torch.zeros_like(fake_noise))


# --------------------------------------------------------------------------- loss-balance


def feed(s, losses) -> list[float]:
    levels = []
    for i, loss in enumerate(losses):
        s.observe(TrainState(i + 1, 1000), {"loss_d": loss, "d_acc": 0.5})
        levels.append(s.values(TrainState(i + 1, 1000))[s.knobs[0]])
    return levels


def test_loss_balance_raises_d_work_when_d_loses_and_lowers_it_when_d_wins():
    s = build("schedule", "loss-balance", {"cooldown": 3, "smoothing": 0, "max_steps": 3})
    assert s.knobs == ("d_steps",) and at(s, 0) == {"d_steps": 1.0}
    # D losing: mean loss 1.0 > 0.5 + 0.1 -> one more update every 3 steps, capped at 3.
    assert feed(s, [2.0] * 9) == [1, 1, 2, 2, 2, 3, 3, 3, 3]
    # D winning: mean loss 0.1 < 0.4 -> back down (the cooldown has long passed), never below 1.
    assert feed(s, [0.2] * 9) == [2, 2, 2, 1, 1, 1, 1, 1, 1]


def test_loss_balance_hysteresis_holds_inside_the_band():
    s = build("schedule", "loss-balance", {"cooldown": 0, "smoothing": 0, "band": 0.1})
    s.level = 2.0
    # Mean loss wobbling between 0.42 and 0.58 around the 0.5 target: no change at all.
    assert feed(s, [0.84, 1.16] * 10) == [2.0] * 20
    assert s.changes == 0
    # Without a band the same wobble makes it flip-flop.
    flappy = build("schedule", "loss-balance", {"cooldown": 0, "smoothing": 0, "band": 0.0})
    flappy.level = 2.0
    assert feed(flappy, [0.84, 1.16] * 3) == [1, 2, 1, 2, 1, 2]


def test_loss_balance_smoothing_ignores_a_single_spike():
    s = build("schedule", "loss-balance", {"cooldown": 0, "smoothing": 0.9})
    assert feed(s, [1.0] * 5 + [2.6] + [1.0] * 5) == [1.0] * 11
    raw = build("schedule", "loss-balance", {"cooldown": 0, "smoothing": 0})
    assert feed(raw, [1.0] * 5 + [2.6] + [1.0] * 5)[5] == 2.0


def test_loss_balance_batch_share_mode_as_seed_model_8():
    s = build("schedule", "loss-balance", {"mode": "batch", "cooldown": 0, "smoothing": 0,
                                           "min_fraction": 0.5, "fraction_step": 0.25})
    assert s.knobs == ("d_batch_fraction",) and at(s, 0) == {"d_batch_fraction": 1.0}
    assert feed(s, [0.2] * 3) == [0.75, 0.5, 0.5]  # D wins: less of the batch, not below 0.5
    assert feed(s, [2.0] * 3) == [0.75, 1.0, 1.0]  # D loses: back up to the whole batch


def test_loss_balance_accuracy_signal_points_the_other_way():
    s = build("schedule", "loss-balance", {"signal": "d_acc", "target": 0.7, "cooldown": 0,
                                           "smoothing": 0, "band": 0.05})
    s.observe(TrainState(1, 10), {"loss_d": 9.0, "d_acc": 0.5})  # D weak by accuracy
    assert s.level == 2
    s.observe(TrainState(2, 10), {"loss_d": 9.0, "d_acc": 0.95})  # D strong
    assert s.level == 1


def test_loss_balance_state_round_trip_and_bounds_validation():
    s = build("schedule", "loss-balance", {"cooldown": 5})
    feed(s, [2.0] * 7)
    t = build("schedule", "loss-balance", {"cooldown": 5})
    t.load_state_dict(json.loads(json.dumps(s.state_dict())))
    assert feed(t, [2.0] * 6) == feed(s, [2.0] * 6)
    with pytest.raises(UsageError, match="min_steps"):
        build("schedule", "loss-balance", {"min_steps": 4, "max_steps": 2})


def test_loss_balance_drives_the_engine(tmp_path):
    tr = trainer(tmp_path, schedules=["loss-balance"], options={
        "loss-balance": {"cooldown": 0, "smoothing": 0, "target": 0.0}})  # D always "losing"
    d_calls = []
    d_update = tr.d_update
    tr.d_update = lambda real, fake, *y: d_calls.append(len(real)) or d_update(real, fake, *y)
    tr.train_step()
    tr.train_step()
    assert d_calls == [8, 8, 8]  # 1 D update, then 2
    assert tr.last_stats["d_steps"] == 2


# --------------------------------------------------------------------------- learning rates


def test_lr_warmup_and_decay_factors():
    s = build("schedule", "lr", {"warmup": 4, "decay": "linear", "decay_start": 0.5,
                                 "final": 0.2, "d_scale": 2.0})
    assert at(s, 0, 100) == {"lr_g_scale": 0.25, "lr_d_scale": 0.5}
    assert at(s, 3, 100) == {"lr_g_scale": 1.0, "lr_d_scale": 2.0}
    assert at(s, 75, 100)["lr_g_scale"] == pytest.approx(0.2 + 0.8 * 0.5)
    assert at(s, 100, 100)["lr_g_scale"] == pytest.approx(0.2)
    cos = build("schedule", "lr", {"decay": "cosine", "decay_start": 0.0})
    assert at(cos, 50, 100)["lr_d_scale"] == pytest.approx(0.5)
    assert at(cos, 25, 100)["lr_d_scale"] == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_ttur_defaults_and_rates_reach_the_optimizers(tmp_path):
    assert at(build("schedule", "ttur"), 0) == {"lr_g_scale": 0.5, "lr_d_scale": 2.0}
    tr = trainer(tmp_path, schedules=["ttur"], lr_g=2e-4, lr_d=2e-4)
    tr.train_step()
    assert tr.opt_g.param_groups[0]["lr"] == pytest.approx(1e-4)
    assert tr.opt_d.param_groups[0]["lr"] == pytest.approx(4e-4)


# --------------------------------------------------------------------------- combination


def test_two_schedules_on_one_knob_is_an_error_naming_both(tmp_path):
    with pytest.raises(UsageError, match="'lr' and 'ttur' both drive the knob 'lr_g_scale'"):
        trainer(tmp_path, schedules=["lr", "ttur"])
    with pytest.raises(UsageError, match="'noise-anneal' and 'noise-anneal'|given twice"):
        trainer(tmp_path, schedules=["noise-anneal", "noise-anneal"])


def test_schedules_combine_knobs_logged_state_checkpointed(tmp_path):
    res = api.train({"arch": "conv32", "batch_size": 8, "steps": 6, "log_every": 1,
                     "schedules": ["noise-anneal", "loss-balance", "ttur"],
                     "options": {**TINY, "loss-balance": {"cooldown": 2}}},
                    out=tmp_path / "run", data=tiny_data())
    rows = [json.loads(line) for line in (res.run_dir / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "knob.noise_std_real" in r]
    assert [r["knob.noise_std_real"] for r in rows] == pytest.approx([0.3, 0.3, 0.1, 0.1, 0, 0])
    assert {r["knob.lr_d_scale"] for r in rows} == {2.0}
    assert all("knob.d_steps" in r for r in rows)
    _, meta, _ = api.load_checkpoint(res.run_dir)
    assert set(meta["schedules"]) == {"noise-anneal", "loss-balance", "ttur"}
    assert meta["schedules"]["loss-balance"]["smoothed"] is not None


# --------------------------------------------------------------------------- ada


def test_ada_raises_p_while_d_overfits_and_lowers_it_after():
    s = build("schedule", "ada", {"interval": 2, "ramp_steps": 10, "p_max": 0.5})
    assert at(s, 0) == {"augment_p": 0.0}
    for i in range(8):  # D sure of every real image: sign = 1 > 0.6
        s.observe(TrainState(i + 1, 100), {"d_real_sign": 1.0})
    assert s.p == pytest.approx(0.5)  # 4 adjustments of 0.2, capped at p_max
    for i in range(4):  # D unsure: sign mean 0 < 0.6
        s.observe(TrainState(i + 9, 100), {"d_real_sign": 0.0})
    assert s.p == pytest.approx(0.1)
    t = build("schedule", "ada", {"interval": 2, "ramp_steps": 10, "p_max": 0.5})
    s.observe(TrainState(13, 100), {"d_real_sign": 1.0})  # half an interval pending
    t.load_state_dict(json.loads(json.dumps(s.state_dict())))
    for x in (s, t):
        x.observe(TrainState(14, 100), {"d_real_sign": 1.0})
    assert t.p == s.p == pytest.approx(0.3)


def test_ada_drives_augment_p_in_the_engine(tmp_path):
    tr = trainer(tmp_path, schedules=["ada"], augment=["diffaugment"],
                 options={"ada": {"interval": 1, "ramp_steps": 2, "target": 0.0}})
    tr.train_step()
    first = tr.last_stats["d_real_sign"]
    assert tr.knobs["augment_p"] == 0.0 and -1 <= first <= 1
    tr.train_step()  # p moved by interval / ramp_steps = 0.5 in the direction of sign - target
    assert tr.knobs["augment_p"] == (0.5 if first > 0 else 0.0)


def test_conflicting_schedules_on_the_command_line_exit_2():
    from click.testing import CliRunner

    from gan_zoo.cli import cli

    result = CliRunner().invoke(cli, ["train", "--sched", "noise-anneal", "--sched", "ttur",
                                      "--sched", "lr", "--steps", "1"])
    assert result.exit_code == 2
    assert "schedules 'ttur' and 'lr' both drive the knob 'lr_g_scale'" in result.output


def test_loss_balance_state_must_hold_numbers():
    """A checkpoint's loss-balance state is read as numbers when loaded, so a list or text
    for `smoothed` fails there (one checkpoint message) and not later, mid-training."""
    s = build("schedule", "loss-balance", {})
    good = {"level": 1.0, "smoothed": 0.25, "since_change": 2, "changes": 1}
    s.load_state_dict(good)
    assert s.state_dict() == good
    s.load_state_dict({**good, "smoothed": None})  # saved before the first observed step
    assert s.smoothed is None
    for bad in ([], "x", {"a": 1}):
        with pytest.raises((TypeError, ValueError)):
            s.load_state_dict({**good, "smoothed": bad})
