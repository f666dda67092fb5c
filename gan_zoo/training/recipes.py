"""Recipes: named training configs (TOML) that reproduce an experiment in one command.

A recipe is an ordinary config file (`ganzoo train --config FILE` reads the same keys) shipped
in the package's ``recipe_files/`` folder; its leading ``#`` comment lines describe it.
``ganzoo train --recipe NAME`` finds ``NAME.toml`` there (or takes a path), and command-line
flags override what it sets.
Giving ``--arch`` moves the recipe's architecture options to the new architecture, so
``--recipe aircraft-dcgan --arch conv32`` keeps the aircraft network's shape at 32 pixels.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from ..errors import UsageError
from ..util.textsafe import escape, shown
from ..util.tomlio import read_text
from .config import load_config_file

ENV_VAR = "GANZOO_RECIPES"
BUILTIN_DIR = Path(__file__).resolve().parent / "recipe_files"


def recipe_dirs() -> list[Path]:
    """Where recipes are looked up: $GANZOO_RECIPES (path list), then the ones shipped with the
    package (installed or not)."""
    dirs = [Path(p) for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]
    dirs.append(BUILTIN_DIR)
    seen: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [s.resolve() for s in seen]:
            seen.append(d)
    return seen


@dataclass(frozen=True)
class Recipe:
    name: str
    path: Path

    @property
    def description(self) -> str:
        """The recipe file's leading comment lines, joined (UsageError naming the file when it
        cannot be read: not UTF-8, a folder, a FIFO, too large)."""
        lines = []
        for line in read_text(self.path, "recipe file").splitlines():
            if not line.startswith("#"):
                break
            lines.append(line.lstrip("#").strip())
        return " ".join(x for x in lines if x)


def available() -> dict[str, Recipe]:
    """Every recipe by name; the first directory wins for a name found twice."""
    out: dict[str, Recipe] = {}
    for d in recipe_dirs():
        for path in sorted(d.glob("*.toml")):
            out.setdefault(path.stem, Recipe(path.stem, path))
    return out


def find(name: str) -> Recipe:
    """A recipe by name, or by the path of a TOML file."""
    path = Path(name)
    if path.suffix == ".toml" and path.exists():  # read_toml then says what is wrong with it
        return Recipe(path.stem, path)
    known = available()
    if name in known:
        return known[name]
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(escape(c) for c in close)}?" if close else ""
    where = ", ".join(escape(str(d)) for d in recipe_dirs()) or "no recipe folder found"
    names = ", ".join(escape(k) for k in sorted(known)) or "none"
    raise UsageError(f"unknown recipe {shown(name)}.{hint} Known recipes: {names} (looked in: "
                     f"{where}; `ganzoo recipes` lists them)")


def retarget_arch(values: dict[str, Any], arch: str | None) -> dict[str, Any]:
    """With a new --arch, carry the file's architecture options over to it (unless the file
    already has options for that architecture)."""
    old = values.get("arch", "conv32")
    options = values.get("options")
    if arch is None or arch == old or not isinstance(options, dict) or old not in options:
        return values
    options = dict(options)
    moved = options.pop(old)
    options.setdefault(arch, moved)
    return {**values, "options": options}


def start_values(config_file: str | None, recipe: str | None, arch: str | None) -> dict[str, Any]:
    """The config values `ganzoo train` starts from, before command-line flags."""
    if config_file and recipe:
        raise UsageError("give --config or --recipe, not both (a recipe is a config file)")
    if recipe:
        values = load_config_file(find(recipe).path, "recipe file")
    elif config_file:
        values = load_config_file(config_file)
    else:
        return {}
    return retarget_arch(values, arch)


@click.command("recipes")
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
def recipes_command(as_json: bool) -> None:
    """List recipes: one-command reproductions of the seeds' experiments (`train --recipe`)."""
    rows = []
    for r in available().values():
        try:
            rows.append({"name": r.name, "path": str(r.path), "description": r.description})
        except UsageError as exc:  # one bad file in a recipe folder must not hide the others
            click.echo(f"warning: {exc}; left out of the list", err=True)
    if as_json:
        import json

        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no recipes found (the package's recipe_files folder is missing or unreadable; "
                   f"${ENV_VAR} names more folders of recipe files, separated by ':')")
    for r in rows:
        click.echo(f"{escape(r['name'])}\n    {escape(r['description'])}")
