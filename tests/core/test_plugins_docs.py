"""docs/plugins.md documents every hook, knob, helper and `plugins --json` key that exists, and
nothing that does not: adding a hook without its section fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import gan_zoo
from gan_zoo import hookspecs, testing
from gan_zoo.plugins import PLUGIN_API_VERSION, PluginInfo, PluginSystem
from gan_zoo.training.knobs import KNOBS

DOC = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def hook_names() -> list[str]:
    """Every hook gan-zoo defines, as pluggy sees them."""
    system = PluginSystem()
    return sorted(name for name in dir(system.pm.hook) if not name.startswith("_")
                  and getattr(system.pm.hook, name).spec is not None)


def hook_sections(text: str) -> dict[str, str]:
    """Hook name -> body of its `### `name`` section."""
    parts = re.split(r"^### `(\w+)`[ \t]*$", text, flags=re.M)
    return {parts[i]: re.split(r"^##? ", parts[i + 1], flags=re.M)[0]
            for i in range(1, len(parts), 2)}


def undocumented(hooks: list[str], text: str) -> list[str]:
    """Hooks without a section that shows their signature and says what they register."""
    sections = hook_sections(text)
    return [h for h in hooks if h not in sections or f"def {h}(register" not in sections[h]
            or "@gan_zoo.hookimpl" not in sections[h] or len(sections[h].split()) < 15]


@pytest.fixture(scope="module")
def text() -> str:
    return DOC.read_text(encoding="utf-8")


def test_every_hook_has_a_documentation_section(text):
    hooks = hook_names()
    assert set(hooks) == set(hookspecs.HOOK_KINDS), "HOOK_KINDS must map every hookspec"
    assert undocumented(hooks, text) == []


def test_no_section_for_a_hook_that_does_not_exist(text):
    assert sorted(hook_sections(text)) == hook_names()


def test_the_check_fails_for_a_missing_or_empty_section(text):
    without = re.sub(r"^### `register_losses`.*?(?=^### )", "", text, flags=re.M | re.S)
    assert undocumented(hook_names(), without) == ["register_losses"]
    assert undocumented(hook_names() + ["register_widgets"], text) == ["register_widgets"]
    stub = text + "\n### `register_widgets`\n\nTODO\n"
    assert undocumented(["register_widgets"], stub) == ["register_widgets"]


def test_every_hookspec_has_a_docstring():
    for name in hookspecs.HOOK_KINDS:
        assert (getattr(hookspecs, name).__doc__ or "").strip(), name


def test_every_knob_is_documented_with_its_default(text):
    for name, knob in KNOBS.items():
        assert re.search(rf"^\| `{name}` \| {knob.default} \|", text, flags=re.M), name


def test_testing_helpers_and_json_keys_are_documented(text):
    for name in testing.__all__:
        assert f"`{name}" in text, name
    assert "`ganzoo_plugin`" in text
    info = PluginInfo("x", None, None, "m", False).as_dict()
    for key in info:
        assert f"`{key}`" in text, key


def test_api_version_is_the_documented_one(text):
    assert gan_zoo.PLUGIN_API_VERSION == PLUGIN_API_VERSION
    section = text.split("## Plugin API version", 1)[1]
    assert f"currently **{PLUGIN_API_VERSION}**" in section
    assert f"GANZOO_PLUGIN_API = {PLUGIN_API_VERSION}" in section


def test_the_tutorial_plugin_works(text):
    """The tutorial's pyproject declares the entry point, and its module passes every contract
    when registered the way its test does."""
    import tomllib
    import types

    from gan_zoo.testing import check_component, registered_plugin

    blocks = re.findall(r"```(\w*)\n(.*?)```", text, flags=re.S)
    pyproject = tomllib.loads(next(b for lang, b in blocks if lang == "toml"))
    assert pyproject["project"]["entry-points"]["gan_zoo"] == {"mlp": "ganzoo_mlp"}
    source = next(b for lang, b in blocks if lang == "python" and "def register_" in b
                  and "class MLP32" in b)
    module = types.ModuleType("ganzoo_mlp")
    exec(compile(source, "docs/plugins.md", "exec"), module.__dict__)
    with registered_plugin(module, name="mlp", distribution="ganzoo-mlp") as info:
        assert info.components == [("arch", "mlp32")]
        check_component("arch", "mlp32")
