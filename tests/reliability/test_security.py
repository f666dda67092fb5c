"""Security: no code runs from a file, a config or a name.

* Nothing in gan_zoo/ or plugins/ unpickles (an AST scan for torch.load, pickle and friends,
  numpy's allow_pickle, eval/exec and dynamic imports); the scan is tested on snippets too.
* Pickled files are refused before a byte is deserialized (a booby-trapped pickle proves it),
  with a conversion recipe that works as printed.
* Checkpoint metadata is parsed within size limits and checked for shape: a stranger's file
  with a valid checksum over nonsense metadata is one clear error, not a traceback.
* Config files cannot make gan-zoo write outside the run directory.
* Plugins load only from installed entry points: a module name in a config, a flag or
  GANZOO_PLUGINS never imports anything.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import json
import os
import pickle
import re
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save as st_save

from gan_zoo import api, plugins
from gan_zoo.cli import cli
from gan_zoo.errors import CheckpointError
from gan_zoo.plugins import get_registry
from gan_zoo.training import checkpoint as ckpt
from gan_zoo.training.rundir import RunDir

from ..conftest import write_images
from .helpers import REPO, TINY, TINY_ARGS, tiny_config, tiny_data


@pytest.fixture(autouse=True)
def _no_plots(monkeypatch):
    """Live curves and evolution strips are not what these tests are about: skip their CPU."""
    monkeypatch.setattr("gan_zoo.api.CALLBACK_FACTORIES", [])


# ------------------------------------------------------------------ static scan

# Calls (or mere references) that deserialize code-carrying formats or run code from data.
FORBIDDEN = {
    "torch.load": "unpickles", "torch.serialization": "unpickles",
    "pickle": "unpickles", "_pickle": "unpickles", "cPickle": "unpickles",
    "dill": "unpickles", "cloudpickle": "unpickles", "joblib": "unpickles",
    "marshal": "loads code objects", "shelve": "unpickles", "runpy": "runs code",
    "yaml.load": "constructs arbitrary objects", "yaml.unsafe_load": "constructs objects",
    "pandas.read_pickle": "unpickles", "torch.jit.load": "loads TorchScript programs",
    "torch.package": "unpickles", "eval": "runs code", "exec": "runs code",
    "builtins.eval": "runs code", "builtins.exec": "runs code", "__import__": "imports by name",
    "importlib.import_module": "imports by name", "importlib.__import__": "imports by name",
}
NUMPY_LOADERS = {"numpy.load"}
# Reviewed exceptions: (file, dotted name) -> why it is safe.
ALLOWED = {
    ("gan_zoo/evaluation/features.py", "torch.jit.load"):
        "the FID Inception network, parsed from in-memory bytes whose SHA-1/SHA-256 match a "
        "published export (evaluation.weights.read_weights, checked before this call), or a "
        "file the user trusted with --trust-weights on the command line",
}


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> dotted origin, from the module's imports."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                names[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                names[a.asname or a.name] = f"{node.module}.{a.name}"
    return names


def _dotted(node: ast.AST, aliases: dict[str, str]) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(aliases.get(node.id, node.id))
    return ".".join(reversed(parts))


def _forbidden(name: str) -> str | None:
    for bad, why in FORBIDDEN.items():
        if name == bad or name.startswith(bad + "."):
            return why
    return None


def scan(source: str, filename: str = "<snippet>") -> list[str]:
    """Every use of a forbidden loader in `source`, as 'file:line: name (why)'."""
    tree = ast.parse(source, filename)
    aliases = _aliases(tree)
    found = []

    def report(node: ast.AST, name: str, why: str) -> None:
        if (filename, name) not in ALLOWED:
            found.append(f"{filename}:{node.lineno}: {name} ({why})")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [
                f"{node.module}.{a.name}" for a in node.names] + [node.module or ""]
            for module in modules:
                why = _forbidden(module)
                if why and not (isinstance(node, ast.ImportFrom) and module == node.module
                                and not _forbidden(node.module or "")):
                    report(node, module, why)
        elif isinstance(node, ast.Attribute | ast.Name) and not isinstance(
                getattr(node, "ctx", None), ast.Store):
            name = _dotted(node, aliases)
            why = _forbidden(name) if name else None
            if why:
                report(node, name, why)
        if isinstance(node, ast.Call):
            name = _dotted(node.func, aliases)
            if name in NUMPY_LOADERS:
                for kw in node.keywords:
                    if kw.arg == "allow_pickle" and not (
                            isinstance(kw.value, ast.Constant) and kw.value.value is False):
                        report(node, f"{name}(allow_pickle=...)", "unpickles object arrays")
            if name == "getattr" and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant):
                target = _dotted(node.args[0], aliases)
                full = f"{target}.{node.args[1].value}" if target else None
                why = _forbidden(full) if full else None
                if why:
                    report(node, full, why)
    return sorted(set(found))


def _sources() -> list[Path]:
    files = sorted((REPO / "gan_zoo").rglob("*.py")) + sorted((REPO / "plugins").rglob("*.py"))
    assert len(files) > 10
    return files


def test_nothing_in_the_package_unpickles_or_runs_code_from_data():
    found = []
    for path in _sources():
        found += scan(path.read_text(encoding="utf-8"), path.relative_to(REPO).as_posix())
    assert not found, "forbidden loaders:\n" + "\n".join(found)


@pytest.mark.parametrize("snippet", [
    "import torch\ntorch.load(p)",
    "import torch\ntorch.load(p, weights_only=True)",
    "from torch import load as L\nL(p)",
    "import torch as t\nf = t.load",
    "import pickle",
    "from pickle import loads",
    "import pickle as p\np.loads(b)",
    "import numpy as np\nnp.load(p, allow_pickle=True)",
    "import numpy\nnumpy.load(p, allow_pickle=flag)",
    "from numpy import load\nload(p, allow_pickle=1)",
    "eval(text)",
    "exec(code)",
    "__import__(name)",
    "import importlib\nimportlib.import_module(name)",
    "from importlib import import_module\nimport_module(name)",
    "import torch\ngetattr(torch, 'load')(p)",
    "import torch\ntorch.jit.load(p)",
    "import yaml\nyaml.load(s)",
    "import runpy\nrunpy.run_path(p)",
    "from torch.serialization import load",
])
def test_the_scan_finds_forbidden_loaders(snippet):
    assert scan(snippet), snippet


@pytest.mark.parametrize("snippet", [
    "import numpy as np\nnp.load(p, mmap_mode='r')",
    "import numpy as np\nnp.load(p, allow_pickle=False)",
    "model.eval()",
    "import re\nre.compile('x')",
    "msg = 'convert with torch.load(path, weights_only=True)'",
    "from safetensors.torch import load\nload(b)",
    "import importlib.metadata as md\nmd.entry_points(group='gan_zoo')",
    "ep.load()",
    "import json\njson.loads(s)",
])
def test_the_scan_allows_safe_code(snippet):
    assert scan(snippet) == []


# ------------------------------------------------------------------ pickles are never opened

class _Trap:
    """Unpickling this creates a file: proof that something unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "unpickled!"))


def _trap_files(tmp_path: Path) -> tuple[Path, list[Path]]:
    marker = tmp_path / "UNPICKLED"
    payload = pickle.dumps({"G.dense.weight": _Trap(marker)})
    files = []
    for name in ("model.pt", "model.pth", "model.ckpt", "model.pkl", "model.bin", "MODEL.PT"):
        (tmp_path / name).write_bytes(payload)
        files.append(tmp_path / name)
    # The same trap in torch's zip format, and disguised as .safetensors.
    torch.save({"x": _Trap(marker)}, tmp_path / "zipped.pt")
    files.append(tmp_path / "zipped.pt")
    for src in ("model.pt", "zipped.pt"):
        disguised = tmp_path / f"{Path(src).stem}-disguised.safetensors"
        disguised.write_bytes((tmp_path / src).read_bytes())
        files.append(disguised)
    return marker, files


def test_pickles_are_refused_without_being_deserialized(tmp_path):
    marker, files = _trap_files(tmp_path)
    assert not marker.exists()
    for path in files:
        for load in (ckpt.load, ckpt.read_meta, api.load_checkpoint, api.load_generator):
            with pytest.raises(CheckpointError) as info:
                load(path)
            if path.suffix.lower() != ".safetensors":
                assert "never unpickles" in str(info.value)
        result = CliRunner().invoke(cli, ["sample", str(path), "--out", str(tmp_path / "x.png")])
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    # A booby-trapped file in place of a run's newest checkpoint: skipped as damaged.
    api.train(tiny_config(sample_grid=4, steps=2, checkpoint_every=1), out=tmp_path / "run",
              data=tiny_data())
    run = RunDir(tmp_path / "run")
    run.step_checkpoint(3).write_bytes((tmp_path / "zipped.pt").read_bytes())
    path, _, meta, problems = run.latest_valid()
    assert meta["step"] == 2 and len(problems) == 1
    assert not marker.exists(), "a pickle was deserialized"


def test_the_conversion_recipe_works_as_printed(tmp_path, monkeypatch):
    """The recipe in the message, run verbatim on a trusted file, gives weights that load."""
    with pytest.raises(CheckpointError) as info:
        ckpt.load(tmp_path / "trusted.pt")
    save_code, load_code = re.findall(r"`([^`]+)`", str(info.value))
    G = api.build("arch", "conv32", TINY["conv32"]).build_generator()
    torch.save(G.state_dict(), tmp_path / "trusted.pt")
    fresh = api.build("arch", "conv32", TINY["conv32"]).build_generator()
    monkeypatch.chdir(tmp_path)  # the recipe writes model.safetensors in the working directory
    import safetensors.torch

    scope = {"torch": torch, "safetensors": safetensors, "path": "trusted.pt", "module": fresh}
    exec(save_code, scope)  # the test runs the documented recipe, verbatim
    exec(load_code, scope)
    for k, v in G.state_dict().items():
        assert torch.equal(v, fresh.state_dict()[k]), k


# ------------------------------------------------------------------ metadata limits and shape

def test_metadata_size_limits_at_the_boundary(tmp_path):
    def with_meta(size: int) -> Path:
        meta = json.dumps({"format": ckpt.FORMAT, "pad": ""})
        meta = meta[:-2] + " " * (size - len(meta)) + '"}'  # a JSON string of exactly `size`
        assert len(meta) == size
        path = tmp_path / f"m{size}.safetensors"
        path.write_bytes(st_save({"w": torch.zeros(1)}, {"gan_zoo": meta}))
        return path

    with pytest.raises(CheckpointError, match="malformed gan-zoo metadata"):
        ckpt.read_meta(with_meta(ckpt.MAX_META_BYTES))  # parsed (then found wanting)
    with pytest.raises(CheckpointError, match="oversized metadata"):
        ckpt.read_meta(with_meta(ckpt.MAX_META_BYTES + 1))
    # The header length field is checked before anything is read or allocated.
    lying = tmp_path / "lying.safetensors"
    lying.write_bytes((ckpt.MAX_HEADER_BYTES + 1).to_bytes(8, "little") + b"{}" * 8)
    with pytest.raises(CheckpointError, match="bad header size"):
        ckpt.read_meta(lying)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    root = tmp_path_factory.mktemp("good")
    api.train(tiny_config(sample_grid=4, steps=2, checkpoint_every=1), out=root / "run",
              data=tiny_data())
    return root / "run", *ckpt.load(RunDir(root / "run").step_checkpoint(2))


def _drop(meta: dict, key: str) -> dict:
    return {k: v for k, v in meta.items() if k != key}


MALFORMED = {
    "no arch": lambda m: _drop(m, "arch"),
    "arch a string": lambda m: {**m, "arch": "conv32"},
    "arch without options": lambda m: {**m, "arch": _drop(m["arch"], "options")},
    "no step": lambda m: _drop(m, "step"),
    "step text": lambda m: {**m, "step": "abc"},
    "step negative": lambda m: {**m, "step": -3},
    "step fractional": lambda m: {**m, "step": 2.5},
    "step a boolean": lambda m: {**m, "step": True},
    "has_ema text": lambda m: {**m, "has_ema": "yes"},
    "sampler a list": lambda m: {**m, "sampler": [1, 2]},
    "optimizer groups a table": lambda m: {**m, "opt_g_groups": {"lr": 1}},
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_valid_checksum_over_malformed_metadata_is_one_clear_error(tmp_path, good, case):
    """The checksum is not a signature: a hostile file can carry a correct one."""
    _, tensors, meta = good
    path = ckpt.save(tmp_path / "hostile.safetensors", tensors, MALFORMED[case](dict(meta)))
    with pytest.raises(CheckpointError, match="malformed gan-zoo metadata"):
        ckpt.load(path)
    result = CliRunner().invoke(cli, ["sample", str(path), "--out", str(tmp_path / "x.png")])
    assert result.exit_code == 1 and "malformed gan-zoo metadata" in result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(
        result.exception, SystemExit)


HOSTILE_STATE = {
    "missing rng": lambda t, m: ({k: v for k, v in t.items() if k != "rng.torch"}, m),
    "rng of the wrong type": lambda t, m: ({**t, "rng.torch": torch.zeros(3)}, m),
    "sampler state wrong": lambda t, m: (t, {**m, "sampler": {"nonsense": 1}}),
    "sampler rng missing": lambda t, m: ({k: v for k, v in t.items() if k != "rng.sampler"}, m),
    "optimizer groups wrong": lambda t, m: (t, {**m, "opt_g_groups": [{"lr": 1}]}),
    "fixed noise missing": lambda t, m: ({k: v for k, v in t.items() if k != "fixed_z"}, m),
    "schedule state wrong": lambda t, m: (t, {**m, "last_stats": {"loss_d": "high"}}),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_STATE))
def test_resume_from_a_hostile_checkpoint_with_valid_checksum(tmp_path, good, case, monkeypatch):
    import shutil

    monkeypatch.setattr("gan_zoo.api.load_dataset", lambda data, res: tiny_data(res=res))
    run_src, tensors, meta = good
    run = tmp_path / "run"
    shutil.copytree(run_src, run)
    bad_tensors, bad_meta = HOSTILE_STATE[case](dict(tensors), dict(meta))
    ckpt.save(RunDir(run).step_checkpoint(2), bad_tensors, bad_meta)
    result = CliRunner().invoke(cli, ["train", "--resume", str(run), "--steps", "3", "-q"])
    assert "Traceback" not in result.output and (
        result.exception is None or isinstance(result.exception, SystemExit)), repr(
        result.exception)
    # Either refused with one message, or (harmless damage) resumed and finished.
    if result.exit_code:
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert result.exit_code == 1 and len(errors) == 1, result.output


# ------------------------------------------------------------------ no writes outside the run

def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()}


def _free_text_options() -> list[tuple[str, str, str]]:
    """(kind, component, option) of every installed option that takes arbitrary text."""
    found = []
    for kind in ("arch", "loss", "schedule", "augment"):
        for entry in get_registry().entries(kind):
            for name, field in entry.cls.Options.model_fields.items():
                if re.search(r"\bstr\b", str(field.annotation)) or field.annotation is str:
                    found.append((kind, entry.name, name))
    return found


TRAVERSALS = ["../../escaped", "/tmp/../{root}/escaped-abs", "~/escaped-home", "..\\..\\escaped",
              "run/../../escaped", "{root}/escaped-abs"]


def test_config_values_cannot_write_outside_the_run_directory(tmp_path, monkeypatch):
    root = tmp_path / "sandbox"
    cwd = root / "work" / "deep"
    cwd.mkdir(parents=True)
    write_images(root / "data", 16, size=32)
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("HOME", str(root / "home"))
    cache = Path(os.environ["GANZOO_CACHE"])
    before, cache_before = _snapshot(root), _snapshot(cache)

    def run(config_text: str, name: str, *extra: str) -> tuple[int, str]:
        cfg = root / "cfg" / f"{name}.toml"
        cfg.parent.mkdir(exist_ok=True)
        cfg.write_text(config_text)
        result = CliRunner().invoke(cli, ["train", "--config", str(cfg), "--out", f"runs/{name}",
                                          "-q", *extra])
        assert "Traceback" not in result.output and (
            result.exception is None or isinstance(result.exception, SystemExit)), result.output
        return result.exit_code, result.output

    base = ('arch = "conv32"\nsteps = 2\nbatch_size = 8\ncheckpoint_every = 1\nsample_every = 1\n'
            'log_every = 1\nsample_grid = 4\n[options.conv32]\nwidth = 8\nlatent_dim = 16\n')
    # The data path itself goes up and around: read, never written.
    code, out = run(f'data = "../../data/../data"\n{base}', "updown")
    assert code == 0, out
    tried = 1
    # Keys that would choose where to write are refused.
    for key in ("out", "run_dir", "output", "checkpoint_dir", "samples_dir", "cache_dir",
                "metrics_path", "log_file"):
        for value in TRAVERSALS:
            code, out = run(f"{key} = {json.dumps(value.format(root=root))}\n{base}", f"k-{key}")
            assert code == 2 and repr(key) in out, out
            tried += 1
    # Names are names: a path-like component name is an unknown component.
    for key in ("arch", "loss"):
        for value in TRAVERSALS:
            text = f"{key} = {json.dumps(value)}\nsteps = 2\nbatch_size = 8\n"
            code, out = run(text, f"n-{key}")
            assert code == 2 and "unknown" in out, out
            tried += 1
    for key in ("schedules", "augment"):
        code, out = run(f'{key} = ["../../escaped"]\n{base}', f"l-{key}")
        assert code == 2 and "unknown" in out, out
        tried += 1
    # Every option that takes free text (none built in yet; plugins may add some).
    for kind, component, option in _free_text_options():
        flag = {"arch": "--arch", "loss": "--loss", "schedule": "--sched", "augment": "--augment"}
        for value in TRAVERSALS:
            v = value.format(root=root)
            run(base, f"o-{component}-{option}", flag[kind], component, "-o",
                f"{component}.{option}={v}")
            tried += 1
    # A tampered config.toml inside a run cannot redirect its resume either.
    run_dir = cwd / "runs" / "updown"
    text = RunDir(run_dir).config_path.read_text()
    RunDir(run_dir).config_path.write_text(f'out = "{root}/escaped-abs"\n{text}')
    result = CliRunner().invoke(cli, ["train", "--resume", str(run_dir), "--steps", "3", "-q"])
    assert result.exit_code == 2 and "unknown key 'out'" in result.output, result.output

    after = _snapshot(root)
    written = {p for p in after if after[p] != before.get(p)}
    # Allowed: the runs, our config files, and libraries' own caches under $HOME (matplotlib's
    # font list when it is first imported here), which no config value steers.
    allowed = ("work/deep/runs/", "cfg/", "home/.cache/matplotlib/", "home/.config/matplotlib/")
    outside = sorted(p for p in written if not p.startswith(allowed))
    assert not outside, outside
    assert not list(root.rglob("escaped*"))
    # The decoded-data cache is keyed by a digest, whatever the data path looked like.
    new_cache = [p for p in _snapshot(cache) if p not in cache_before]
    assert all(re.fullmatch(r"[0-9a-f]{16,}\.(npy|json)", Path(p).name) for p in new_cache), \
        new_cache
    assert tried > 60


# ------------------------------------------------------------------ plugins only from entry points

EVIL = '''
import pathlib
pathlib.Path({marker!r}).write_text("imported")
import gan_zoo
from gan_zoo.interfaces import Loss


class EvilLoss(Loss):
    """A loss that should never load."""

    name = "evil_loss"

    def real_loss(self, logits, target=1.0):
        return logits.mean()

    def fake_loss(self, logits):
        return logits.mean()

    def generator_loss(self, logits):
        return logits.mean()


@gan_zoo.hookimpl
def register_losses(register):
    register(EvilLoss)
'''


def test_plugins_load_only_from_installed_entry_points(tmp_path, monkeypatch):
    marker = tmp_path / "IMPORTED"
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "ganzoo_evil_plugin.py").write_text(EVIL.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(mods))  # importable, but not an entry point
    monkeypatch.chdir(mods)
    monkeypatch.setattr("gan_zoo.api.load_dataset", lambda data, res: tiny_data(res=res))
    cfg = tmp_path / "c.toml"
    attempts = [
        ["--loss", "ganzoo_evil_plugin"], ["--loss", "ganzoo_evil_plugin:EvilLoss"],
        ["--loss", "ganzoo_evil_plugin.EvilLoss"], ["--arch", "ganzoo_evil_plugin"],
        ["--sched", "ganzoo_evil_plugin"], ["--augment", "ganzoo_evil_plugin.EvilLoss"],
        ["-o", "ganzoo_evil_plugin.x=1"], ["--loss", "evil_loss"],
        ["--config", str(cfg)],
    ]
    cfg.write_text('loss = "ganzoo_evil_plugin:EvilLoss"\nplugins = ["ganzoo_evil_plugin"]\n')
    try:
        for args in attempts:
            result = CliRunner().invoke(cli, ["train", *TINY_ARGS, "--steps", "1", "--out",
                                              str(tmp_path / "run"), *args])
            assert result.exit_code == 2, (args, result.output)
        # GANZOO_PLUGINS selects among installed plugins; it cannot add a module.
        monkeypatch.setenv("GANZOO_PLUGINS", "ganzoo_evil_plugin")
        plugins.reset()
        with pytest.warns(plugins.PluginWarning, match="not an installed gan-zoo plugin"):
            assert "evil_loss" not in get_registry().names("loss")
        assert "ganzoo_evil_plugin" not in plugins.plugin_system().infos
        assert not marker.exists() and "ganzoo_evil_plugin" not in sys.modules

        # Positive control: the same module declared as an installed entry point does load.
        monkeypatch.delenv("GANZOO_PLUGINS")
        real = md.entry_points

        def with_evil(**kw):
            eps = list(real(**kw))
            if kw.get("group") == plugins.ENTRY_POINT_GROUP:
                eps.append(md.EntryPoint("evil", "ganzoo_evil_plugin", plugins.ENTRY_POINT_GROUP))
            return eps

        monkeypatch.setattr(plugins.md, "entry_points", with_evil)
        plugins.reset()
        assert "evil_loss" in get_registry().names("loss") and marker.exists()
    finally:
        sys.modules.pop("ganzoo_evil_plugin", None)
        monkeypatch.undo()
        plugins.reset()
    assert "evil_loss" not in get_registry().names("loss")
