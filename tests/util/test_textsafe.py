"""gan_zoo.util.textsafe and gan_zoo.util.package_names: what a message may quote from a file."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gan_zoo.util.package_names import is_distribution_name, is_plugin_name, is_version
from gan_zoo.util.textsafe import (
    MESSAGE_LIMIT,
    QUOTE_LIMIT,
    bare,
    cap,
    escape,
    message_block,
    safe_message,
    shown,
)

# Characters a terminal acts on or that hide or reorder text.
NASTY = ["\x1b", "\x07", "\r", "\b", "\x00", "\x7f", "\x9b", "\u202e", "\u2066", "\u200b",
         "\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\ufeff", "\U000e0041", "\ud800"]
TEXT = st.text(alphabet=st.one_of(st.characters(), st.sampled_from(NASTY + ["\n", "\\", "'"])),
               max_size=300)


def unsafe(text: str, newlines_allowed: bool) -> list[str]:
    """Characters of `text` that must not reach a terminal."""
    return [ch for ch in text if (ch != "\n" or not newlines_allowed) and
            unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")]


def test_escape_makes_control_and_format_characters_visible():
    assert escape("a\x1b]0;pwned\x07b") == "a\\x1b]0;pwned\\x07b"
    assert escape("\u202eevil") == "\\u202eevil"
    assert escape("line\r\nnext") == "line\\x0d\\x0anext"
    assert escape("line\nnext", keep_newlines=True) == "line\nnext"
    assert escape("C:\\x1b") == "C:\\\\x1b"  # a literal backslash cannot pass for an escape
    assert escape("café ü 日本") == "café ü 日本"


def test_shown_quotes_escapes_and_caps():
    assert shown("conv32") == "'conv32'"
    assert shown("x' && curl e | sh; echo '") == "'x\\' && curl e | sh; echo \\''"
    assert shown(5) == "5" and shown(None) == "None"
    long = shown("A" * 15_000_000)
    assert len(long) <= QUOTE_LIMIT + 2 and long.endswith(" more characters]'")
    assert "14999" in long  # says how much was left out


def test_bare_is_shown_without_quotes():
    assert bare("1.0\x1b") == "1.0\\x1b" and bare("it's") == "it's"


def test_cap_keeps_within_its_limit_and_says_how_much_was_cut():
    assert cap("short", 10) == "short"
    out = cap("x" * 1000, 100)
    assert len(out) <= 100 and out.endswith("... [926 more characters]")
    assert out.count("x") + 926 == 1000
    assert cap("abcdef", 3) == "abc"  # no room for the note


def test_safe_message_keeps_backslashes_of_values_escaped_before():
    message = f"bad version {shown('1.0' + chr(27))}"
    assert safe_message(message) == "bad version '1.0\\x1b'"


def test_message_block_indents_continuation_lines():
    assert message_block("Error: first\nError: forged") == "Error: first\n  Error: forged"


def test_fifteen_megabytes_cost_what_a_short_message_costs(monkeypatch):
    """Only what can be shown is escaped: the characters looked at are bounded by the cap,
    not by the 15 MB given (escaping all of it took seconds)."""
    import unicodedata

    import gan_zoo.util.textsafe as textsafe

    looked = []

    class Counting:
        @staticmethod
        def category(ch: str) -> str:
            looked.append(ch)
            return unicodedata.category(ch)

    monkeypatch.setattr(textsafe, "unicodedata", Counting)
    for make in (safe_message, message_block, shown, bare):
        looked.clear()
        out = make("\x1b" * 15_000_000)
        assert len(out) <= MESSAGE_LIMIT + 2 and "\x1b" not in out
        assert len(looked) <= MESSAGE_LIMIT + 2, (make.__name__, len(looked))


@settings(max_examples=150, deadline=None)
@given(text=TEXT, big=st.sampled_from([0, 1, 5000, 100_000]))
def test_any_text_comes_out_safe_and_capped(text, big):
    text = text + "\x1b\u202e" * big
    for out, limit, newlines in ((safe_message(text), MESSAGE_LIMIT, True),
                                 (message_block(text), MESSAGE_LIMIT, True),
                                 (shown(text), QUOTE_LIMIT + 2, False),
                                 (bare(text), QUOTE_LIMIT, False)):
        assert len(out) <= limit
        assert unsafe(out, newlines) == []
    assert all(line.startswith("  ") for line in message_block(text).split("\n")[1:])


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=40))
def test_short_text_is_shown_in_full_and_reversibly(text):
    out = shown(text)
    decoded = out[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape")
    assert decoded == text


# ---------------------------------------------------------------- package names and versions

GOOD_NAMES = ["ganzoo-resgan", "a", "A1", "gan_zoo", "zope.interface", "x-y.z_w"]
BAD_NAMES = ["", "-a", "a-", ".a", "a b", "x' && curl e | sh; echo '", "a\n", "a;b", "\u212a",
             "ganzoo-\u017ftyle", "a" * 201, "名前", None, 3, ["a"]]
GOOD_VERSIONS = ["1", "1.0", "0.1.0", "2.0rc1", "1!2.0.post3.dev4", "2.3.0+cu121", "v1.0",
                 "1.0-1", "1.0.dev0", "1.0a1.post2"]
BAD_VERSIONS = ["", "x", "1.0\n", " 1.0", "1.0 ", "1.0\x1b]0;pwned\x07", "1.0'; rm -rf ~",
                "1..0", "1.0+", "1.0+\u212a", "1.0+a b", "==1.0", "1" * 201, None, 1.0]


@pytest.mark.parametrize("name, valid", [(n, True) for n in GOOD_NAMES] +
                         [(n, False) for n in BAD_NAMES])
def test_distribution_names(name, valid):
    assert is_distribution_name(name) == valid


@pytest.mark.parametrize("version, valid", [(v, True) for v in GOOD_VERSIONS] +
                         [(v, False) for v in BAD_VERSIONS])
def test_versions(version, valid):
    assert is_version(version) == valid


def test_plugin_names():
    assert is_plugin_name("resgan") and is_plugin_name("my_plugin.v2")
    assert not any(map(is_plugin_name, ["", "a b", "a=b", "[x", "a\x1b", "x'", None]))


SHELL_SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_+!")


@settings(max_examples=200, deadline=None)
@given(value=st.text(max_size=30) | st.from_regex(r"\A[0-9a-zA-Z.!+_-]{1,20}\Z"))
def test_what_passes_is_safe_inside_single_quotes_and_agrees_with_packaging(value):
    """Whatever the two grammars accept can go inside '...' in a shell command; on printable
    ASCII they agree with the `packaging` library (a test-time check only). packaging itself is
    laxer: surrounding whitespace, a final newline, and (IGNORECASE without ASCII) the Kelvin
    sign pass its patterns."""
    utils = pytest.importorskip("packaging.utils")
    from packaging.version import InvalidVersion, Version

    if is_distribution_name(value) or is_version(value):
        assert set(value) <= SHELL_SAFE
    if not (value.isascii() and value.isprintable() and value == value.strip()):
        return
    try:
        Version(value)
        version_ok = True
    except InvalidVersion:
        version_ok = False
    try:
        utils.canonicalize_name(value, validate=True)
        name_ok = True
    except utils.InvalidName:
        name_ok = False
    assert (is_version(value), is_distribution_name(value)) == (version_ok, name_ok)
