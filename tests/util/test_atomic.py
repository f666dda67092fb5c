"""Atomic replacement (gan_zoo.util.atomic): the old file or the complete new one, no leftovers."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from gan_zoo.data.images import save_grid
from gan_zoo.evaluation.core import RealStats, StatsCache
from gan_zoo.util import atomic


def test_write_bytes_replaces_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "deep" / "file.bin"
    assert atomic.write_bytes(target, b"old") == target
    atomic.write_bytes(target, b"new", durable=True)
    assert target.read_bytes() == b"new"
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]
    assert target.stat().st_mode & 0o777 == 0o600  # private unless widened
    atomic.write_bytes(target, b"shared", mode=atomic.SHARED_MODE)
    assert target.stat().st_mode & 0o777 == 0o644


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), atomic.replacing(target) as tmp:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt  # interrupted mid-write
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_sample_grids_are_shared_pictures(tmp_path):
    path = save_grid(torch.zeros(4, 3, 8, 8), tmp_path / "grid.png")
    assert path.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]


def test_stats_cache_write_failure_costs_only_time(tmp_path, monkeypatch):
    """A reference-statistics cache that cannot be written is skipped, without a stray file."""
    cache = StatsCache(tmp_path)
    stats = RealStats(np.zeros((3, 4)), np.zeros(4), np.eye(4), cached=False)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full_disk)
    cache.save("key", stats, {})
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    cache.save("key", stats, {"n": 3})
    assert cache.load("key").feats.shape == (3, 4)


_NAMES = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"),
                 min_size=1, max_size=60).filter(lambda n: n not in (".", ".."))


@settings(max_examples=40, deadline=None)
@given(name=_NAMES)
@example(name="\U0001f600" * 63)  # 252 bytes: the name in the temporary one is cut to fit
def test_every_temporary_name_says_which_file_it_replaces(name):
    """A cleaner recognises this module's temporary files by name alone (RunDir.create deletes
    only those), for any target name; one near the 255-byte limit still gets a temporary file."""
    with tempfile.TemporaryDirectory() as folder, atomic.replacing(Path(folder) / name) as tmp:
        target = atomic.temporary_target(tmp.name)
        assert len(os.fsencode(tmp.name)) <= 255
        assert target == name if len(os.fsencode(name)) <= 234 else name.startswith(target)


@settings(max_examples=200, deadline=None)
@given(name=_NAMES)
def test_no_other_name_passes_for_a_temporary_file(name):
    """A user's `.draft.tmp` (or anything without the module's mark) is never taken for one."""
    assume("." + atomic.TEMP_MARK not in name)
    assert atomic.temporary_target(name) is None
    assert atomic.temporary_target(f".{name}.tmp") is None
