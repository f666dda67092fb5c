"""Hypothesis fuzzing of the command line (click's CliRunner) and of config-file parsing.

Properties: whatever the arguments, `ganzoo` ends with exit code 0, 1 or 2 and never a
traceback; a failure prints exactly one `Error:` line; an accepted command line reaches the
trainer with exactly the values it gave. A config file is either a valid TrainConfig or one
UsageError, and a valid config survives its own TOML round trip unchanged.

Training itself is replaced by a stand-in (these tests are about parsing): the flags are
generated from the `train` command's own parameters, so options added later are fuzzed too.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gan_zoo.cli import cli
from gan_zoo.errors import UsageError
from gan_zoo.options import parse_value
from gan_zoo.plugins import get_registry
from gan_zoo.training.config import TrainConfig, load_config_file, make_config
from gan_zoo.util.tomlio import dumps_toml

from .helpers import tiny_data

# Not fuzzed here: where to write (--out is set per example), runs to continue, and launching
# worker processes (--nproc): each has its own tests.
SKIP = {"--out", "--resume", "--config", "--nproc", "--dist-timeout", "--data"}
NASTY = ["", " ", "-1", "0", "1", "nan", "inf", "-inf", "1e999", "-0.0", "1.5", "true", "null",
         "none", "=", "a=b", "..", "../x", "/", "[", "[[[[[[[[", "{}", "\x00", "\x7f", "é",
         "conv32", "conv32.width=8", "--steps", "-o", "9" * 40, "0x10", "1_000"]
REAL_NAMES = st.sampled_from(["conv32", "conv64", "bce", "hinge", "fid", "cosine"])


class Accepted(Exception):  # noqa: N818 - an outcome, not an error
    """Raised where the trainer would be built: the command line was accepted."""

    def __init__(self, config: TrainConfig):
        super().__init__("accepted")
        self.config = config


class FakeTrainer:
    """Stands in for Trainer: parsing is over when it is reached, nothing trains."""

    def __init__(self, config: TrainConfig, *args: Any, **kwargs: Any):
        raise Accepted(config)


@pytest.fixture(scope="module")
def fake_training():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("gan_zoo.api.Trainer", FakeTrainer)
        mp.setattr("gan_zoo.api.load_dataset", lambda data, res: tiny_data(res=res))
        mp.setattr("gan_zoo.api.CALLBACK_FACTORIES", [])
        yield


def _value_strategy(param: click.Parameter) -> st.SearchStrategy[str]:
    nasty = st.sampled_from(NASTY)
    t = param.type
    if isinstance(t, click.Choice):
        return st.one_of(st.sampled_from(list(t.choices)), nasty, st.text(max_size=8))
    if isinstance(t, click.types.IntParamType):
        return st.one_of(st.integers(-(2**70), 2**70).map(str), nasty)
    if isinstance(t, click.types.FloatParamType):
        return st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr),
                         st.floats(1e-6, 1).map(str), nasty)
    if param.name in ("arch", "loss", "metric", "schedules", "augment", "recipe"):
        return st.one_of(REAL_NAMES, nasty, st.text(max_size=12))
    return st.one_of(nasty, st.text(max_size=20))


def _option_item() -> st.SearchStrategy[str]:
    names = sorted({e.name for k in ("arch", "loss", "schedule", "augment")
                    for e in get_registry().entries(k)})
    fields = sorted({f for k in ("arch", "loss", "schedule", "augment")
                     for e in get_registry().entries(k) for f in e.cls.Options.model_fields})
    component = st.one_of(st.sampled_from(names), st.text(max_size=8))
    key = st.one_of(st.sampled_from(fields), st.text(max_size=8))
    value = st.one_of(st.sampled_from(NASTY), st.integers(-5, 5000).map(str),
                      st.floats(allow_nan=True).map(repr), st.text(max_size=10))
    return st.one_of(st.builds(lambda c, k, v: f"{c}.{k}={v}", component, key, value),
                     st.text(max_size=20))


@st.composite
def train_pairs(draw) -> list[tuple[str, str | None]]:
    """(flag, value) pairs of `train` options; value None for on/off flags."""
    params = [p for p in cli.commands["train"].params
              if isinstance(p, click.Option) and p.opts[0] not in SKIP]
    pairs: list[tuple[str, str | None]] = []
    for _ in range(draw(st.integers(0, 6))):
        p = draw(st.sampled_from(params))
        flag = draw(st.sampled_from(p.opts))
        if p.is_flag:
            pairs.append((flag, None))
        elif p.name == "option_items":
            pairs.append((flag, draw(_option_item())))
        else:
            pairs.append((flag, draw(_value_strategy(p))))
    return pairs


def _invoke(args: list[str]) -> click.testing.Result:
    result = CliRunner().invoke(cli, args)
    assert "Traceback" not in result.output, (args, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit | Accepted), (
        args, repr(result.exception), result.output)
    if isinstance(result.exception, Accepted):
        return result
    assert result.exit_code in (0, 1, 2), (args, result.exit_code, result.output)
    if result.exit_code:
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1, (args, result.output)
    return result


SIMPLE = {"--batch-size": ("batch_size", int), "--seed": ("seed", int),
          "--lr-g": ("lr_g", float), "--lr-d": ("lr_d", float),
          "--keep-checkpoints": ("keep_checkpoints", int), "--steps": ("steps", int)}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pairs=train_pairs())
def test_train_options_never_crash(fake_training, pairs):
    argv = [tok for flag, value in pairs for tok in ((flag,) if value is None else (flag, value))]
    with tempfile.TemporaryDirectory() as out:
        result = _invoke(["train", *argv, "--out", str(Path(out) / "run"), "-q"])
    if not isinstance(result.exception, Accepted):
        assert result.exit_code in (1, 2) or ("--help", None) in pairs, result.output
        return
    cfg = result.exception.config
    if any(flag == "--recipe" for flag, _ in pairs):
        return  # a recipe supplies its own values under the flags
    # What was accepted is what the trainer got; click keeps an option's last occurrence.
    last = dict(pairs)
    for flag, (field, cast) in SIMPLE.items():
        if flag in last and not (flag == "--steps" and "--epochs" in last):
            got, want = getattr(cfg, field), cast(last[flag])
            assert got == want or (isinstance(want, float) and math.isclose(got, want)), field
    items = {}
    for flag, value in pairs:
        if flag in ("-o", "--option"):
            key, _, text = value.partition("=")
            component, _, field = key.strip().rpartition(".")
            items[(component, field)] = text
    for (component, field), text in items.items():
        assert cfg.options[component][field] == parse_value(text), (component, field)


TOKENS = st.one_of(st.sampled_from(NASTY + ["--arch", "--steps", "--lr-g", "--sched", "-o", "-q",
                                            "--help", "--batch-size", "--device"]),
                   st.text(max_size=12))


@settings(max_examples=100, deadline=None)
@given(command=st.sampled_from(["train", "list", "show", "sample", "plugins", "recipes", "frobnicate"]),
       tokens=st.lists(TOKENS, max_size=6))
def test_any_tokens_on_any_command_never_crash(fake_training, command, tokens):
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
        if command == "sample":
            tokens = [*tokens, "--out", "grid.png"]  # never writes into the repository
        if command == "train":
            tokens = [*tokens, "--out", "run"]
        _invoke([command, *tokens])


# ------------------------------------------------------------------ config files

FIELDS = sorted(TrainConfig.model_fields)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                    st.floats(allow_nan=True), st.text(max_size=10), st.sampled_from(NASTY))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6)
GOOD = {"arch": st.sampled_from(["conv32", "conv64"]), "steps": st.integers(1, 10**6),
        "batch_size": st.integers(1, 512), "lr_g": st.floats(1e-6, 1), "lr_d": st.floats(1e-6, 1),
        "seed": st.integers(0, 2**62), "loss": st.sampled_from(["bce", "hinge", "lsgan"]),
        "ema_decay": st.floats(0, 0.9999), "real_label": st.floats(0.01, 1.0),
        "d_update": st.sampled_from(["joint", "separate", "alternating"]),
        "keep_checkpoints": st.integers(1, 100), "data": st.text(max_size=20)}


@st.composite
def config_values(draw) -> dict[str, Any]:
    values = {}
    for _ in range(draw(st.integers(0, 6))):
        key = draw(st.one_of(st.sampled_from(FIELDS), st.text(max_size=8)))
        if key in GOOD and draw(st.booleans()):
            values[key] = draw(GOOD[key])
        else:
            values[key] = draw(VALUES)
    return values


def _write(tmp: Path, data: bytes) -> Path:
    path = tmp / "c.toml"
    path.write_bytes(data)
    return path


@settings(max_examples=200, deadline=None)
@given(values=config_values())
def test_config_files_are_valid_or_one_usage_error(values):
    try:
        text = dumps_toml(values)
    except UsageError:
        return  # not representable in TOML at all
    with tempfile.TemporaryDirectory() as tmp:
        try:
            cfg = make_config(load_config_file(_write(Path(tmp), text.encode("utf-8", "surrogatepass"))))
        except UsageError as exc:
            assert str(exc).strip() and "Traceback" not in str(exc)
            return
        # A valid config survives its own TOML form unchanged (resume and --config rely on it).
        again = make_config(load_config_file(_write(Path(tmp), cfg.to_toml().encode("utf-8"))))
        assert again == cfg


@settings(max_examples=150, deadline=None)
@given(data=st.one_of(st.binary(max_size=200),
                      st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
                      st.lists(st.sampled_from(['a = 1', '[x]', '"', "= =", "steps = 3",
                                                "lr_g = 1e-3", "[options.conv32]", "width = 8",
                                                "\x00", "arch = 'conv32'", "b = [1, [2]]",
                                                "c = {d = 1}", "inf", "x = nan"]),
                               max_size=8).map(lambda ls: "\n".join(ls).encode())))
def test_arbitrary_bytes_as_a_config_file(data):
    with tempfile.TemporaryDirectory() as tmp:
        try:
            make_config(load_config_file(_write(Path(tmp), data)))
        except UsageError as exc:
            assert "Traceback" not in str(exc)
