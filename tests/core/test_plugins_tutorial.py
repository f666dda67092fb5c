"""The tutorial in docs/plugins.md runs as written, in its order (issue 15's "Done when").

The package is written from the page's own code blocks into a temporary folder and installed
with `pip install -e` into a throwaway environment layered on this one (a .pth file adds this
venv's site-packages), so the shared venv is never changed. Then every command of the
tutorial's "Install and use it" block runs in order, from the folder above the package. Two
flags are added to the pip line, nothing else: `--no-deps --no-build-isolation`, because
tests download nothing (gan-zoo and setuptools are already there).
"""

from __future__ import annotations

import os
import re
import shlex
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "plugins.md"
OFFLINE = ["--no-deps", "--no-build-isolation", "--no-index", "-q"]


def tutorial() -> str:
    text = DOC.read_text(encoding="utf-8")
    return text.split("## Tutorial: a plugin from an empty folder")[1].split("\n## ")[0]


def blocks(section: str) -> list[tuple[str, str]]:
    """(language, code) of each fenced block, in order."""
    return re.findall(r"^```(\w*)\n(.*?)^```", section, flags=re.M | re.S)


def write_package(root: Path, section: str) -> Path:
    """The files of step 1 with the contents of steps 2-4, from the page."""
    code = {lang: [c for lg, c in blocks(section) if lg == lang] for lang in ("toml", "python")}
    tree = next(c for lg, c in blocks(section) if lg == "")
    paths = [line.split("── ")[1] for line in tree.splitlines() if "── " in line]
    assert paths == ["pyproject.toml", "src/ganzoo_mlp/__init__.py", "tests/test_mlp.py"], paths
    package = root / tree.splitlines()[0].strip().rstrip("/")
    for path, content in zip(paths, [code["toml"][0], *code["python"][:2]], strict=True):
        (package / path).parent.mkdir(parents=True, exist_ok=True)
        (package / path).write_text(content, encoding="utf-8")
    return package


def layered_env(root: Path) -> Path:
    """A venv whose Python also sees this venv's packages, with `ganzoo` and `pytest` on PATH."""
    env = root / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    python = env / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                              "['purelib'])"], capture_output=True, text=True, check=True)
    ours = [p for p in [sysconfig.get_paths()["purelib"], *site.getsitepackages()] if p]
    # An "import" line in a .pth file runs at start: addsitedir also reads that folder's .pth
    # files (gan-zoo's own editable install is one).
    (Path(purelib.stdout.strip()) / "_ganzoo_outer.pth").write_text(
        "".join(f"import site; site.addsitedir({p!r})\n" for p in dict.fromkeys(ours)))
    for command, module in (("ganzoo", "gan_zoo"), ("pytest", "pytest")):
        script = env / "bin" / command
        script.write_text(f'#!/bin/sh\nexec "{python}" -m {module} "$@"\n')
        script.chmod(0o755)
    return env


def build_tools_missing() -> str | None:
    """The tutorial's build backend must already be installed: tests download nothing."""
    from importlib.metadata import PackageNotFoundError, version

    try:  # wheel is not needed: setuptools >= 70 builds wheels itself
        major = int(version("setuptools").split(".")[0])
    except PackageNotFoundError:
        return "setuptools is not installed"
    return None if major >= 70 else f"setuptools {major} < 70"


@pytest.mark.slow
@pytest.mark.skipif(build_tools_missing() is not None,
                    reason=f"the tutorial's build backend: {build_tools_missing()} "
                    "(.ci/run: pip install 'setuptools>=70')")
def test_the_tutorial_runs_in_its_order(tmp_path):
    section = tutorial()
    write_package(tmp_path, section)
    env = layered_env(tmp_path)
    steps = [line.split("#")[0].strip() for line in blocks(section)[-1][1].splitlines()]
    steps = [s for s in steps if s]
    assert steps[0].startswith("pip install -e ") and steps[1].startswith("PYTHONPATH="), steps
    environ = {**os.environ, "PATH": f"{env / 'bin'}:{os.environ['PATH']}",
               "OMP_NUM_THREADS": "1"}
    environ.pop("PYTHONPATH", None)
    outputs = {}
    for step in steps:
        argv = shlex.split(step)
        prefix = {}
        while "=" in argv[0]:
            key, value = argv.pop(0).split("=", 1)
            prefix[key] = value
        if argv[0] == "pip":
            argv = [str(env / "bin" / "python"), "-m", "pip", *argv[1:], *OFFLINE]
        run = subprocess.run(argv, cwd=tmp_path, env={**environ, **prefix}, capture_output=True,
                             text=True, timeout=300)
        assert run.returncode == 0, (step, run.stdout[-3000:], run.stderr[-3000:])
        assert "Warning" not in run.stderr, (step, run.stderr[-3000:])
        outputs[argv[0] if argv[0] != "ganzoo" else " ".join(argv[:2])] = run.stdout
    assert re.search(r"^mlp +\[ok\] +ganzoo-mlp 0\.1\.0 +api 1", outputs["ganzoo plugins"], re.M)
    assert "components: mlp32 (arch)" in outputs["ganzoo plugins"]
    assert re.search(r"mlp32 +mlp \(ganzoo-mlp\)", outputs["ganzoo list"])
    assert "mlp32.hidden" in outputs["ganzoo show"]
