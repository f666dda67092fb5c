"""Data: folder scanning, decoding, the cache, broken files, the built-in dataset, batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from gan_zoo.data import EpochSampler, load_builtin, load_folder
from gan_zoo.data import folders as data_mod
from gan_zoo.errors import DataError

from ..conftest import write_images


def test_folder_decoded_to_uint8_at_resolution(tmp_path):
    folder = write_images(tmp_path / "imgs", 6, size=50)
    (tmp_path / "imgs" / "sub").mkdir()
    Image.new("RGB", (80, 40), (255, 0, 0)).save(tmp_path / "imgs" / "sub" / "wide.jpg")
    arr = load_folder(folder, 32)
    assert arr.images.shape == (7, 32, 32, 3) and arr.images.dtype == np.uint8
    assert arr.skipped == 0
    # The wide red JPEG was centre-cropped, not squashed: still pure red.
    red = [im for im in arr.images if im[..., 0].mean() > 240 and im[..., 1].mean() < 15]
    assert len(red) == 1


def test_broken_files_are_skipped_and_counted(tmp_path):
    folder = write_images(tmp_path / "imgs", 4)
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.jpg").write_text("not an image")
    good = (folder / "img0000.png").read_bytes()
    (folder / "cut.png").write_bytes(good[: len(good) // 2])
    (folder / "notes.txt").write_text("ignored: not an image extension")
    arr = load_folder(folder, 16)
    assert len(arr) == 4 and arr.skipped == 3


def test_no_usable_image_is_one_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        load_folder(tmp_path / "empty", 32)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_bytes(b"junk")
    with pytest.raises(DataError, match="none of the 1 image files"):
        load_folder(bad, 32)
    with pytest.raises(DataError, match="does not exist"):
        load_folder(tmp_path / "missing", 32)


def test_cache_reused_and_invalidated(tmp_path, monkeypatch):
    folder = write_images(tmp_path / "imgs", 5)
    first = load_folder(folder, 16)
    calls = []
    real = data_mod._decode_folder
    monkeypatch.setattr(data_mod, "_decode_folder", lambda *a: calls.append(1) or real(*a))
    again = load_folder(folder, 16)
    assert calls == [] and again.cache_path == first.cache_path
    assert isinstance(again.images, np.memmap)
    write_images(folder, 6, seed=1)  # adds a file and rewrites others
    changed = load_folder(folder, 16)
    assert calls == [1] and len(changed) == 6


def test_builtin_dataset_at_every_resolution():
    for res in (32, 64, 128):
        arr = load_builtin(res, n=8)
        assert arr.images.shape == (8, res, res, 3)
        assert arr.images.std() > 20  # drawn shapes, not a flat colour
    assert np.array_equal(load_builtin(32, n=8).images, load_builtin(32, n=8).images)


def test_sampler_epochs_without_replacement_and_resume():
    s = EpochSampler(10, 3, seed=0)
    epoch0 = torch.cat([s.next_indices() for _ in range(3)])
    assert len(set(epoch0.tolist())) == 9  # drop-last: 9 of 10 per epoch, none twice
    state = s.state_dict()
    expected = [s.next_indices() for _ in range(5)]
    t = EpochSampler(10, 3, seed=0)
    t.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(expected, [t.next_indices() for _ in range(5)],
                                                  strict=True))


def test_batch_larger_than_dataset_is_an_error():
    with pytest.raises(DataError, match="larger than the dataset"):
        EpochSampler(4, 8, 0)
