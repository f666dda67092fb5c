"""The built-in plugins are written as a third-party plugin must be (docs/plugins.md): they use
only what `gan_zoo` exports, so the docs' promise is tested on real plugins and the engine's
modules can move (issue 15) without breaking a plugin."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import gan_zoo
from gan_zoo import evaluation

PLUGINS = sorted((Path(__file__).resolve().parents[2] / "plugins").glob("*.py"))
# Submodules the docs hand to plugin authors, with the names they may take from each:
# docs/evaluation.md "For plugin authors" gives metrics the EvalContext and the distances.
PUBLIC_SUBMODULES = {"gan_zoo.evaluation": {*evaluation.__all__, "distances"}}


def engine_imports(source: str) -> list[str]:
    """Each use of gan-zoo in `source` that is not public: imports of other submodules, and
    names taken from `gan_zoo` (by import or attribute) that it does not export."""
    public = set(gan_zoo.__all__)
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.startswith("gan_zoo.")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            module, names = node.module, {a.name for a in node.names}
            allowed = public if module == "gan_zoo" else PUBLIC_SUBMODULES.get(module)
            if module.split(".")[0] == "gan_zoo" and (allowed is None or names - allowed):
                found.append(f"from {module} import {', '.join(sorted(names - (allowed or set())))}")
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
              and node.value.id == "gan_zoo" and node.attr not in public):
            found.append(f"gan_zoo.{node.attr}")
    return found


@pytest.mark.parametrize("path", PLUGINS, ids=lambda p: p.name)
def test_builtin_plugins_import_only_the_public_api(path):
    assert engine_imports(path.read_text()) == [], (
        f"{path.name} uses engine internals; import them from `gan_zoo` (export them there if a "
        "plugin needs them) as docs/plugins.md tells plugin authors")


def test_the_scan_finds_engine_imports():
    assert engine_imports("import gan_zoo\nfrom gan_zoo import Loss, Options\n"
                          "from gan_zoo.evaluation import EvalContext, distances\n"
                          "@gan_zoo.hookimpl\ndef f(): raise gan_zoo.UsageError('x')\n") == []
    source = ("from gan_zoo.interfaces import Loss\nimport gan_zoo.training.knobs\n"
              "from gan_zoo import _LAZY\nfrom gan_zoo.evaluation import weights\n"
              "def f():\n    from gan_zoo.errors import UsageError\n    return gan_zoo.training.knobs.X\n")
    assert sorted(engine_imports(source)) == sorted([
        "from gan_zoo.interfaces import Loss", "import gan_zoo.training.knobs", "from gan_zoo import _LAZY",
        "from gan_zoo.evaluation import weights", "from gan_zoo.errors import UsageError",
        "gan_zoo.training"])  # the first name under gan_zoo that it does not export
