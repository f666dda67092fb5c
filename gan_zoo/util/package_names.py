"""Is a string from a file a package name or version number we may put in a suggested command?

A checkpoint records the distribution and version of each component's plugin so that a missing
one can be named with an install command. The file may come from a stranger: a name or version
that does not follow the packaging grammars below is never put into a command. `packaging` is
not a run-time dependency of gan-zoo, so the two grammars are written out here.
"""

from __future__ import annotations

import re

# Longer than any real name or version; checked first, so a hostile megabyte string is rejected
# without running a regular expression over it.
MAX_LENGTH = 200

# PEP 508 "Names" (https://peps.python.org/pep-0508/#names), as also given by the core metadata
# spec: ASCII letters and digits, with '.', '_' and '-' inside. re.ASCII: without it IGNORECASE
# lets [A-Z] match U+212A KELVIN SIGN and U+017F LATIN SMALL LETTER LONG S.
_DISTRIBUTION = re.compile(r"([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])", re.IGNORECASE | re.ASCII)

# PEP 440 Appendix B, "Parsing version strings with regular expressions"
# (https://peps.python.org/pep-0440/#appendix-b-parsing-version-strings-with-regular-expressions):
# the pattern that accepts every valid (also not normalised) version, such as '1.0', '2.1rc1',
# '1!2.0.post3.dev4' or '2.3.0+cu121'. The surrounding whitespace that the spec tolerates is not
# accepted here, and the match must cover the whole string (fullmatch: '$' would allow a
# trailing newline).
_VERSION = re.compile(
    r"""
    v?
    (?:
        (?:(?P<epoch>[0-9]+)!)?                           # epoch
        (?P<release>[0-9]+(?:\.[0-9]+)*)                  # release segment
        (?P<pre>                                          # pre-release
            [-_\.]?
            (?P<pre_l>(a|b|c|rc|alpha|beta|pre|preview))
            [-_\.]?
            (?P<pre_n>[0-9]+)?
        )?
        (?P<post>                                         # post release
            (?:-(?P<post_n1>[0-9]+))
            |
            (?:
                [-_\.]?
                (?P<post_l>post|rev|r)
                [-_\.]?
                (?P<post_n2>[0-9]+)?
            )
        )?
        (?P<dev>                                          # dev release
            [-_\.]?
            (?P<dev_l>dev)
            [-_\.]?
            (?P<dev_n>[0-9]+)?
        )?
    )
    (?:\+(?P<local>[a-z0-9]+(?:[-_\.][a-z0-9]+)*))?       # local version
    """,
    re.VERBOSE | re.IGNORECASE | re.ASCII,
)

# Plugin names are entry-point names (`resgan = "ganzoo_resgan"`). The entry-point spec allows
# almost anything but recommends letters, digits, '_', '.' and '-'; a plugin name read from a
# checkpoint is only shown or looked up, and anything else is reported as invalid.
_PLUGIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", re.ASCII)


def _matches(pattern: re.Pattern[str], value: object) -> bool:
    return isinstance(value, str) and len(value) <= MAX_LENGTH and \
        pattern.fullmatch(value) is not None


def is_distribution_name(value: object) -> bool:
    """A valid distribution (pip package) name, e.g. 'ganzoo-resgan'."""
    return _matches(_DISTRIBUTION, value)


def is_version(value: object) -> bool:
    """A valid PEP 440 version, e.g. '0.1.0', '2.0rc1', '1.2+cu121'."""
    return _matches(_VERSION, value)


def is_plugin_name(value: object) -> bool:
    """A plugin (entry-point) name as gan-zoo accepts it from a file."""
    return _matches(_PLUGIN, value)
