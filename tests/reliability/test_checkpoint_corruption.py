"""Checkpoints corrupted byte by byte: every damaged file is either rejected with CheckpointError
or, when the damage is meaningless (JSON whitespace), loads exactly the original content. Nothing
else: no other exception, no silently different tensors or metadata. Crafted hostile headers
(oversized, deeply nested, wrong shapes) are refused without being parsed at full size."""

from __future__ import annotations

import json
import random
import struct

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save as st_save

from gan_zoo import api
from gan_zoo.errors import CheckpointError
from gan_zoo.training import checkpoint as ckpt
from gan_zoo.training.rundir import RunDir

from .helpers import tiny_config, tiny_data

SMALL = {"conv32": {"width": 4, "max_channels": 8, "latent_dim": 8}}


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """A real (small) checkpoint: its bytes, tensors, metadata and header length."""
    root = tmp_path_factory.mktemp("orig")
    api.train(tiny_config(steps=1, options=SMALL, sample_grid=4), out=root / "r", data=tiny_data())
    path = RunDir(root / "r").step_checkpoint(1)
    blob = path.read_bytes()
    tensors, meta = ckpt.load(path)
    return blob, tensors, meta, 8 + int.from_bytes(blob[:8], "little")


def _outcome(path, blob: bytes, original) -> str:
    """'rejected' or 'verified' (identical content); anything else fails the test."""
    path.write_bytes(blob)
    try:
        tensors, meta = ckpt.load(path)
    except CheckpointError:
        return "rejected"
    _, want_tensors, want_meta, _ = original
    assert meta == want_meta, "damaged metadata loaded"
    assert tensors.keys() == want_tensors.keys()
    assert all(torch.equal(tensors[k], want_tensors[k]) for k in tensors), "damaged tensors loaded"
    return "verified"


def _sweep(tmp_path, original, offsets, masks) -> dict[str, int]:
    blob = original[0]
    path = tmp_path / "c.safetensors"
    counts = {"rejected": 0, "verified": 0}
    for i, offset in enumerate(offsets):
        damaged = bytearray(blob)
        damaged[offset] ^= masks[i % len(masks)]
        counts[_outcome(path, bytes(damaged), original)] += 1
    return counts


def test_byte_flips_in_the_header(tmp_path, original):
    header_end = original[3]
    counts = _sweep(tmp_path, original, range(0, header_end, 7), [0x01, 0x20, 0xFF, 0x80])
    # Most header bytes matter; the ones that do not are JSON padding, which loads verified.
    assert counts["rejected"] > 0.9 * sum(counts.values()), counts
    print(f"header flips: {counts}")


def test_byte_flips_in_the_tensor_data(tmp_path, original):
    blob, header_end = original[0], original[3]
    offsets = random.Random(0).sample(range(header_end, len(blob)), 500)
    counts = _sweep(tmp_path, original, offsets, [0x01, 0x80, 0xFF])
    assert counts == {"rejected": 500, "verified": 0}  # every data byte is checksummed


def test_truncation_at_many_lengths(tmp_path, original):
    blob = original[0]
    path = tmp_path / "t.safetensors"
    lengths = sorted(set(range(0, 64)) | set(random.Random(1).sample(range(64, len(blob)), 300))
                     | {original[3] - 1, original[3], original[3] + 1, len(blob) - 1})
    for n in lengths:
        assert _outcome(path, blob[:n], original) == "rejected", n
    # Bytes appended after the data are not a valid checkpoint either.
    assert _outcome(path, blob + b"\0" * 16, original) == "rejected"


@pytest.mark.slow
def test_bytes_flipped_across_the_file(tmp_path, original):
    """Every header byte (masks alternate); every 31st data byte (all of them took ~3 minutes)."""
    blob, header_end = original[0], original[3]
    header = _sweep(tmp_path, original, range(header_end), [0x01, 0xFF])
    data = _sweep(tmp_path, original, range(header_end, len(blob), 31), [0x04])
    assert data["verified"] == 0 and header["rejected"] > 0.9 * sum(header.values())
    print(f"every byte: header {header}, data {data}")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_random_multi_byte_damage(tmp_path, original, data):
    blob = bytearray(original[0])
    for _ in range(data.draw(st.integers(1, 8))):
        offset = data.draw(st.integers(0, len(blob) - 1))
        blob[offset] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        blob = blob[: data.draw(st.integers(0, len(blob)))]
    _outcome(tmp_path / "h.safetensors", bytes(blob), original)


# ------------------------------------------------------------------ crafted hostile headers

def _with_header(header: bytes, body: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header)) + header + body


# Metadata of the right shape (format, step, arch) so that the later checks are reached.
MINIMAL_META = {"format": ckpt.FORMAT, "step": 0, "arch": {"name": "conv32", "options": {}}}

CRAFTED = {
    "empty": (b"", "too short"),
    "huge length field": (struct.pack("<Q", 2**63), "bad header size"),
    "length past the end": (struct.pack("<Q", 4096) + b"{}", "bad header size"),
    "nested header": (_with_header(b"[" * 100_000 + b"]" * 100_000), "not a readable safetensors"),
    "header not JSON": (_with_header(b"\xff\xfe{not json"), "not a readable safetensors"),
    "metadata a list": (_with_header(b'{"__metadata__": [1, 2]}'), "not a gan-zoo checkpoint"),
    "plain safetensors": (st_save({"w": torch.zeros(2)}), "not a gan-zoo checkpoint"),
    "meta not JSON": (st_save({"w": torch.zeros(2)}, {"gan_zoo": "{oops"}), "damaged metadata"),
    "meta nested": (st_save({"w": torch.zeros(2)}, {"gan_zoo": "[" * 100_000}), "damaged metadata"),
    "meta a list": (st_save({"w": torch.zeros(2)}, {"gan_zoo": "[1]"}), "unknown checkpoint format"),
    "meta other format": (st_save({"w": torch.zeros(2)}, {"gan_zoo": '{"format": "x/9"}'}),
                          "unknown checkpoint format"),
    "no checksum": (st_save({"w": torch.zeros(2)}, {"gan_zoo": json.dumps(MINIMAL_META)}),
                    "failed its checksum"),
    "offsets out of bounds": (
        _with_header(json.dumps({"w": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]},
                                 "__metadata__": {"gan_zoo": json.dumps(MINIMAL_META)}}).encode(),
                     b"\0" * 16), "damaged or truncated"),
    "meta without step": (st_save({"w": torch.zeros(2)}, {"gan_zoo": json.dumps(
        {k: v for k, v in MINIMAL_META.items() if k != "step"})}), "malformed gan-zoo metadata"),
}


def _tensors_header(entries: dict, body: bytes, raw: bytes | None = None) -> bytes:
    """A header of the given tensor entries with gan-zoo metadata, then `body` as data."""
    header = {**entries, "__metadata__": {"gan_zoo": json.dumps(MINIMAL_META)}}
    return _with_header(raw or json.dumps(header).encode(), body)


def _f32(shape, begin, end, dtype="F32"):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


# The layout is checked from the header before any tensor byte is read.
CRAFTED.update({
    "unknown dtype": (_tensors_header({"w": _f32([2], 0, 8, "F7")}, b"\0" * 8), "no known dtype"),
    "negative dimension": (_tensors_header({"w": _f32([-2], 0, 8)}, b"\0" * 8), "bad shape"),
    "dimension not a number": (_tensors_header({"w": _f32(["2"], 0, 8)}, b"\0" * 8), "bad shape"),
    "too many dimensions": (_tensors_header({"w": _f32([1] * 9, 0, 4)}, b"\0" * 4), "bad shape"),
    "size not the shape's": (_tensors_header({"w": _f32([3], 0, 8)}, b"\0" * 8),
                             "does not match its shape"),
    "overlapping tensors": (_tensors_header({"w": _f32([2], 0, 8), "v": _f32([2], 4, 12)},
                                            b"\0" * 12), "overlap or leave gaps"),
    "gap between tensors": (_tensors_header({"w": _f32([1], 0, 4), "v": _f32([1], 8, 12)},
                                            b"\0" * 12), "overlap or leave gaps"),
    "data past the tensors": (_tensors_header({"w": _f32([1], 0, 4)}, b"\0" * 4096),
                              "its data section is 4096 bytes, its header describes 4"),
    "offsets past the end": (_tensors_header({"w": _f32([2**40], 0, 2**42)}, b"\0" * 8),
                             "lies outside the file"),
    "a name twice": (_tensors_header({}, b"\0" * 4, (
        '{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
        '"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "__metadata__": '
        + json.dumps({"gan_zoo": json.dumps(MINIMAL_META)}) + "}").encode()), "appears twice"),
})


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_hostile_header(tmp_path, case):
    blob, message = CRAFTED[case]
    path = tmp_path / "x.safetensors"
    path.write_bytes(blob)
    with pytest.raises(CheckpointError, match=message):
        ckpt.load(path)


def test_oversized_header_and_metadata_are_refused_unparsed(tmp_path, monkeypatch):
    parsed = []
    real_loads = json.loads
    monkeypatch.setattr(ckpt.json, "loads", lambda s, *a, **k: parsed.append(len(s)) or
                        real_loads(s, *a, **k))
    big = tmp_path / "big_header.safetensors"
    big.write_bytes(_with_header(b" " * (ckpt.MAX_HEADER_BYTES + 1)))
    with pytest.raises(CheckpointError, match="bad header size"):
        ckpt.read_meta(big)
    assert parsed == []  # refused from the length field alone
    meta = tmp_path / "big_meta.safetensors"
    meta.write_bytes(st_save({"w": torch.zeros(1)}, {"gan_zoo": " " * (ckpt.MAX_META_BYTES + 1)}))
    with pytest.raises(CheckpointError, match="oversized metadata"):
        ckpt.read_meta(meta)
    assert max(parsed) < ckpt.MAX_META_BYTES + 1024  # only the outer header was parsed


def test_checksum_covers_the_metadata(tmp_path, original):
    blob, _, meta, header_end = original
    # Rewrite the step in the header to another number of the same width: valid JSON, valid
    # safetensors, the same tensors -- and still rejected.
    header = blob[8:header_end]
    old = b'\\"step\\": 1,'
    assert header.count(old) == 1
    damaged = blob[:8] + header.replace(old, b'\\"step\\": 7,') + blob[header_end:]
    path = tmp_path / "s.safetensors"
    path.write_bytes(damaged)
    assert ckpt.read_meta(path)["step"] == 7  # it parses ...
    with pytest.raises(CheckpointError, match="failed its checksum"):
        ckpt.load(path)  # ... but does not verify


def test_run_falls_back_past_damaged_newest_checkpoints(tmp_path):
    api.train(tiny_config(steps=4, checkpoint_every=1, keep_checkpoints=4, options=SMALL),
              out=tmp_path / "r", data=tiny_data())
    run = RunDir(tmp_path / "r")
    for step, how in ((4, "flip"), (3, "cut")):
        path = run.step_checkpoint(step)
        blob = bytearray(path.read_bytes())
        if how == "flip":
            blob[len(blob) // 2] ^= 0x10
        else:
            blob = blob[: len(blob) - 100]
        path.write_bytes(bytes(blob))
    path, _, meta, problems = run.latest_valid()
    assert path == run.step_checkpoint(2) and meta["step"] == 2
    assert len(problems) == 2 and "checksum" in problems[0] and "truncated" in problems[1]
