"""docs/cli.md is generated from the click commands and must match them."""

from __future__ import annotations

import click

from gan_zoo import docgen
from gan_zoo.cli import cli

REGENERATE = ".venv/bin/python -m gan_zoo.docgen"


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
