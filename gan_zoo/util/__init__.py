"""Small utilities with no gan-zoo imports beyond this package (tomlio also raises errors.UsageError):
atomic writes, regular-file opening, safe display of untrusted text, TOML reading and writing,
lazy module attributes, package-name grammars, and the CLI docs generator (docgen reads the
click commands when it runs: `python -m gan_zoo.util.docgen`)."""
