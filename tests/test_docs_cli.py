"""docs/cli.md is generated from the click commands and must match them."""

from __future__ import annotations

import click

from gan_zoo.cli import cli
from gan_zoo.util import docgen

REGENERATE = ".venv/bin/python -m gan_zoo.util.docgen"


def test_cli_reference_is_up_to_date():
    current = docgen.DOC.read_text(encoding="utf-8") if docgen.DOC.exists() else ""
    assert current == docgen.render(), (
        f"docs/cli.md is out of date with the click commands; regenerate it with: {REGENERATE} "
        "(and commit docs/cli.md)")


def test_every_command_option_and_argument_is_in_the_reference():
    text = docgen.render()
    ctx = click.Context(cli, info_name="ganzoo")
    for name in cli.list_commands(ctx):
        cmd = cli.get_command(ctx, name)
        assert f"## `ganzoo {name}`" in text
        for param in cmd.params:
            if isinstance(param, click.Option):
                for opt in param.opts + param.secondary_opts:
                    assert f"`{opt}`" in text, (name, opt)
            else:
                assert f"`{param.human_readable_name}`" in text, (name, param.name)


def test_check_mode_reports_staleness(tmp_path, capsys):
    out = tmp_path / "cli.md"
    assert docgen.main(["--check", "--out", str(out)]) == 1
    assert f"regenerate it with: {docgen.REGENERATE}" in capsys.readouterr().err
    assert docgen.main(["--out", str(out)]) == 0
    assert docgen.main(["--check", "--out", str(out)]) == 0
    out.write_text(out.read_text() + "edited by hand\n")
    assert docgen.main(["--check", "--out", str(out)]) == 1


def test_table_cells_escape_pipes_and_join_lines():
    assert docgen._cell("a | b\n   c") == "a \\| b c"


def test_required_options_say_so_in_the_reference():
    """`sample --out` has no default: the reference must say it is required (issue 15)."""
    text = docgen.render()
    row = next(line for line in text.split("## `ganzoo sample`")[1].splitlines()
               if line.startswith("| `--out`"))
    assert "**Required.**" in row
    ctx = click.Context(cli, info_name="ganzoo")
    for name in cli.list_commands(ctx):
        cmd = cli.get_command(ctx, name)
        for p in cmd.params:
            if isinstance(p, click.Option) and p.required:
                lines = text.split(f"## `ganzoo {name}`")[1].splitlines()
                assert any(line.startswith(f"| {docgen._names(p)} ") and "**Required.**" in line
                           for line in lines), (name, p.name)


def test_docs_index_lists_each_page_once():
    index = (docgen.DOC.parent / "README.md").read_text(encoding="utf-8")
    import re

    pages = re.findall(r"^\| \[([\w.-]+\.md)\]", index, flags=re.M)
    assert pages and len(pages) == len(set(pages)), pages
    listed = set(pages) | {"README.md"}
    on_disk = {p.name for p in docgen.DOC.parent.glob("*.md")}
    assert on_disk <= listed, sorted(on_disk - listed)
