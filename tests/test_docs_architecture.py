"""docs/architecture.md's picture matches the folders: every .py file and folder under gan_zoo/ and
plugins/ is drawn, and everything drawn exists (issue 15's "the picture matches the folders")."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "architecture.md"
ROOTS = ("gan_zoo", "plugins")  # the folders the picture must show in full
ENTRY = re.compile(r"^(?P<lead>[│├└─ ]*)(?P<name>[\w.]+/?)(?:\s|$)")


def text_blocks(doc: str) -> list[str]:
    return re.findall(r"```text\n(.*?)```", doc, flags=re.S)


def drawn(picture: str) -> set[str]:
    """The paths the tree picture names, relative to the repository: one entry per line, four
    columns per level (`tree`'s drawing)."""
    paths: set[str] = set()
    stack: list[str] = []
    for line in picture.splitlines():
        m = ENTRY.match(line)
        if not m:
            continue
        depth = len(m.group("lead")) // 4
        assert len(m.group("lead")) % 4 == 0 and depth <= len(stack), f"misdrawn line: {line!r}"
        del stack[depth:]
        name = m.group("name")
        path = "/".join([*stack, name.rstrip("/")])
        paths.add(path + ("/" if name.endswith("/") else ""))
        if name.endswith("/"):
            stack.append(name.rstrip("/"))
    return paths


def on_disk(root: Path = REPO) -> set[str]:
    """Every .py file and folder (caches and build outputs aside) under the picture's roots."""
    out: set[str] = set()
    for top in ROOTS:
        out.add(top + "/")
        for p in (root / top).rglob("*"):
            rel = p.relative_to(root)
            if "__pycache__" in rel.parts or rel.name.endswith(".egg-info"):
                continue
            if p.is_dir():
                out.add(f"{rel.as_posix()}/")
            elif p.suffix == ".py":
                out.add(rel.as_posix())
    return out


def mismatch(picture: str, root: Path = REPO) -> tuple[set[str], set[str]]:
    """(drawn but missing on disk, on disk but not drawn), restricted to ROOTS."""
    shown = {p for p in drawn(picture) if p.split("/")[0] in ROOTS}
    real = on_disk(root)
    return shown - real, real - shown


def picture() -> str:
    doc = DOC.read_text(encoding="utf-8")
    section = doc.split("## The picture", 1)[1]
    return text_blocks(section)[0]


def test_picture_matches_the_folders() -> None:
    missing, undrawn = mismatch(picture())
    assert not missing, f"docs/architecture.md's picture names what does not exist: {sorted(missing)}"
    assert not undrawn, f"docs/architecture.md's picture leaves out: {sorted(undrawn)}"


def test_every_path_in_the_docs_diagrams_exists() -> None:
    """The flow diagram's `training/trainer.py`-style paths resolve under gan_zoo/ or the repository."""
    doc = DOC.read_text(encoding="utf-8")
    for block in text_blocks(doc):
        for token in re.findall(r"[\w/]+\.py\b", block):
            assert _exists(token), f"docs/architecture.md names {token}, which does not exist"


def _exists(token: str) -> bool:
    """A path from the repository or gan_zoo/, or a bare file name found under ROOTS."""
    if (REPO / token).exists() or (REPO / "gan_zoo" / token).exists():
        return True
    return "/" not in token and any(any((REPO / top).rglob(token)) for top in ROOTS)


def test_the_check_notices_a_missing_and_an_extra_module(tmp_path: Path) -> None:
    """The check fails both ways: a module drawn but gone, a module present but not drawn."""
    for top in ROOTS:
        (tmp_path / top).mkdir()
    (tmp_path / "gan_zoo" / "training").mkdir()
    (tmp_path / "gan_zoo" / "api.py").touch()
    (tmp_path / "gan_zoo" / "training" / "trainer.py").touch()
    (tmp_path / "gan_zoo" / "training" / "new_module.py").touch()
    art = ("gan_zoo/\n├── api.py      front door\n├── gone.py\n└── training/\n"
           "    └── trainer.py\nplugins/\n")
    missing, undrawn = mismatch(art, tmp_path)
    assert missing == {"gan_zoo/gone.py"}
    assert undrawn == {"gan_zoo/training/new_module.py"}
