"""Third-party plugins: discovery by entry point, isolation of broken plugins, GANZOO_PLUGINS,
`ganzoo plugins --json`, and checkpoints that name the package they need.

Installed packages are simulated with a ``*.dist-info`` folder (METADATA + entry_points.txt)
next to a module, on sys.path: exactly what pip leaves in site-packages, without running pip.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

import gan_zoo
from gan_zoo import api, plugins
from gan_zoo.cli import cli
from gan_zoo.errors import CheckpointError, DuplicateComponentError, UnknownComponentError
from gan_zoo.plugins import ENV_VAR, PluginSystem, PluginWarning, get_registry, plugin_system
from gan_zoo.testing import ganzoo_plugin, registered_plugin  # noqa: F401 (fixture)
from gan_zoo.training.assembly import build_components
from gan_zoo.training.config import make_config

from ..training.test_training_step import tiny_data

REPO = Path(__file__).resolve().parents[2]
_ids = itertools.count()

LOSS = '''
import torch.nn.functional as F
import gan_zoo
from gan_zoo.interfaces import Loss

class Soft(Loss):
    """A test loss."""
    name = "{name}"
    def real_loss(self, r, t=1.0):
        return F.softplus(-r).mean()
    def fake_loss(self, f):
        return F.softplus(f).mean()
    def generator_loss(self, f):
        return F.softplus(-f).mean()
'''
REGISTER_LOSS = '''
@gan_zoo.hookimpl
def register_losses(register):
    register(Soft)
'''


def install(site: Path, dist: str, version: str, source: str, entry: str | None = None) -> str:
    """Write a module and the dist-info pip would leave for a package `dist` declaring it as a
    gan_zoo entry point; returns the entry-point (= plugin) name."""
    module = f"ganzoo_fake_{next(_ids)}_{os.getpid()}"
    entry = entry or module
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[gan_zoo]\n{entry} = {module}\n")
    return entry


@pytest.fixture
def site(tmp_path, monkeypatch):
    path = tmp_path / "site"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    monkeypatch.delenv(ENV_VAR, raising=False)
    return path


def load() -> tuple[PluginSystem, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        system = PluginSystem()
        system.load_entry_points()
        system.build()
    return system, [w for w in caught if issubclass(w.category, PluginWarning)]


def test_installed_plugin_is_attributed_to_its_distribution(site):
    name = install(site, "ganzoo-soft", "1.2.3", LOSS.format(name="soft") + REGISTER_LOSS)
    system, warned = load()
    assert warned == []
    info = system.infos[name]
    assert (info.distribution, info.version, info.builtin, info.status) == (
        "ganzoo-soft", "1.2.3", False, "ok")
    assert info.hooks == ["register_losses"] and info.components == [("loss", "soft")]
    entry = system.registry.entry("loss", "soft")
    assert (entry.plugin, entry.distribution, entry.version) == (name, "ganzoo-soft", "1.2.3")
    builtin = [i.builtin for i in system.infos.values()]
    assert builtin == sorted(builtin, reverse=True) and builtin[0]  # built-ins load first


BROKEN = {
    "import": ("import definitely_not_installed_module_xyz\n",
               "import failed: ModuleNotFoundError"),
    "exit at import": ("import sys\nsys.exit(3)\n", "import failed: SystemExit: 3"),
    "hook raises": (LOSS.format(name="half") + REGISTER_LOSS + '''
@gan_zoo.hookimpl
def register_schedules(register):
    raise RuntimeError("schedules are broken")
''', "register_schedules raised RuntimeError: schedules are broken"),
    "collision": (LOSS.format(name="bce") + REGISTER_LOSS, "'bce' is registered twice"),
    "collision across kinds": (LOSS.format(name="conv32") + REGISTER_LOSS,
                               "already used by the architecture"),
    "hook typo": (LOSS.format(name="typo") + '''
@gan_zoo.hookimpl
def register_loss(register):
    register(Soft)
''', "unknown hook 'register_loss' (did you mean 'register_losses'?)"),
    "bad signature": (LOSS.format(name="sig") + '''
@gan_zoo.hookimpl
def register_losses(register, extra):
    register(Soft)
''', "registration failed"),
    "newer API": ("GANZOO_PLUGIN_API = 99\n" + LOSS.format(name="future") + REGISTER_LOSS,
                  "plugin API 99"),
    "bad name": (LOSS.format(name="Soft Loss") + REGISTER_LOSS, "invalid component name"),
    "not a component": ('''
import gan_zoo
@gan_zoo.hookimpl
def register_losses(register):
    register(object)
''', "expects loss classes"),
}


@pytest.mark.parametrize("case", list(BROKEN), ids=list(BROKEN))
def test_a_broken_plugin_is_isolated_and_reported_once(site, case):
    source, reason = BROKEN[case]
    bad = install(site, "ganzoo-broken", "0.1", source)
    good = install(site, "ganzoo-good", "2.0", LOSS.format(name="good-loss") + REGISTER_LOSS)
    system, warned = load()
    assert len(warned) == 1, [str(w.message) for w in warned]
    message = str(warned[0].message)
    assert repr(bad) in message and reason in message
    assert system.infos[bad].status == "failed" and reason in system.infos[bad].error
    assert system.failures() == {bad: system.infos[bad].error}
    # Nothing of the broken plugin remains; everything else works.
    assert system.infos[bad].components == [] and system.registry.by_plugin(bad) == []
    assert system.registry.entry("loss", "good-loss").plugin == good
    assert system.registry.entry("loss", "bce").plugin == "losses"
    assert system.registry.entry("arch", "conv32").plugin == "conv"


def test_a_taken_plugin_name_skips_the_second_package(site):
    first = install(site, "ganzoo-first", "1.0", LOSS.format(name="first-loss") + REGISTER_LOSS,
                    entry="same-name")
    install(site, "ganzoo-second", "1.0", LOSS.format(name="second-loss") + REGISTER_LOSS,
            entry="same-name")
    system, warned = load()
    assert system.infos[first].distribution == "ganzoo-first"
    assert "second-loss" not in system.registry.names("loss")
    assert len(warned) == 1
    assert "'same-name' of 'ganzoo-second' skipped" in str(warned[0].message)
    assert "already used by 'ganzoo-first'" in str(warned[0].message)


def test_env_var_restricts_which_plugins_load(site, monkeypatch):
    a = install(site, "ganzoo-a", "1.0", LOSS.format(name="loss-a") + REGISTER_LOSS)
    install(site, "ganzoo-b", "1.0", LOSS.format(name="loss-b") + REGISTER_LOSS)
    monkeypatch.setenv(ENV_VAR, "")
    system, _ = load()
    assert all(i.builtin for i in system.infos.values())
    assert "conv32" in system.registry.names("arch")
    monkeypatch.setenv(ENV_VAR, "ganzoo-a")  # by distribution name
    system, _ = load()
    assert {n for n, i in system.infos.items() if not i.builtin} == {a}
    monkeypatch.setenv(ENV_VAR, f"{a}, ganzoo-bb")  # by plugin name; a typo is reported
    system, warned = load()
    assert "loss-a" in system.registry.names("loss") and "loss-b" not in system.registry.names(
        "loss")
    assert len(warned) == 1 and "'ganzoo-bb'" in str(warned[0].message)
    assert "did you mean 'ganzoo-b'" in str(warned[0].message)


def test_cli_reports_plugins_and_keeps_working_with_a_broken_one(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    bad = install(site, "ganzoo-broken", "0.1", BROKEN["hook raises"][0], entry="broken")
    good = install(site, "ganzoo-good", "2.0", LOSS.format(name="good-loss") + REGISTER_LOSS,
                   entry="good")
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    env.pop(ENV_VAR, None)
    run = subprocess.run([sys.executable, "-m", "gan_zoo", "plugins", "--json"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    infos = {i["name"]: i for i in json.loads(run.stdout)}
    assert infos[bad]["status"] == "failed" and "schedules are broken" in infos[bad]["error"]
    assert infos[bad]["components"] == []
    assert infos[good] == {**infos[good], "status": "ok", "distribution": "ganzoo-good",
                           "version": "2.0", "hooks": ["register_losses"], "api_version": 1,
                           "components": [{"kind": "loss", "name": "good-loss"}]}
    assert infos["conv"]["builtin"] and infos["conv"]["distribution"] == "gan-zoo"
    # The warning: one line, by name, no traceback; the command itself still works.
    assert run.stderr.count("plugin 'broken' skipped") == 1, run.stderr
    assert "Traceback" not in run.stderr and "plugins.py" not in run.stderr


def test_list_and_train_keep_working_with_a_broken_plugin(site):
    install(site, "ganzoo-broken", "0.1", BROKEN["hook raises"][0], entry="broken")
    install(site, "ganzoo-good", "2.0", LOSS.format(name="good-loss") + REGISTER_LOSS)
    plugins.reset()  # the process-wide system, loaded again from the patched sys.path
    try:
        with pytest.warns(PluginWarning, match="'broken' skipped"):
            listed = CliRunner().invoke(cli, ["list", "loss", "--json"])
        assert listed.exit_code == 0
        rows = {r["name"]: r for r in json.loads(listed.output)}
        assert rows["good-loss"]["distribution"] == "ganzoo-good" and "half" not in rows
        with pytest.raises(UnknownComponentError, match=r"failed to load: broken; see `ganzoo"):
            build_components(make_config({"loss": "half"}))
        components = build_components(make_config({"loss": "good-loss"}))
        assert components.loss.name == "good-loss" and components.arch.name == "conv32"
    finally:
        plugins.reset()


def test_plugins_text_output_shows_failures():
    class Broken:
        __name__ = "broken_module"

    system = plugin_system()
    info = system.add_plugin(Broken(), "text-broken", "ganzoo-text", "0.3")
    info.error = "import failed: ImportError: nope"
    try:
        result = CliRunner().invoke(cli, ["plugins"])
    finally:
        system.remove_plugin("text-broken")
    assert result.exit_code == 0
    assert result.output.startswith(f"gan-zoo {gan_zoo.__version__}, plugin API version 1\n")
    assert "text-broken  [failed]  ganzoo-text 0.3  api 1  (" in result.output
    assert "error: import failed: ImportError: nope" in result.output
    assert "conv  [ok]  gan-zoo" in result.output and "conv32 (arch)" in result.output


# --------------------------------------------------------------------------- checkpoints


def _fancy_plugin():
    from gan_zoo_plugins.conv import Conv32

    from gan_zoo.interfaces import Schedule

    class Fancy32(Conv32):
        """A conv32 under another name, from a 'third-party' package."""

        name = "fancy32"

    class Steady(Schedule):
        """Keeps D's learning rate factor at 1."""

        name = "steady"
        knobs = ("lr_d_scale",)

        def values(self, state):
            return {"lr_d_scale": 1.0}

    return Fancy32, Steady


def test_checkpoint_records_plugins_and_names_the_missing_package(tmp_path):
    fancy, steady = _fancy_plugin()
    with registered_plugin([fancy], name="fancy", distribution="ganzoo-fancy", version="2.0"), \
            registered_plugin([steady], name="steady-plugin", distribution="ganzoo-steady",
                              version="0.5"):
        result = api.train({"arch": "fancy32", "schedules": ["steady"], "batch_size": 8,
                            "steps": 2, "options": {"fancy32": {"width": 8, "latent_dim": 16}}},
                           out=tmp_path / "run", data=tiny_data())
        _, meta, _ = api.load_checkpoint(result.run_dir)
        assert meta["arch"] | {"plugin": "fancy", "distribution": "ganzoo-fancy",
                               "version": "2.0"} == meta["arch"]
        assert {"kind": "schedule", "name": "steady", "plugin": "steady-plugin",
                "distribution": "ganzoo-steady", "version": "0.5"} in meta["components"]
        assert meta["plugins"]["fancy"] == "2.0"
    # Both plugins gone: sampling and resuming name the package to install.
    assert "fancy32" not in get_registry().names("arch")
    with pytest.raises(CheckpointError) as info:
        api.load_generator(result.run_dir)
    assert "architecture 'fancy32' from the package 'ganzoo-fancy' version 2.0" in str(info.value)
    assert "pip install 'ganzoo-fancy==2.0'" in str(info.value)
    out = CliRunner().invoke(cli, ["sample", str(result.run_dir), "--out", str(tmp_path / "g.png")])
    assert out.exit_code == 1 and "pip install 'ganzoo-fancy==2.0'" in out.output
    assert "Traceback" not in out.output
    out = CliRunner().invoke(cli, ["train", "--resume", str(result.run_dir), "--steps", "3"])
    assert out.exit_code == 1 and "ganzoo-fancy" in out.output
    newer = registered_plugin([fancy], name="fancy", distribution="ganzoo-fancy", version="2.1")
    with newer, pytest.warns(PluginWarning, match="written with ganzoo-fancy 2.0; 2.1 is "):
        api.load_generator(result.run_dir)
    fancy_only = registered_plugin([fancy], name="fancy", distribution="ganzoo-fancy",
                                   version="2.0")
    with fancy_only, pytest.raises(CheckpointError, match="schedule 'steady' from the package "
                                                          "'ganzoo-steady'"):
        api.prepare_training(resume=result.run_dir, data=tiny_data())


# --------------------------------------------------------------------------- in-process helpers


def test_registered_plugin_adds_and_removes(ganzoo_plugin):  # noqa: F811
    fancy, _ = _fancy_plugin()
    with registered_plugin(fancy, name="ctx") as info:
        assert info.components == [("arch", "fancy32")]
        assert get_registry().entry("arch", "fancy32").plugin == "ctx"
        with pytest.raises(DuplicateComponentError, match="'ctx'"):
            ganzoo_plugin(fancy, name="second")
        assert "second" not in plugin_system().infos  # a failed add leaves nothing behind
    assert "fancy32" not in get_registry().names("arch") and "ctx" not in plugin_system().infos
    ganzoo_plugin(fancy)  # the fixture's registration lasts until the end of the test
    assert get_registry().entry("arch", "fancy32").plugin.startswith("test-plugin-")
    result = CliRunner().invoke(cli, ["show", "fancy32"])
    assert result.exit_code == 0 and "fancy32.width" in result.output


def test_fixture_registration_ended_with_the_previous_test():
    assert "fancy32" not in get_registry().names("arch")


def test_example_package_source_registers_in_process():
    """The example package in examples/ works by name without installation (its own tests and
    CI install it for real)."""
    sys.path.insert(0, str(REPO / "examples" / "ganzoo-resgan" / "src"))
    try:
        import ganzoo_resgan
    finally:
        sys.path.pop(0)
    if "resgan" in get_registry().names("arch"):
        pytest.skip("ganzoo-resgan is installed: covered by the contract tests")
    with registered_plugin(ganzoo_resgan, name="resgan", distribution="ganzoo-resgan") as info:
        assert sorted(info.components) == [("arch", "resgan"), ("loss", "dragan"),
                                           ("schedule", "acc-noise")]
        assert info.api_version == 1
