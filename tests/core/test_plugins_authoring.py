"""What a plugin author tripped on (issue 15): one table of kinds, testing an installed plugin,
failed plugins that hid their cause, the collision and checkpoint messages, `ganzoo plugins`
hooks, `dir(gan_zoo)`."""

from __future__ import annotations

import json
import warnings

import pluggy
import pytest
from click.testing import CliRunner

import gan_zoo
from gan_zoo import cli as cli_module
from gan_zoo import hookspecs, kinds, plugins, testing
from gan_zoo.cli import cli
from gan_zoo.errors import UnknownComponentError
from gan_zoo.plugins import PluginWarning, get_registry, missing_component_message, plugin_system
from gan_zoo.registry import Registry
from gan_zoo.testing import registered_plugin

from .test_plugins import LOSS, REGISTER_LOSS, install, load, site  # noqa: F401 (fixture)

RAISES_FIRST = LOSS.format(name="late-loss") + '''
@gan_zoo.hookimpl
def register_architectures(register):
    raise RuntimeError("architectures are broken")
''' + REGISTER_LOSS


# --------------------------------------------------------------------------- the kinds table


def test_every_list_of_kinds_is_the_table():
    table = kinds.KIND_TABLE
    names = [k.name for k in table]
    assert list(kinds.KINDS) == names and len(set(names)) == len(names)
    # hookspecs: one documented spec per row, and nothing else.
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    specs = sorted(h for h in vars(pm.hook) if not h.startswith("_"))
    assert specs == sorted(k.hook for k in table) == sorted(hookspecs.HOOK_KINDS)
    assert all(hookspecs.HOOK_KINDS[k.hook] == k.name for k in table)
    # Each base class exported by gan_zoo says its row's kind.
    for k in table:
        base = getattr(gan_zoo, k.base)
        assert base.kind == k.name and k.base in gan_zoo.__all__, k
    assert {c.kind for c in gan_zoo.Component.__subclasses__()} == set(names)
    # The registry, the CLI's names, the contract checks, the registration error.
    assert list(Registry()._entries) == names
    assert set(cli_module.KIND_ALIASES.values()) == set(names)
    for k in table:
        assert {k.name, k.title, k.plural} <= {a for a, n in cli_module.KIND_ALIASES.items()
                                               if n == k.name}
    assert set(testing._kind_checks()) == set(names)
    assert {k.name: k.base for k in table} == plugins.KIND_BASES


def test_kinds_module_imports_nothing_heavy():
    import subprocess
    import sys

    code = "import sys, gan_zoo.kinds, gan_zoo.hookspecs; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- registered_plugin


def _fresh_system():
    plugins.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)
        return plugin_system()


def test_a_test_registration_sets_aside_the_installed_plugin_of_that_name(site):  # noqa: F811
    install(site, "ganzoo-mlp", "0.1.0", LOSS.format(name="mlp-loss") + REGISTER_LOSS,
            entry="mlp")
    try:
        system = _fresh_system()
        assert get_registry().entry("loss", "mlp-loss").distribution == "ganzoo-mlp"
        import importlib

        source = importlib.import_module(system.infos["mlp"].module)
        with registered_plugin(source, name="mlp") as info:  # the tutorial's test, installed
            assert info.components == [("loss", "mlp-loss")]
            assert get_registry().entry("loss", "mlp-loss").distribution is None
            assert not system.infos["mlp"].installed
        entry = get_registry().entry("loss", "mlp-loss")
        assert (entry.plugin, entry.distribution) == ("mlp", "ganzoo-mlp")  # put back
        assert system.infos["mlp"].installed and system.infos["mlp"].status == "ok"
        # A built-in name is never set aside.
        with pytest.raises(ValueError, match="built-in"), registered_plugin(source, "losses"):
            pass
    finally:
        plugins.reset()


def test_a_failed_installed_plugin_says_why_when_its_name_is_used(site):  # noqa: F811
    install(site, "ganzoo-half", "0.1", RAISES_FIRST, entry="half")
    try:
        system = _fresh_system()
        assert system.infos["half"].status == "failed"
        # Asked for by name, a component it had registered names the plugin and the cause.
        with pytest.raises(UnknownComponentError) as error:
            get_registry().entry("loss", "late-loss")
        assert "plugin 'half', which failed to load: register_architectures raised " \
               "RuntimeError: architectures are broken." in str(error.value)
        # A direct second registration of the name says it failed, and why.
        with pytest.raises(ValueError, match="installed from 'ganzoo-half'; it failed to load: "
                                             "register_architectures raised"):
            system.add_plugin(object(), "half")
        # The tests of the failed package still run from source under its name; then the
        # failure is back as it was.
        import importlib

        fixed = testing.plugin_of(importlib.import_module(system.infos["half"].module).Soft)
        with registered_plugin(fixed, name="half") as info:
            assert info.components == [("loss", "late-loss")] and info.status == "ok"
        assert system.infos["half"].status == "failed"
        assert "late-loss" not in get_registry().names("loss")
        assert system.registry.failed_plugins["half"].startswith("register_architectures")
    finally:
        plugins.reset()


# --------------------------------------------------------------------------- messages


def test_checkpoint_message_for_an_installed_plugin_that_failed(site):  # noqa: F811
    install(site, "ganzoo-half", "0.1", RAISES_FIRST, entry="half")
    try:
        _fresh_system()
        message = missing_component_message({"kind": "loss", "name": "late-loss", "plugin": "half",
                                             "distribution": "ganzoo-half", "version": "0.1"})
        assert "installed but failed to load: register_architectures raised RuntimeError: " \
               "architectures are broken" in message
        assert "not installed" not in message and "pip install" not in message
        assert ".." not in message
    finally:
        plugins.reset()


def test_collision_with_a_builtin_names_it_and_ends_with_one_full_stop(site):  # noqa: F811
    bad = install(site, "ganzoo-bce", "0.1", LOSS.format(name="bce") + REGISTER_LOSS)
    _, warned = load()
    message = str(warned[0].message)
    assert "by the built-in plugin 'losses' and by the plugin " in message
    assert f"rename the component in the plugin '{bad}', or uninstall it or leave it out " \
           "with GANZOO_PLUGINS." in message
    assert "one of the plugins" not in message and ".." not in message
    assert message.endswith("GANZOO_PLUGINS.")


def test_collision_between_two_third_party_plugins(site):  # noqa: F811
    install(site, "ganzoo-a", "0.1", LOSS.format(name="same-loss") + REGISTER_LOSS)
    install(site, "ganzoo-b", "0.1", LOSS.format(name="same-loss") + REGISTER_LOSS)
    _, warned = load()
    message = str(warned[0].message)
    assert "built-in" not in message and "uninstall one of the two plugins" in message
    assert message.count("..") == 0 and message.endswith(".")


def test_plugins_lists_every_hook_of_a_plugin_whose_hook_raised(site):  # noqa: F811
    install(site, "ganzoo-half", "0.1", RAISES_FIRST, entry="half")
    try:
        _fresh_system()
        result = CliRunner().invoke(cli, ["plugins", "--json"])
        info = {i["name"]: i for i in json.loads(result.output)}["half"]
        assert info["status"] == "failed"
        assert info["hooks"] == ["register_architectures", "register_losses"]
        text = CliRunner().invoke(cli, ["plugins"]).output
        assert "hooks: register_architectures, register_losses" in text
    finally:
        plugins.reset()


def test_dir_of_the_package_lists_the_public_names():
    listed = dir(gan_zoo)
    assert set(gan_zoo.__all__) <= set(listed)
    assert {"Architecture", "Loss", "Options", "TrainState", "hookimpl"} <= set(listed)


def test_a_package_skipped_for_a_taken_name_says_the_first_one_failed(site):  # noqa: F811
    install(site, "ganzoo-first", "1.0", "import definitely_not_installed_module_xyz\n",
            entry="same-name")
    install(site, "ganzoo-second", "1.0", LOSS.format(name="second-loss") + REGISTER_LOSS,
            entry="same-name")
    _, warned = load()
    skipped = [str(w.message) for w in warned if "'ganzoo-second' skipped" in str(w.message)]
    assert len(skipped) == 1
    assert "already used by 'ganzoo-first' (which failed to load: import failed: " \
           "ModuleNotFoundError" in skipped[0]
