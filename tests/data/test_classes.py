"""Classes from data folders and the built-in shapes: labels, every way a folder fails to be a
labelled dataset, class-balanced batches, class lookup by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gan_zoo.data import classes as classes_mod
from gan_zoo.data import load_builtin, load_folder
from gan_zoo.data.builtin import SHAPE_KINDS, draw_labelled_shape, make_labelled_shapes
from gan_zoo.data.classes import (
    BalancedSampler,
    ClassInfo,
    describe,
    grid_labels,
    require_classes,
)
from gan_zoo.errors import CheckpointError, DataError, UsageError

from ..conftest import write_images


def _labelled(root: Path, spec: dict[str, int]) -> Path:
    for i, (name, n) in enumerate(spec.items()):
        write_images(root / name, n, seed=i)
    return root


def test_subfolders_are_classes_and_nested_images_belong_to_the_top_folder(tmp_path):
    root = _labelled(tmp_path / "d", {"cat": 3, "dog/puppies": 2, "dog": 1})
    data = load_folder(root, 16)
    assert data.classes == ("cat", "dog")
    assert data.empty_classes == ()
    assert sorted(data.labels.tolist()) == [0, 0, 0, 1, 1, 1]
    info = require_classes(data)
    assert info.names == ("cat", "dog") and info.counts == (3, 3)
    assert describe(info) == "2 classes ('cat', 'dog'), 3 images each"


def test_labels_follow_the_images_when_some_are_unreadable_and_from_the_cache(tmp_path):
    root = _labelled(tmp_path / "d", {"a": 2, "b": 3})
    (root / "a" / "broken.png").write_bytes(b"not a png")
    first = load_folder(root, 16)
    again = load_folder(root, 16)  # from the cache
    assert len(first) == 5 and first.skipped == 1
    for data in (first, again):
        assert data.labels.tolist() == [0, 0, 1, 1, 1]
    # the image of label 1 is the first image of b, not shifted by the broken file
    direct = load_folder(root / "b", 16)
    assert np.array_equal(first.images[2], direct.images[0])


@pytest.mark.parametrize("layout, expected", [
    ({}, "has no subfolders"),
    ({"a": 2, "b": 2, "": 1}, "1 image(s)"),
    ({"a": 2, "b": 0}, "'b'"),
    ({"only": 3}, "single class ('only')"),
])
def test_folders_that_are_not_labelled_datasets_say_why(tmp_path, layout, expected):
    root = tmp_path / "d"
    root.mkdir()
    if not layout:
        write_images(root, 3)
    for name, n in layout.items():
        if n == 0:
            (root / name).mkdir()
        else:
            write_images(root / name if name else root, n, seed=len(name))
    data = load_folder(root, 16)
    with pytest.raises(DataError) as err:
        require_classes(data)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_too_many_classes_is_one_message(tmp_path, monkeypatch):
    monkeypatch.setattr(classes_mod, "MAX_CLASSES", 3)
    root = _labelled(tmp_path / "d", {f"c{i}": 1 for i in range(4)})
    with pytest.raises(DataError, match="4 class folders; gan-zoo trains at most 3"):
        require_classes(load_folder(root, 16))


def test_class_names_with_spaces_unicode_and_control_characters(tmp_path):
    names = ["big cat", "çà 日本", "evil\x1b[31mred"]
    root = _labelled(tmp_path / "d", dict.fromkeys(names, 1))
    data = load_folder(root, 16)
    info = require_classes(data)
    assert set(info.names) == set(names)
    text = describe(info)
    assert "\x1b" not in text and "big cat" in text
    with pytest.raises(UsageError) as err:
        info.index("evil\x1b[31mre")
    assert "\x1b" not in str(err.value) and "did you mean" in str(err.value)


def test_builtin_shapes_are_labelled_by_kind():
    data = load_builtin(32, n=12)
    assert data.classes == SHAPE_KINDS
    images, labels = make_labelled_shapes(12, 32)
    assert np.array_equal(data.images, images) and np.array_equal(data.labels, labels)
    again = load_builtin(32, n=12)  # from the cache, labels too
    assert np.array_equal(again.labels, labels)
    rng = np.random.default_rng(5)
    _, kind = draw_labelled_shape(rng, 32, kind=2)
    assert kind == 2
    assert require_classes(data).names == SHAPE_KINDS


def test_builtin_labels_are_rebuilt_when_their_cache_file_is_damaged():
    data = load_builtin(32, n=10, seed=3)
    labels_path = data.cache_path.with_name(data.cache_path.stem + "-labels.npy")
    np.save(labels_path, np.full(10, 7, np.int64))  # out of range
    assert np.array_equal(load_builtin(32, n=10, seed=3).labels, data.labels)


def test_class_lookup_by_name_index_and_did_you_mean():
    info = ClassInfo(("cat", "dog", "12"), (1, 2, 3))
    assert info.index("dog") == 1
    assert info.index("0") == 0
    assert info.index("12") == 2  # a name wins over an index
    with pytest.raises(UsageError, match="did you mean 'dog'"):
        info.index("dgo")
    with pytest.raises(UsageError, match="out of range.*0 to 2"):
        info.index("5")
    with pytest.raises(UsageError, match="its classes: 'cat', 'dog', '12'"):
        info.index("zebra")


@pytest.mark.parametrize("bad", [
    {"names": ["a"], "counts": [1]},
    {"names": ["a", "a"], "counts": [1, 1]},
    {"names": ["a", "b"], "counts": [1]},
    {"names": ["a", 3], "counts": [1, 1]},
    {"names": ["a", "b"], "counts": [1, -1]},
    {"names": ["a", ""], "counts": [1, 1]},
    "a,b",
])
def test_checkpoint_classes_are_checked(bad):
    with pytest.raises(CheckpointError, match="'classes' must list"):
        ClassInfo.from_meta(bad, "file")
    assert ClassInfo.from_meta(None, "file") is None
    assert ClassInfo.from_meta({"names": ["a", "b"], "counts": [1, 2]}, "f").counts == (1, 2)


def test_probs_follow_the_data_or_are_uniform():
    info = ClassInfo(("a", "b"), (30, 10))
    assert torch.allclose(info.probs(), torch.tensor([0.75, 0.25]))
    assert torch.allclose(info.probs(balanced=True), torch.tensor([0.5, 0.5]))


def test_grid_labels_give_one_class_per_row():
    assert grid_labels(9, 3, 3).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert grid_labels(8, 4, 5).tolist() == [0, 0, 0, 0, 2, 2, 2, 2]  # spread over the rows
    assert grid_labels(6, 2, 2).tolist() == [0, 0, 1, 1, 0, 0]  # repeated


def test_balanced_sampler_draws_classes_equally_and_resumes_exactly():
    labels = np.array([0] * 90 + [1] * 9 + [2] * 1)
    s = BalancedSampler(labels, 3, 30, seed=0)
    seen = torch.cat([s.next_indices() for _ in range(100)])
    share = np.bincount(labels[seen.numpy()], minlength=3) / len(seen)
    assert np.all(np.abs(share - 1 / 3) < 0.03), share
    state = s.state_dict()
    ahead = [s.next_indices() for _ in range(3)]
    other = BalancedSampler(labels, 3, 30, seed=123)
    other.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(ahead, [other.next_indices() for _ in range(3)],
                                                  strict=True))
    assert 0 <= state["pos"] < len(labels)


def test_balanced_sampler_ranks_take_disjoint_slices_of_one_global_batch():
    labels = np.array([0] * 10 + [1] * 10)
    whole = BalancedSampler(labels, 2, 8, seed=1).next_indices()
    parts = [BalancedSampler(labels, 2, 8, seed=1, rank=r, world_size=2).next_indices()
             for r in range(2)]
    assert torch.equal(torch.cat(parts), whole)
