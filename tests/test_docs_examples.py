"""The docs hang together and the examples run."""

from __future__ import annotations

import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
LINK_RE = re.compile(r"\]\(([^)#\s]+)(#[^)]*)?\)")


def _relative_links(page: Path) -> list[str]:
    return [m.group(1) for m in LINK_RE.finditer(page.read_text(encoding="utf-8"))
            if not re.match(r"[a-z]+:", m.group(1))]


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md")))
def test_relative_links_in_docs_resolve(page):
    broken = [link for link in _relative_links(DOCS / page)
              if not (DOCS / link).resolve().exists()]
    assert broken == [], f"docs/{page} links to missing files: {broken}"


def test_index_lists_every_page():
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    missing = [p.name for p in DOCS.glob("*.md") if p.name != "README.md" and
               f"({p.name})" not in index]
    assert missing == [], f"docs/README.md does not list: {missing}"


def test_faq_maps_each_failure_mode_to_registered_plugins():
    from gan_zoo.plugins import get_registry

    faq = (DOCS / "faq.md").read_text(encoding="utf-8")
    for heading in ("Mode collapse", "The discriminator wins", "Divergence", "Cycling",
                    "Quality peaks"):
        assert f"## {heading}" in faq
    names = set(re.findall(r"`--(?:sched|loss|augment|metric) ([a-z0-9-]+)", faq))
    assert {"noise-anneal", "hinge", "diffaugment"} <= names
    registry = get_registry()
    unknown = [n for n in names if registry.find_any(n) is None]
    assert unknown == [], f"faq.md names components that are not registered: {unknown}"


def test_python_api_example_runs(tmp_path, monkeypatch, image_folder):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["api_train_sample.py", "--steps", "2", "--width", "8",
                                      "--batch-size", "4",
                                      "--data", str(image_folder), "--out", "run"])
    runpy.run_path(str(REPO / "examples" / "api_train_sample.py"), run_name="__main__")
    for name in ("curves.png", "evolution.png", "api-samples.png", "report.html"):
        assert (tmp_path / "run" / name).exists(), name


@pytest.mark.parametrize("script", sorted(p.name for p in (REPO / "examples").glob("*.sh")))
def test_shell_examples_parse(script):
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    result = subprocess.run([bash, "-n", str(REPO / "examples" / script)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("script", sorted(p.name for p in (REPO / "examples").glob("*.py")))
def test_python_examples_compile_and_document_themselves(script):
    source = (REPO / "examples" / script).read_text(encoding="utf-8")
    compile(source, script, "exec")
    assert source.startswith('"""'), f"{script} has no docstring saying how to run it"
