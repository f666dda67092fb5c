"""Hostile checkpoints with valid checksums: a generator (hypothesis) mutates a real tiny checkpoint
-- tensors dropped, renamed, reshaped, retyped, filled with NaN/inf; metadata replaced by strings,
huge or negative numbers and nested junk; architectures naming huge widths -- and saves it again
with gan_zoo.training.checkpoint.save, so the checksum is valid. Resuming it and loading its generator
must either work (and then train a step / sample finite images) or raise one GanZooError
message: never another exception, never a crash, never the learning-rate hint.

Also: the SIGSEGV reproduction through `python -m gan_zoo train --resume`, the memory of the
size cases (a 2 GB sparse file, a checkpoint naming a huge width) measured in subprocesses, and
the decision that a well-formed but invalid newest checkpoint stops a resume (it is not damage
from a crash, which falls back to an older checkpoint: see test_checkpoint_corruption.py).
"""

from __future__ import annotations

import collections
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gan_zoo import api
from gan_zoo.data import load_dataset
from gan_zoo.errors import CheckpointError, GanZooError
from gan_zoo.plugins import get_registry
from gan_zoo.training import checkpoint as ckpt
from gan_zoo.training.rundir import RunDir

from ..conftest import write_images
from .helpers import cli_env

TINY_CLI = ["--arch", "conv32", "-o", "conv32.width=8", "-o", "conv32.max_channels=16",
            "--steps", "2", "--batch-size", "4", "--checkpoint-every", "1"]
STEP_FILE = "step-0000002.safetensors"
COUNTS: collections.Counter[str] = collections.Counter()  # hostile inputs tried, by category


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """One real 2-step run (CLI, like a user's) with a schedule whose state is saved: its run
    directory, decoded data, and the step-2 checkpoint's tensors and metadata."""
    root = tmp_path_factory.mktemp("hostile-ckpt")
    data = write_images(root / "data", 16, size=32)
    run = root / "run"
    done = subprocess.run([sys.executable, "-m", "gan_zoo", "train", *TINY_CLI, "--sched",
                           "loss-balance", "--data", str(data), "--out", str(run), "-q"],
                          env=cli_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    tensors, meta = ckpt.load(RunDir(run).step_checkpoint(2))
    yield run, load_dataset(str(data), 32), tensors, meta
    if COUNTS:
        print("\nhostile checkpoints tried:", json.dumps(dict(sorted(COUNTS.items()))))


def _hostile_run(source, tensors, meta, where: Path) -> Path:
    """A run directory holding only the re-saved (valid checksum) hostile checkpoint."""
    run = where / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(source[0] / "config.toml", run / "config.toml")
    ckpt.save(run / "checkpoints" / STEP_FILE, tensors, meta)
    return run


def _one_message(exc: BaseException) -> str:
    text = str(exc)
    assert isinstance(exc, GanZooError), repr(exc)
    assert text and "\n" not in text and "Traceback" not in text, text
    assert "learning rate" not in text, f"a checkpoint problem blamed the learning rate: {text}"
    return text


def _resume_and_sample(source, tensors, meta) -> str:
    """'resumed'/'refused' and 'sampled'/'refused' for resume and sampling of this state."""
    outcome = []
    with tempfile.TemporaryDirectory() as tmp:
        run = _hostile_run(source, tensors, meta, Path(tmp))
        try:
            trainer = api.prepare_training(resume=run, data=source[1])
        except GanZooError as exc:
            _one_message(exc)
            outcome.append("resume refused")
        else:
            stats = trainer.train_step()  # whatever was accepted must train (no NonFiniteError)
            assert all(math.isfinite(v) for v in stats.values()), stats
            outcome.append("resumed")
        try:
            G, _ = api.load_generator(run / "checkpoints" / STEP_FILE)
        except GanZooError as exc:
            _one_message(exc)
            outcome.append("sample refused")
        else:
            assert torch.isfinite(api.sample(G, 2, seed=0)).all()
            outcome.append("sampled")
    return ", ".join(outcome)


# ------------------------------------------------------------------ the generator: tensors

DTYPES = [torch.int64, torch.float16, torch.bool, torch.uint8, torch.float64, torch.bfloat16]
TENSOR_HOW = ["drop", "rename", "zeros(1)", "extra dim", "transposed", "empty", "dtype", "NaN",
              "inf", "-inf", "negative", "scrambled bytes", "extra tensor"]


def _mutate_tensor(tensors: dict, name: str, how: str, dtype: torch.dtype, seed: int) -> None:
    t = tensors[name]
    if how == "drop":
        del tensors[name]
    elif how == "rename":
        tensors[name + "_renamed"] = tensors.pop(name)
    elif how == "zeros(1)":
        tensors[name] = torch.zeros(1)
    elif how == "extra dim":
        tensors[name] = t.unsqueeze(0)
    elif how == "transposed":
        tensors[name] = t.T.contiguous() if t.dim() == 2 else t.reshape(-1, 1) if t.dim() == 1 \
            else t.transpose(0, -1).contiguous() if t.dim() > 2 else t.reshape(1)
    elif how == "empty":
        tensors[name] = t.reshape(-1)[:0]
    elif how == "dtype":
        tensors[name] = t.to(dtype)
    elif how in ("NaN", "inf", "-inf"):
        t = t.double() if not t.is_floating_point() else t.clone()
        if t.numel():
            t.view(-1)[seed % t.numel()] = float(how.lower())
        tensors[name] = t
    elif how == "negative":
        tensors[name] = -t.double().abs() - 1 if not t.is_floating_point() else -t.abs() - 1
    elif how == "scrambled bytes":
        g = torch.Generator().manual_seed(seed)
        raw = torch.randint(0, 256, (t.numel() * t.element_size(),), dtype=torch.uint8, generator=g)
        scrambled = raw.view(t.dtype).reshape(t.shape) if t.numel() else t
        if scrambled.is_floating_point():  # random finite values, not bit patterns of NaN
            scrambled = torch.randn(t.shape, generator=g, dtype=t.dtype)
        tensors[name] = scrambled
    elif how == "extra tensor":
        tensors[f"{name.split('.')[0]}.hostile_extra"] = torch.zeros(3)


@settings(max_examples=50, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.data())
def test_hostile_tensors(source, data):
    tensors, meta = dict(source[2]), json.loads(json.dumps(source[3]))
    for _ in range(data.draw(st.integers(1, 2), label="mutations")):
        if not tensors:
            break
        name = data.draw(st.sampled_from(sorted(tensors)), label="tensor")
        how = data.draw(st.sampled_from(TENSOR_HOW), label="how")
        _mutate_tensor(tensors, name, how, data.draw(st.sampled_from(DTYPES)),
                       data.draw(st.integers(0, 2**16)))
        COUNTS[f"tensor: {how}"] += 1
    COUNTS["tensor: checkpoints"] += 1
    COUNTS[f"tensor outcome: {_resume_and_sample(source, tensors, meta)}"] += 1


# ------------------------------------------------------------------ the generator: metadata

HUGE = [-1, -2**63, 2**31, 2**63, 2**64 + 1, 10**30, 1024, 4096, 10**9]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.sampled_from(HUGE),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
JUNK = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=8)
# A width this big allocates gigabytes when built for real (conv32: 1.7 GB of weights).
HUGE_ARCH = {"width": 1024, "max_channels": 4096, "latent_dim": 4096}
META_PATHS = [
    ("step",), ("sampler",), ("sampler", "epoch"), ("sampler", "pos"), ("schedules",),
    ("schedules", "loss-balance"), ("schedules", "loss-balance", "level"),
    ("schedules", "loss-balance", "smoothed"), ("schedules", "loss-balance", "since_change"),
    ("opt_g_groups",), ("opt_g_groups", 0), ("opt_g_groups", 0, "params"),
    ("opt_g_groups", 0, "lr"), ("opt_d_groups", 0, "betas"), ("opt_d_groups", 0, "eps"),
    ("scaler",), ("lr_factor",), ("rollbacks",), ("last_stats",), ("last_stats", "loss_d"),
    ("world_size",), ("has_ema",), ("arch", "options"), ("arch", "options", "width"),
    ("arch", "options", "max_channels"), ("arch", "options", "latent_dim"), ("arch", "name"),
    ("total_steps",), ("config",), ("components",), ("components", 0), ("components", 0, "name"),
    ("arch", "version"), ("arch", "distribution"), ("gan_zoo_version",), ("plugins",),
]


def _set(meta: dict, path: tuple, value, delete: bool) -> None:
    node = meta
    for key in path[:-1]:
        if isinstance(node, list):
            node = node[key] if isinstance(key, int) and key < len(node) else None
        elif isinstance(node, dict):
            node = node.setdefault(key, {})
        if not isinstance(node, (dict, list)):
            return
    last = path[-1]
    if isinstance(node, dict):
        if delete:
            node.pop(last, None)
        else:
            node[last] = value
    elif isinstance(node, list) and isinstance(last, int) and last < len(node):
        if delete:
            del node[last]
        else:
            node[last] = value


def _meta_value(path: tuple):
    if path == ("arch", "options"):
        return st.one_of(st.just(HUGE_ARCH).map(dict), JUNK)  # a copy: later mutations edit it
    return JUNK


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.data())
def test_hostile_metadata(source, data):
    tensors, meta = source[2], json.loads(json.dumps(source[3]))
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        path = data.draw(st.sampled_from(META_PATHS), label="path")
        delete = data.draw(st.booleans(), label="delete") and len(path) > 0
        _set(meta, path, None if delete else data.draw(_meta_value(path), label="value"), delete)
        COUNTS[f"metadata: {'/'.join(map(str, path))}"] += 1
    COUNTS["metadata: checkpoints"] += 1
    COUNTS[f"metadata outcome: {_resume_and_sample(source, tensors, meta)}"] += 1


# ------------------------------------------------------------------ every kind, every time
# Hypothesis draws some kinds rarely in a short run; this sweep tries each tensor mutation on a
# tensor of every sort, and each metadata path with a few plain junk values, in every run.
SWEEP_TENSORS = ["G.dense.weight", "D.features.6.running_var", "G_ema.dense.weight",
                 "opt_g.0.exp_avg", "opt_d.1.exp_avg_sq", "opt_g.0.step", "rng.torch",
                 "rng.sampler", "fixed_z"]
SWEEP_VALUES = [None, "text", -1, 2**64, math.nan, {"nested": [math.inf]}]


def test_every_tensor_mutation_on_every_sort_of_tensor(source):
    for name in SWEEP_TENSORS:
        assert name in source[2], name
        for i, how in enumerate(TENSOR_HOW):
            tensors = dict(source[2])
            _mutate_tensor(tensors, name, how, DTYPES[i % len(DTYPES)], i)
            COUNTS[f"sweep tensor: {how}"] += 1
            COUNTS[f"sweep tensor outcome: {_resume_and_sample(source, tensors, source[3])}"] += 1


def test_every_metadata_path_with_plain_junk(source):
    for path in META_PATHS:
        for value in [*SWEEP_VALUES, "delete"]:
            meta = json.loads(json.dumps(source[3]))
            _set(meta, path, None if value == "delete" else value, value == "delete")
            COUNTS[f"sweep metadata: {path[0]}"] += 1
            COUNTS[f"sweep metadata outcome: {_resume_and_sample(source, source[2], meta)}"] += 1


# ------------------------------------------------------------------ named cases


def _with(source, tensors=None, **meta_changes):
    return {**source[2], **(tensors or {})}, {**json.loads(json.dumps(source[3])), **meta_changes}


@pytest.mark.parametrize("name, outcome", [
    ("G_ema.dense_norm.running_var", "resume refused, sample refused"),  # hypothesis found it
    ("G.dense_norm.running_var", "resume refused, sampled"),  # sampling uses G_ema
    ("D.features.3.running_var", "resume refused, sampled"),
])
def test_a_negative_batch_norm_variance_is_refused(source, tmp_path, name, outcome):
    """A batch-norm running variance below zero makes eval-mode outputs NaN (its square root is
    taken): refused by name on resume and on load_generator, like Adam's exp_avg_sq."""
    tensors = dict(source[2])
    _mutate_tensor(tensors, name, "negative", torch.int64, 0)
    assert _resume_and_sample(source, tensors, source[3]) == outcome
    with pytest.raises(CheckpointError, match=f"tensor '{name}' holds negative values"):
        api.prepare_training(resume=_hostile_run(source, tensors, source[3], tmp_path),
                             data=source[1])


def test_wrong_shape_adam_moments_are_one_error_not_sigsegv(source, tmp_path):
    """The issue's reproduction: fused Adam wrote out of bounds and the process died (-11)."""
    tensors, meta = _with(source, {"opt_g.0.exp_avg": torch.zeros(1),
                                   "opt_g.0.exp_avg_sq": torch.zeros(1)})
    run = tmp_path / "run"
    shutil.copytree(source[0], run)
    ckpt.save(RunDir(run).step_checkpoint(2), tensors, meta)
    done = subprocess.run([sys.executable, "-m", "gan_zoo", "train", "--resume", str(run),
                           "--steps", "3", "-q"], env=cli_env(), capture_output=True, text=True,
                          timeout=300)
    errors = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error:")]
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "'opt_g.0.exp_avg'" in errors[0] and "expected shape" in errors[0], errors[0]
    assert "learning rate" not in errors[0]


def test_resumed_fixed_noise_of_the_wrong_shape_is_one_message(source, tmp_path):
    run = _hostile_run(source, *_with(source, {"fixed_z": torch.zeros(3, 7)}), tmp_path)
    with pytest.raises(CheckpointError, match=r"'fixed_z' has shape \(3, 7\) float32, expected"):
        api.prepare_training(resume=run, data=source[1])


BAD_VALUES = {
    "NaN Adam moment": lambda s: _with(s, {"opt_d.1.exp_avg": torch.full_like(
        s[2]["opt_d.1.exp_avg"], math.nan)}),
    "negative Adam second moment": lambda s: _with(s, {"opt_g.0.exp_avg_sq": -torch.ones_like(
        s[2]["opt_g.0.exp_avg_sq"])}),
    "infinite Adam step": lambda s: _with(s, {"opt_g.0.step": torch.tensor(math.inf)}),
    "negative Adam step": lambda s: _with(s, {"opt_g.0.step": torch.tensor(-1.0)}),
    "NaN weight": lambda s: _with(s, {"D.logit.weight": torch.full_like(
        s[2]["D.logit.weight"], math.nan)}),
    "NaN lr_factor": lambda s: _with(s, lr_factor=math.nan),
    "infinite lr_factor": lambda s: _with(s, lr_factor=math.inf),
    "lr_factor zero": lambda s: _with(s, lr_factor=0.0),
    "schedule level 'nan'": lambda s: _with(s, schedules={"loss-balance": {
        **s[3]["schedules"]["loss-balance"], "level": "nan"}}),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_restored_values_fail_at_load_not_with_the_lr_hint(source, tmp_path, case):
    """Before: these resumed, then training stopped with NonFiniteError ("try a lower learning
    rate") or a traceback. Now: refused at load, by name."""
    run = _hostile_run(source, *BAD_VALUES[case](source), tmp_path)
    with pytest.raises(CheckpointError, match="checkpoint of step 2 cannot be resumed") as info:
        api.prepare_training(resume=run, data=source[1])
    _one_message(info.value)


def test_a_plugin_schedule_that_raises_on_load_is_one_message(source, tmp_path, monkeypatch):
    def boom(self, state):
        raise ZeroDivisionError("plugin bug")

    monkeypatch.setattr(get_registry().get("schedule", "loss-balance"), "load_state_dict", boom)
    run = _hostile_run(source, *_with(source), tmp_path)
    with pytest.raises(CheckpointError, match="schedule 'loss-balance' refused its saved state "
                                              r"\(ZeroDivisionError: 'plugin bug'\)"):
        api.prepare_training(resume=run, data=source[1])


def test_hyperparameters_come_from_the_config_not_the_file(source, tmp_path):
    groups = json.loads(json.dumps(source[3]["opt_g_groups"]))
    groups[0].update(betas=[7.0, -3.0], eps="tiny", weight_decay=1e30, lr=math.nan)
    run = _hostile_run(source, *_with(source, opt_g_groups=groups), tmp_path)
    trainer = api.prepare_training(resume=run, data=source[1])
    group = trainer.opt_g.param_groups[0]
    assert group["betas"] == (0.5, 0.999) and group["eps"] == 1e-8 and group["weight_decay"] == 0
    trainer.train_step()


def test_nan_weights_are_refused_when_sampling(source, tmp_path):
    """Non-finite weights sample black images; gan-zoo never saves them, so the file is damaged:
    refused with one message (a warning would still write useless images)."""
    name = next(k for k in source[2] if k.startswith("G_ema.") and k.endswith("weight"))
    path = ckpt.save(tmp_path / "nan.safetensors",
                     *_with(source, {name: torch.full_like(source[2][name], math.nan)}))
    with pytest.raises(CheckpointError, match=f"'{name}' holds NaN or infinite values"):
        api.load_generator(path)
    done = subprocess.run([sys.executable, "-m", "gan_zoo", "sample", str(path), "--out",
                           str(tmp_path / "x.png")], env=cli_env(), capture_output=True,
                          text=True, timeout=300)
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert done.returncode == 1 and len(errors) == 1 and "NaN" in errors[0], done.stderr
    assert not (tmp_path / "x.png").exists()


def test_an_invalid_newest_checkpoint_stops_the_resume(source, tmp_path):
    """A damaged newest checkpoint (crash, bad checksum) falls back to an older one. A newest one
    that verifies but does not fit the run was written that way on purpose or by a bug: resuming
    from an older one would silently drop progress, so the resume stops and names it."""
    run = tmp_path / "run"
    shutil.copytree(source[0], run)
    ckpt.save(RunDir(run).step_checkpoint(2), *_with(source, {"fixed_z": torch.zeros(2)}))
    with pytest.raises(CheckpointError, match="checkpoint of step 2 cannot be resumed"):
        api.prepare_training(resume=run, data=source[1])


# ------------------------------------------------------------------ reading: sizes, FIFOs, limits

def _peak_rss_mb(code: str) -> tuple[float, str]:
    """Run `code` in a fresh interpreter; its peak resident memory (MB) and its last line."""
    script = code + "\nimport resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    done = subprocess.run([sys.executable, "-c", script], env=cli_env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    return int(lines[-1]) / 1024, lines[0] if len(lines) > 1 else ""


def test_a_2gb_sparse_checkpoint_is_refused_without_reading_it(source, tmp_path):
    path = tmp_path / "sparse.safetensors"
    path.write_bytes(RunDir(source[0]).step_checkpoint(2).read_bytes())
    with open(path, "r+b") as fh:
        fh.truncate(2 * 1024**3)  # a valid header, then 2 GB of holes
    code = (f"from gan_zoo.training import checkpoint as c\ntry: c.load({str(path)!r})\n"
            "except c.CheckpointError as e: print(e)")
    peak, message = _peak_rss_mb(code)
    assert "damaged or truncated" in message, message
    # Against the import alone (its size depends on the installed versions): reading the file
    # would add 2 GB.
    base, _ = _peak_rss_mb("from gan_zoo.training import checkpoint as c")
    assert peak - base < 512, f"peak RSS {peak:.0f} MB vs {base:.0f} MB: the file was read"


def test_a_huge_width_is_refused_before_the_model_is_allocated(source, tmp_path):
    meta = json.loads(json.dumps(source[3]))
    meta["arch"]["options"] = dict(HUGE_ARCH)
    path = ckpt.save(tmp_path / "wide.safetensors", source[2], meta)
    assert path.stat().st_size < 1024**2
    code = (f"from gan_zoo import api, errors\ntry: api.load_generator({str(path)!r})\n"
            "except errors.CheckpointError as e: print(e)")
    peak, message = _peak_rss_mb(code)
    assert "cannot load its 'conv32' generator: tensor 'G_ema.dense.weight' has shape (256, 128) " \
        "float32, expected shape (65536, 4096) float32" in message, message
    base, _ = _peak_rss_mb("from gan_zoo import api, errors")
    assert peak - base < 700, f"peak RSS {peak:.0f} MB vs {base:.0f} MB: the 1.7 GB model was built"


def test_the_size_limit_is_checked_from_the_header(source, monkeypatch):
    path = RunDir(source[0]).step_checkpoint(2)
    monkeypatch.setenv(ckpt.LIMIT_ENV, "1000")
    with pytest.raises(CheckpointError, match=f"over the limit of 1000 bytes; set {ckpt.LIMIT_ENV}"):
        ckpt.load(path)
    monkeypatch.setenv(ckpt.LIMIT_ENV, "lots")
    with pytest.raises(GanZooError, match=f"{ckpt.LIMIT_ENV} must be a whole number"):
        ckpt.load(path)


def test_a_fifo_named_like_a_checkpoint_fails_at_once(tmp_path):
    fifo = tmp_path / "step-0000003.safetensors"
    os.mkfifo(fifo)
    signal.signal(signal.SIGALRM, lambda *a: pytest.fail("hung on a FIFO"))
    signal.alarm(10)
    try:
        for read in (ckpt.read_meta, ckpt.load):
            with pytest.raises(CheckpointError, match="not a regular file"):
                read(fifo)
    finally:
        signal.alarm(0)


@pytest.mark.parametrize("saved", [
    {"scale": math.nan, "_growth_tracker": 0}, {"scale": -1.0, "_growth_tracker": 0},
    {"scale": "big", "_growth_tracker": 0}, {"scale": 1024.0, "_growth_tracker": -1},
    {"scale": 1024.0, "_growth_tracker": 2**70}, {"scale": 1024.0}, [1, 2], "scaler"])
def test_a_hostile_loss_scaler_state_is_one_message(saved):
    """fp16 runs restore the loss scale and its growth counter; the factors and interval are the
    run's own (a file cannot set growth_factor=NaN)."""
    from types import SimpleNamespace

    from gan_zoo.training import restore

    trainer = SimpleNamespace(scaler=torch.amp.GradScaler("cpu", enabled=True))
    check = restore._Checker({}, "the checkpoint of step 2 cannot be resumed")
    with pytest.raises(CheckpointError, match="cannot be resumed: '?scaler"):
        restore._scaler(check, trainer, saved)
    good = restore._scaler(check, trainer, {"scale": 8.0, "_growth_tracker": 3,
                                            "growth_factor": math.nan, "growth_interval": 0})
    assert good["scale"] == 8.0 and good["_growth_tracker"] == 3
    assert good["growth_factor"] == 2.0 and good["growth_interval"] == 2000
    trainer.scaler.load_state_dict(good)
