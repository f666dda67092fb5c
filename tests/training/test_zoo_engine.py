"""The engine features the zoo's families need, on tiny in-process plugins: auxiliary D losses,
generator regularizers, relativistic losses and time budgets (`--minutes`)."""

from __future__ import annotations

import itertools
from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import Tensor, nn

from gan_zoo import Architecture, Discriminator, Generator, api
from gan_zoo.cli import cli
from gan_zoo.errors import UsageError
from gan_zoo.interfaces import TrainState
from gan_zoo.testing import registered_plugin
from gan_zoo.training import budget as budget_mod
from gan_zoo.training import checkpoint as ckpt

from .test_training_step import TINY, tiny_data


class AuxG(Generator):
    """A linear generator with a lazy regularizer on its weights (a stand-in for path length)."""

    def __init__(self) -> None:
        super().__init__()
        self.latent_dim, self.resolution, self.channels = 8, 8, 3
        self.fc = nn.Linear(8, 3 * 8 * 8)
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, z: Tensor) -> Tensor:
        return torch.tanh(self.fc(z)).view(-1, 3, 8, 8)

    def regularizer(self, step: int, batch_size: int) -> dict[str, Tensor]:
        if step % 2:
            return {}
        self.calls += 1
        return {"wnorm": 2.0 * self.fc.weight.pow(2).mean()}


class AuxD(Discriminator):
    """A linear D with a reconstruction decoder applied to the real images only."""

    aux_losses: ClassVar[tuple[str, ...]] = ("recon",)
    seen: ClassVar[list[tuple[int, int | None]]] = []

    def __init__(self) -> None:
        super().__init__()
        self.resolution, self.channels = 8, 3
        self.enc = nn.Linear(3 * 8 * 8, 16)
        self.logit = nn.Linear(16, 1)
        self.dec = nn.Linear(16, 3 * 8 * 8)

    def forward(self, x: Tensor, aux: int | None = None):
        type(self).seen.append((len(x), aux))
        h = F.leaky_relu(self.enc(x.flatten(1)), 0.2)
        logits = self.logit(h).squeeze(1)
        if aux is None:
            return logits
        recon = F.mse_loss(self.dec(h[:aux]).float(), x[:aux].flatten(1).float())
        return logits, {"recon": recon}


class AuxArch(Architecture):
    """Tiny architecture with auxiliary losses (test only)."""

    name = "auxtest8"

    @property
    def resolution(self) -> int:
        return 8

    def build_generator(self) -> AuxG:
        return AuxG()

    def build_discriminator(self) -> AuxD:
        return AuxD()


@pytest.fixture
def aux_arch():
    AuxD.seen.clear()
    with registered_plugin(AuxArch, "auxtest"):
        yield


def _aux_trainer(**extra):
    return _plain_trainer({"arch": "auxtest8", "batch_size": 4, "steps": 4, "ema_decay": 0.0,
                           **extra})


def _plain_trainer(values, res: int = 8):
    from gan_zoo.training.assembly import build_components
    from gan_zoo.training.config import make_config
    from gan_zoo.training.trainer import Trainer

    cfg = make_config(values)
    return Trainer(cfg, build_components(cfg), tiny_data(8, res), None)


def test_aux_losses_are_computed_on_reals_trained_and_logged(aux_arch):
    tr = _aux_trainer()
    dec_before = tr.D.dec.weight.clone()
    stats = tr.train_step()
    # The decoder is used only through the auxiliary loss: it changed, so the loss reached D.
    assert not torch.equal(dec_before, tr.D.dec.weight)
    assert stats["aux_recon"] > 0 and stats["aux_wnorm"] > 0
    # Separate passes: the real forward asks for aux on all 4 images, the fake one does not,
    # and G's step calls plain forward.
    assert AuxD.seen[:3] == [(4, 4), (4, None), (4, None)]
    stats = tr.train_step()  # step 1: the lazy regularizer skips
    assert "aux_wnorm" not in stats and "aux_recon" in stats
    assert int(tr.G.calls) == 1


def test_aux_in_joint_passes_names_the_real_part(aux_arch):
    tr = _aux_trainer(d_update="joint")
    tr.train_step()
    assert AuxD.seen[0] == (8, 4)  # real and fake in one batch: the first 4 are real


def test_r1_and_penalties_call_plain_forward(aux_arch):
    tr = _aux_trainer(r1_gamma=1.0)
    tr.train_step()
    assert all(aux in (None, 4) for _, aux in AuxD.seen)
    assert sum(1 for n, aux in AuxD.seen if aux is None) == 3  # fake, R1, G step


def test_unknown_aux_name_is_an_error(aux_arch, monkeypatch):
    monkeypatch.setattr(AuxD, "aux_losses", ("other",))
    tr = _aux_trainer()
    with pytest.raises(TypeError, match="not named in its aux_losses"):
        tr.train_step()


def test_regularizer_state_resumes_bit_exactly(aux_arch, tmp_path):
    cfg = {"arch": "auxtest8", "batch_size": 4, "ema_decay": 0.0, "checkpoint_every": 2,
           "sample_every": 100}
    straight = api.train({**cfg, "steps": 4}, out=tmp_path / "a", data=tiny_data(8, 8))
    api.train({**cfg, "steps": 2}, out=tmp_path / "b", data=tiny_data(8, 8))
    resumed = api.train(resume=tmp_path / "b", steps=4, data=tiny_data(8, 8))
    for a, b in zip(straight.trainer.G.state_dict().values(),
                    resumed.trainer.G.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert int(resumed.trainer.G.calls) == 2


# --------------------------------------------------------------------------- relativistic


def test_relativistic_g_step_sees_real_logits(monkeypatch):
    from gan_zoo.plugins import get_registry

    seen = []
    cls = get_registry().get("loss", "rahinge")
    original = cls.generator_loss

    def spy(self, fake_logits, real_logits=None):
        seen.append(real_logits)
        return original(self, fake_logits, real_logits)

    monkeypatch.setattr(cls, "generator_loss", spy)
    for mode in ("separate", "joint"):
        seen.clear()
        tr = _plain_trainer({"arch": "conv32", "batch_size": 4, "steps": 2, "options": TINY,
                             "loss": "rahinge", "d_update": mode}, res=32)
        stats = tr.train_step()
        assert len(seen) == 1 and seen[0] is not None and seen[0].shape == (4,)
        assert not seen[0].requires_grad
        assert all(torch.isfinite(torch.tensor(v)) for v in stats.values())


def test_relativistic_loss_values():
    from gan_zoo.plugins import get_registry

    rah = get_registry().get("loss", "rahinge")()
    rs = get_registry().get("loss", "rsgan")()
    real, fake = torch.tensor([2.0, 4.0]), torch.tensor([-1.0, 1.0])  # means 3 and 0
    # D: relu(1 - (r - 0)) = 0 for both reals; relu(1 + (f - 3)) = relu(-3), relu(-1) = 0.
    assert rah.discriminator_loss(real, fake).item() == 0.0
    # G: relu(1 - (f - 3)) = 5, 3 -> mean 4; relu(1 + (r - 0)) = 3, 5 -> mean 4.
    assert rah.generator_loss(fake, real).item() == pytest.approx(8.0)
    d = real - fake  # 3, 3
    assert rs.discriminator_loss(real, fake).item() == pytest.approx(F.softplus(-d).mean().item())
    assert rs.generator_loss(fake, real).item() == pytest.approx(F.softplus(d).mean().item())
    with pytest.raises(TypeError, match="needs real_logits"):
        rs.generator_loss(fake)


def test_relativistic_refuses_alternating_updates():
    from gan_zoo.training.assembly import build_components
    from gan_zoo.training.config import make_config

    with pytest.raises(UsageError, match="relativistic.*alternating"):
        build_components(make_config({"loss": "rsgan", "d_update": "alternating"}))


# --------------------------------------------------------------------------- time budget


@pytest.fixture
def fake_clock(monkeypatch):
    """A wall clock that advances 0.5 s each time it is read."""
    ticks = itertools.count()
    monkeypatch.setitem(budget_mod.CLOCKS, "wall", lambda: next(ticks) * 0.5)


def _budget_run(tmp_path, name, minutes, **extra):
    cfg = {"arch": "conv32", "batch_size": 4, "time_budget": minutes, "options": TINY,
           "checkpoint_every": 1000, "sample_every": 1000, "ema_decay": 0.0,
           "schedules": ["noise-anneal"], **extra}
    return api.train(cfg, out=tmp_path / name, data=tiny_data(8))


def test_time_budget_ends_the_run_and_schedules_see_time(tmp_path, fake_clock):
    result = _budget_run(tmp_path, "b", 0.1)  # 6 s on a clock that moves 0.5 s per read
    assert 2 <= result.step < 30
    assert result.trainer.budget.exhausted()
    assert result.total_steps == result.step  # the projection ends on the last step
    rows = [r for r in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert rows
    config = (tmp_path / "b" / "config.toml").read_text()
    assert "time_budget = 0.1" in config and "steps =" not in config
    _, meta = ckpt.load(sorted((tmp_path / "b" / "checkpoints").glob("step-*"))[-1])
    assert meta["budget"]["spent"] >= 6.0 and meta["budget"]["clock"] == "wall"


def test_time_budget_resume_continues_the_budget(tmp_path, fake_clock):
    first = _budget_run(tmp_path, "r", 0.1)
    # Resuming with the same budget has nothing left: it ends at once, no step is added.
    again = api.train(resume=tmp_path / "r", data=tiny_data(8))
    assert again.step == first.step
    longer = api.train(resume=tmp_path / "r", minutes=0.2, data=tiny_data(8))
    assert longer.step > first.step
    assert longer.trainer.budget.spent >= 12.0


def test_progress_is_the_budget_share():
    state = TrainState(step=10, total_steps=11, time_fraction=0.25)
    assert state.progress == 0.25
    assert TrainState(step=10, total_steps=11).progress == 1.0
    b = budget_mod.TimeBudget(1.0, "cpu", spent=30.0)
    assert b.fraction() == 0.5 and b.projected_steps(100) == 200
    with b.paused():
        sum(range(100_000))
    b.start()
    assert b.spent >= 30.0


def test_one_run_length_only(tmp_path):
    with pytest.raises(UsageError, match="one run length"):
        api.train({"steps": 3, "time_budget": 1.0}, out=tmp_path / "x")
    res = CliRunner().invoke(cli, ["train", "--steps", "3", "--minutes", "1", "--out",
                                   str(tmp_path / "y")])
    assert res.exit_code == 2 and "one of --steps, --epochs and --minutes" in res.output
    assert "Traceback" not in res.output


def test_cli_minutes_header_and_cpu_clock(tmp_path):
    res = CliRunner().invoke(cli, ["train", "--minutes", "0.02", "--budget-clock", "cpu",
                                   "-o", "conv32.width=4", "-o", "conv32.latent_dim=8",
                                   "--batch-size", "4", "--out", str(tmp_path / "c"), "-q"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["train", "--resume", str(tmp_path / "c"), "--minutes", "0.03"])
    assert res.exit_code == 0, res.output
    assert "0.03 minutes of CPU time" in res.output
