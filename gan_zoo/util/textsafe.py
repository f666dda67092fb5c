"""Showing text that came from a file: escaped and capped before it reaches a terminal.

Checkpoints, configs, recipes, metrics files and folder names are written by strangers. What
gan-zoo prints from them must not carry terminal escape sequences (which can rewrite the screen,
set the window title or hide text), must not make one message megabytes long, and must never be
presented as something to paste into a shell. No gan-zoo or torch imports: any module can use it.
"""

from __future__ import annotations

import unicodedata

# What a message quotes from one untrusted value; the whole message has its own cap (cli).
QUOTE_LIMIT = 200
MESSAGE_LIMIT = 4000


def _escape_char(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _escaped(ch: str, keep_newlines: bool, backslashes: bool = True, quotes: bool = False) -> str:
    if ch == "\n" and keep_newlines:
        return ch
    if (ch == "\\" and backslashes) or (ch == "'" and quotes):
        return "\\" + ch
    if unicodedata.category(ch) in _UNSAFE:
        return _escape_char(ch)
    return ch


# Control, format (bidirectional overrides, zero-width), surrogate, private-use, unassigned
# and line/paragraph-separator characters.
_UNSAFE = frozenset(("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"))


def escape(text: str, keep_newlines: bool = False) -> str:
    """`text` with every control or format character (ESC, BEL, CR, bidirectional overrides,
    zero-width characters...) written as a visible \\x.. / \\u.. escape."""
    return "".join(_escaped(ch, keep_newlines) for ch in text)


def _cut_note(n: int) -> str:
    return f"... [{n} more characters]"


def cap(text: str, limit: int) -> str:
    """At most `limit` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    keep = limit - len(_cut_note(len(text)))
    if keep < 0:  # no room to say so
        return text[:limit]
    return text[:keep] + _cut_note(len(text) - keep)


def _escape_capped(text: str, limit: int, keep_newlines: bool, backslashes: bool = True,
                   quotes: bool = False) -> str:
    """escape() then cap(), looking at no more than `limit` characters of `text` (a 15 MB value
    costs no more than a short one); the note counts the characters of `text` left out.
    backslashes=False leaves '\\' alone (a whole message: its quoted values are escaped
    already, and escaping them again would double their backslashes)."""
    def escaped(part: str) -> str:
        return "".join(_escaped(ch, keep_newlines, backslashes, quotes) for ch in part)

    if len(text) <= limit:
        out = escaped(text)
        if len(out) <= limit:
            return out
    keep = limit - len(_cut_note(len(text)))
    if keep < 0:
        return escaped(text[:limit])[:limit]
    pieces, size, used = [], 0, 0
    for ch in text[:keep]:
        piece = _escaped(ch, keep_newlines, backslashes, quotes)
        if size + len(piece) > keep:
            break
        pieces.append(piece)
        size += len(piece)
        used += 1
    return "".join(pieces) + _cut_note(len(text) - used)


def shown(value: object, limit: int = QUOTE_LIMIT) -> str:
    """An untrusted value as it may appear inside a message: quoted, escaped and capped.

    Strings are quoted like repr() (so a reader sees where they start and end: a quote inside
    is written \\'); anything else is shown through str()."""
    if not isinstance(value, str):
        return _escape_capped(str(value), limit, keep_newlines=False)
    return f"'{_escape_capped(value, limit, keep_newlines=False, quotes=True)}'"


def bare(value: object, limit: int = QUOTE_LIMIT) -> str:
    """shown() without the quotes, for a value that reads as a word in its sentence (a version
    number, a plugin's error text)."""
    text = value if isinstance(value, str) else str(value)
    return _escape_capped(text, limit, keep_newlines=False)


def safe_message(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """A whole message for the terminal: control characters escaped (newlines kept;
    backslashes left as they are) and capped."""
    return _escape_capped(text, limit, keep_newlines=True, backslashes=False)


def message_block(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """safe_message() for a message that starts with a label ("Error: ", "Warning: "): its
    continuation lines are indented, so that no line of it can pass for another message."""
    return safe_message(text.replace("\n", "\n  "), limit)
