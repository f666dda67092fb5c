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


def escape(text: str, keep_newlines: bool = False) -> str:
    """`text` with every control or format character (ESC, BEL, CR, bidirectional overrides,
    zero-width characters...) written as a visible \\x.. / \\u.. escape."""
    out = []
    for ch in text:
        if ch == "\n" and keep_newlines:
            out.append(ch)
        elif ch == "\\":
            out.append("\\\\")
        elif unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            out.append(_escape_char(ch))
        else:
            out.append(ch)
    return "".join(out)


def cap(text: str, limit: int) -> str:
    """At most `limit` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit} more characters]"


def shown(value: object, limit: int = QUOTE_LIMIT) -> str:
    """An untrusted value as it may appear inside a message: quoted, escaped and capped.

    Strings are quoted like repr() (so a reader sees where they start and end); anything else
    is shown through str()."""
    text = value if isinstance(value, str) else str(value)
    body = cap(escape(text), limit)
    return f"'{body}'" if isinstance(value, str) else body


def safe_message(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """A whole message for the terminal: escaped (newlines kept) and capped."""
    return cap(escape(text, keep_newlines=True), limit)
