"""Generate docs/cli.md from the click commands, so the CLI reference never drifts from the code.

    python -m gan_zoo.util.docgen            # rewrite docs/cli.md
    python -m gan_zoo.util.docgen --check    # exit 1 when docs/cli.md is out of date (used by tests)
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

import click

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
REGENERATE = "python -m gan_zoo.util.docgen"
UNSET = getattr(click.core, "UNSET", object())  # click >= 8.3 marks "no default" with a sentinel


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _param_type(param: click.Parameter) -> str:
    if isinstance(param, click.Option) and param.is_flag:
        return "flag"
    kind = param.type
    if isinstance(kind, click.Choice):
        return " \\| ".join(f"`{c}`" for c in kind.choices)
    if isinstance(kind, click.IntRange | click.FloatRange):
        lo = "" if kind.min is None else kind.min
        hi = "" if kind.max is None else kind.max
        return f"{'integer' if isinstance(kind, click.IntRange) else 'number'} {lo}..{hi}"
    if isinstance(param, click.Option) and param.metavar:
        return param.metavar
    names = {"text": "text", "integer": "integer", "float": "number", "path": "path",
             "boolean": "true/false"}
    return names.get(kind.name, kind.name)


def _default(param: click.Option) -> str:
    if param.is_flag and not param.secondary_opts:
        return ""
    default = param.default
    if default is None or default is UNSET or default == () or callable(default):
        return ""
    if param.secondary_opts and isinstance(default, bool):
        return f"`{(param.opts if default else param.secondary_opts)[0]}`"
    return f"`{default}`"


def _names(param: click.Option) -> str:
    opts = sorted(param.opts, key=len) + param.secondary_opts
    return ", ".join(f"`{o}`" for o in opts)


def _command_doc(cmd: click.Command, path: list[str]) -> list[str]:
    ctx = click.Context(cmd, info_name=" ".join(path), terminal_width=100, max_content_width=100)
    usage = " ".join([" ".join(path), *cmd.collect_usage_pieces(ctx)])
    lines = [f"## `{' '.join(path)}`", "", "```text", usage, "```", ""]
    if cmd.help:
        lines += [inspect.cleandoc(click.unstyle(cmd.help)).replace("\b\n", ""), ""]
    args = [p for p in cmd.params if isinstance(p, click.Argument)]
    if args:
        lines += ["| Argument | Type | Required |", "|---|---|---|"]
        for a in args:
            many = " (one or more)" if a.nargs == -1 else ""
            lines.append(f"| `{a.human_readable_name}` | {_param_type(a)}{many} | "
                         f"{'yes' if a.required else 'no'} |")
        lines.append("")
    opts = [p for p in cmd.params if isinstance(p, click.Option) and not p.hidden]
    if opts:
        lines += ["| Option | Type | Default | Description |", "|---|---|---|---|"]
        for o in opts:
            repeat = " Repeatable." if o.multiple and "repeatable" not in (o.help or "").lower() \
                else ""
            required = "**Required.** " if o.required else ""  # click's help says [required]
            lines.append(f"| {_names(o)} | {_param_type(o)} | {_default(o)} | "
                         f"{required}{_cell(o.help or '')}{repeat} |")
        lines += ["| `-h`, `--help` | flag |  | Show the help and exit. |", ""]
    return lines


def render() -> str:
    """The whole of docs/cli.md as text."""
    from ..cli import cli

    ctx = click.Context(cli, info_name="ganzoo")
    names = cli.list_commands(ctx)
    out = [
        "# CLI reference",
        "",
        f"<!-- Generated from the click commands by `{REGENERATE}`; do not edit by hand. -->",
        "",
        "Every command takes `-h`/`--help`. `ganzoo --version` prints the version. User errors "
        "print one line starting with `Error:` and exit with code 2 (bad names or options) or 1 "
        "(data, checkpoints, environment); see the [FAQ](faq.md) for what to do about them.",
        "",
        f"{click.unstyle(cli.help or '').strip()}",
        "",
        "Commands: " + ", ".join(f"[`{n}`](#ganzoo-{n})" for n in names),
        "",
    ]
    for name in names:
        cmd = cli.get_command(ctx, name)
        if cmd is None or cmd.hidden:
            continue
        out += _command_doc(cmd, ["ganzoo", name])
        if isinstance(cmd, click.Group):
            sub_ctx = click.Context(cmd, info_name=name, parent=ctx)
            for sub in cmd.list_commands(sub_ctx):
                out += _command_doc(cmd.get_command(sub_ctx, sub), ["ganzoo", name, sub])
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether docs/cli.md "
                        "is current (exit 1 when it is not)")
    parser.add_argument("--out", type=Path, default=DOC, help="file to write (default docs/cli.md)")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is out of date; regenerate it with: {REGENERATE}", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
