"""Registry: lookup, did-you-mean, duplicates, listing, plugins registered via entry points."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import gan_zoo
from gan_zoo.cli import cli
from gan_zoo.errors import DuplicateComponentError, UnknownComponentError
from gan_zoo.interfaces import Loss
from gan_zoo.plugins import PluginSystem, get_registry, plugin_system


def test_builtins_come_from_entry_points_of_the_distribution():
    infos = plugin_system().infos
    assert infos["conv"].distribution == "gan-zoo"
    assert infos["conv"].module == "gan_zoo_plugins.conv"
    assert ("arch", "conv64") in infos["conv"].components
    entry = get_registry().entry("arch", "conv32")
    assert (entry.plugin, entry.distribution) == ("conv", "gan-zoo")


def test_unknown_name_suggests_close_names():
    with pytest.raises(UnknownComponentError) as info:
        get_registry().get("arch", "conv46")
    assert "Did you mean" in str(info.value)
    assert "conv64" in info.value.suggestions


def test_unknown_name_on_cli_exits_2_with_suggestion():
    result = CliRunner().invoke(cli, ["train", "--arch", "cnv64", "--steps", "1"])
    assert result.exit_code == 2
    assert "unknown architecture 'cnv64'" in result.output
    assert "conv64" in result.output
    assert "Traceback" not in result.output


class _Dupe(Loss):
    """A loss whose name collides with the built-in bce."""

    name = "bce"

    def real_loss(self, real_logits, real_target=1.0):
        return real_logits.mean()

    def fake_loss(self, fake_logits):
        return fake_logits.mean()

    def generator_loss(self, fake_logits):
        return -fake_logits.mean()


class _DupePlugin:
    @gan_zoo.hookimpl
    def register_losses(self, register):
        register(_Dupe)


def test_duplicate_name_names_both_plugins():
    system = PluginSystem()
    system.load_entry_points()
    system.build()
    with pytest.raises(DuplicateComponentError) as info:
        system.add_plugin(_DupePlugin(), name="my-dupe")
    message = str(info.value)
    assert "'bce'" in message and "'losses'" in message and "'my-dupe'" in message


def test_list_filters_by_kind_and_wildcard():
    names = [e.name for e in get_registry().entries("arch", "conv*")]
    assert names == ["conv128", "conv32", "conv64"]
    assert [e.name for e in get_registry().entries(None, "conv6?")] == ["conv64"]


def test_list_cli_json_has_kind_and_plugin():
    result = CliRunner().invoke(cli, ["list", "arch", "--json"])
    assert result.exit_code == 0
    rows = json.loads(result.output)
    assert {r["name"] for r in rows} >= {"conv32", "conv64", "conv128"}
    assert all(r["kind"] == "arch" for r in rows)  # (an installed example plugin may add one)
    assert all(r["plugin"] == "conv" for r in rows if r["name"].startswith("conv"))


def test_show_lists_options_with_descriptions():
    result = CliRunner().invoke(cli, ["show", "conv64", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.output)
    by_name = {o["name"]: o for o in data["options"]}
    assert by_name["dropout"]["default"] == 0.0
    assert all(o["description"] for o in data["options"])


def test_plugins_cli_reports_builtins():
    result = CliRunner().invoke(cli, ["plugins", "--json"])
    assert result.exit_code == 0
    infos = {i["name"]: i for i in json.loads(result.output)}
    assert infos["conv"]["status"] == "ok"
    assert "register_architectures" in infos["conv"]["hooks"]


class _NamedLikeAnArch(Loss):
    """A loss named like an architecture."""

    name = "conv32"


def test_names_are_global_across_kinds_and_follow_the_rules():
    from gan_zoo_plugins.conv import Conv32

    from gan_zoo.registry import Entry, InvalidNameError, Registry, check_name

    registry = Registry()
    registry.add(Entry("arch", "conv32", Conv32, "conv", "gan-zoo", "0.1.0"))
    with pytest.raises(DuplicateComponentError) as info:
        registry.add(Entry("loss", "conv32", _NamedLikeAnArch, "other", None, None))
    assert "already used by the architecture" in str(info.value) and "'other'" in str(info.value)
    for good in ("resgan", "noise-anneal", "dup_rate", "conv128"):
        assert check_name(good) == good
    # "conv32\n": `$` matched before a final newline, so that name once passed.
    for bad in ("", "Conv32", "2fast", "my loss", "a.b", "x" * 65, None, "conv32\n",
                "conv\x1b[2J"):
        with pytest.raises(InvalidNameError, match="invalid component name"):
            check_name(bad)
