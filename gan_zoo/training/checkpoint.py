"""Checkpoints: safetensors files with JSON metadata, written atomically and checksummed.

Nothing here unpickles: tensors come from safetensors, everything else from JSON in the
header. A checkpoint stores ``checksum`` (SHA-256 over tensor names, dtypes, shapes and bytes
and over the rest of the metadata) and is verified on load, so a truncated or damaged file is
reported instead of loaded.

Files come from strangers, so sizes are checked from the header before anything large is read
or allocated: the header is parsed only within size limits; every tensor entry must have a
known dtype, a non-negative shape and data offsets that tile the file's data section exactly
(a 2 GB file whose header describes 100 KB is refused without reading the 2 GB); the tensors
together may hold at most ``GANZOO_MAX_CHECKPOINT_BYTES`` bytes (default 8 GiB, an environment
variable: set it higher for bigger models). Tensors are then read one by one into their own
memory, and the checksum is computed over those buffers without another copy. Files are opened
with gan_zoo.util.regular_files.open_regular: a FIFO or device named like a checkpoint is an error at
once, never a hang.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch
from safetensors.torch import save as st_save

from ..errors import CheckpointError, UsageError
from ..util.atomic import write_bytes
from ..util.regular_files import NotRegularFileError, open_regular
from ..util.textsafe import shown

FORMAT = "gan-zoo-checkpoint/1"
META_KEY = "gan_zoo"
# A gan-zoo header is kilobytes; the limits stop a hostile file from making the JSON parser
# build gigabytes of objects (deep nesting is caught separately as RecursionError).
MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_META_BYTES = 4 * 1024 * 1024
PICKLE_SUFFIXES = {".pt", ".pth", ".ckpt", ".pkl", ".bin"}
# Tensor bytes a checkpoint may hold (what loading it allocates); the environment overrides it.
LIMIT_ENV = "GANZOO_MAX_CHECKPOINT_BYTES"
DEFAULT_MAX_CHECKPOINT_BYTES = 8 * 1024**3
MAX_TENSORS = 100_000  # a gan-zoo checkpoint has hundreds
MAX_DIMS = 8
MAX_STEP = 2**63 - 1
# safetensors dtype names gan-zoo reads (what safetensors.torch writes for these dtypes).
DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
          "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32, "I16": torch.int16,
          "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}


def _checksum(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(name.encode() + b"\0" + str(t.dtype).encode() + str(tuple(t.shape)).encode())
        if t.numel():  # the tensor's own buffer: no second copy of the weights
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    # The metadata too: a flipped digit in "step" or the config must not load silently.
    rest = {k: v for k, v in meta.items() if k != "checksum"}
    h.update(b"\0meta\0" + json.dumps(rest, sort_keys=True).encode())
    return h.hexdigest()


def save(path: str | os.PathLike, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write tensors + metadata so that `path` is either the old file or the complete new one."""
    path = Path(path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = json.loads(json.dumps(dict(meta, format=FORMAT)))  # as it will read back
    meta["checksum"] = _checksum(tensors, meta)
    blob = st_save(tensors, metadata={META_KEY: json.dumps(meta)})
    return write_bytes(path, blob, durable=True)


def refuse_pickle(path: Path) -> None:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{shown(str(path))} looks like a pickled PyTorch file. gan-zoo never unpickles files "
            "(unpickling can run arbitrary code). If you trust it, convert its weights once in "
            "Python: `safetensors.torch.save_file(torch.load(path, weights_only=True), "
            "'model.safetensors')` and load them with "
            "`module.load_state_dict(safetensors.torch.load_file('model.safetensors'))`; "
            "gan-zoo's own checkpoints are always .safetensors files"
        )


def max_checkpoint_bytes() -> int:
    """The most tensor bytes a checkpoint may hold (GANZOO_MAX_CHECKPOINT_BYTES, default 8 GiB)."""
    raw = os.environ.get(LIMIT_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_CHECKPOINT_BYTES
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise UsageError(f"{LIMIT_ENV} must be a whole number of bytes, got {shown(raw)}")
    return value


@dataclass(frozen=True)
class _Entry:
    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    begin: int
    end: int


def _problem(path: Path, what: str) -> CheckpointError:
    return CheckpointError(f"{shown(str(path))} {what}")


@contextmanager
def _opened(path: Path) -> Iterator[tuple[BinaryIO, int]]:
    """The open file and its size; a missing, unreadable or non-regular file is one error."""
    try:
        fh = open_regular(path, "rb")
    except NotRegularFileError as exc:
        raise _problem(path, f"{exc.strerror}; a checkpoint must be a plain file") from None
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {shown(str(path))} does not exist") from None
    except OSError as exc:
        raise _problem(path, f"cannot be read: {exc.strerror or exc}") from None
    with fh:
        yield fh, os.fstat(fh.fileno()).st_size


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("a name appears twice in the header")
    return out


def _read_header(fh: BinaryIO, size: int, path: Path) -> tuple[dict[str, Any], int]:
    """The parsed safetensors header and its length (the data section starts at 8 + length)."""
    head = fh.read(8)
    if len(head) < 8:
        raise _problem(path, "is not a safetensors checkpoint (too short)")
    n = int.from_bytes(head, "little")
    if n > MAX_HEADER_BYTES or n > size - 8:
        raise _problem(path, "is damaged or truncated (bad header size)")
    try:
        header = json.loads(fh.read(n), object_pairs_hook=_no_duplicates)
    except (OSError, ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise _problem(path, f"is not a readable safetensors file: {shown(str(exc))}") from None
    if not isinstance(header, dict):
        raise _problem(path, "is not a readable safetensors file: its header is not a table")
    return header, n


def _meta_of(header: dict[str, Any], path: Path) -> dict[str, Any]:
    extra = header.get("__metadata__")
    raw = extra.get(META_KEY) if isinstance(extra, dict) else None
    if not isinstance(raw, str):
        raise _problem(path, "is a safetensors file but not a gan-zoo checkpoint")
    if len(raw) > MAX_META_BYTES:
        raise _problem(path, "has oversized metadata; refusing to parse it")
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError):
        raise _problem(path, "has damaged metadata") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise _problem(path, "has an unknown checkpoint format")
    problem = _meta_problem(meta)
    if problem:
        raise _problem(path, f"has malformed gan-zoo metadata: {problem}")
    return meta


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """Only the JSON metadata, read from the header without loading tensors."""
    path = Path(path)
    refuse_pickle(path)
    with _opened(path) as (fh, size):
        header, _ = _read_header(fh, size, path)
    return _meta_of(header, path)


def _meta_problem(meta: dict[str, Any]) -> str | None:
    """What every reader relies on. The checksum is no signature (anyone can compute one), so a
    stranger's file can carry a valid checksum over nonsense; refuse it here, by name, rather
    than fail deep inside sampling or resuming."""
    step = meta.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step <= MAX_STEP:
        return f"'step' must be a whole number from 0 to {MAX_STEP}, got {shown(step)}"
    arch = meta.get("arch")
    if not isinstance(arch, dict) or not isinstance(arch.get("name"), str) \
            or not isinstance(arch.get("options"), dict):
        return "'arch' must name the architecture and its options"
    if not isinstance(meta.get("has_ema", False), bool):
        return "'has_ema' must be true or false"
    for key in ("config", "sampler", "schedules", "last_stats"):  # read on resume
        if key in meta and not isinstance(meta[key], dict):
            return f"{key!r} must be a table"
    for key in ("opt_g_groups", "opt_d_groups"):
        if key in meta and not isinstance(meta[key], list):
            return f"{key!r} must be a list"
    components = meta.get("components", [])  # read to name a missing plugin
    if not isinstance(components, list) or not all(isinstance(c, dict) for c in components):
        return "'components' must be a list of tables"
    return None


def _layout(header: dict[str, Any], data_size: int, path: Path) -> list[_Entry]:
    """The tensor entries of a header, checked before any tensor byte is read: known dtypes,
    non-negative shapes whose byte size matches the offsets, offsets that tile the data section
    exactly (no gap, overlap or trailing bytes), and a total within max_checkpoint_bytes()."""
    entries = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if len(entries) >= MAX_TENSORS:
            raise _problem(path, f"names more than {MAX_TENSORS} tensors; refusing to read it")
        if not isinstance(info, dict) or info.get("dtype") not in DTYPES:
            raise _problem(path, f"is damaged or truncated: tensor {shown(name)} has no known dtype")
        shape, offsets = info.get("shape"), info.get("data_offsets")
        if not isinstance(shape, list) or len(shape) > MAX_DIMS or not all(
                type(d) is int and d >= 0 for d in shape):
            raise _problem(path, f"is damaged or truncated: tensor {shown(name)} has a bad shape")
        if not isinstance(offsets, list) or len(offsets) != 2 or not all(
                type(o) is int and 0 <= o <= data_size for o in offsets):
            raise _problem(path, f"is damaged or truncated: tensor {shown(name)} lies outside "
                                 "the file")
        dtype = DTYPES[info["dtype"]]
        nbytes = math.prod(shape) * dtype.itemsize
        if offsets[1] - offsets[0] != nbytes:
            raise _problem(path, f"is damaged or truncated: tensor {shown(name)}'s size does not "
                                 "match its shape")
        entries.append(_Entry(name, dtype, tuple(shape), offsets[0], offsets[1]))
    entries.sort(key=lambda e: (e.begin, e.end))
    position = 0
    for entry in entries:
        if entry.begin != position:
            raise _problem(path, "is damaged or truncated: its tensors overlap or leave gaps")
        position = entry.end
    if position != data_size:
        raise _problem(path, f"is damaged or truncated: its data section is {data_size} bytes, "
                             f"its header describes {position}")
    limit = max_checkpoint_bytes()
    if data_size > limit:
        raise _problem(path, f"holds {data_size} bytes of tensors, over the limit of {limit} "
                             f"bytes; set {LIMIT_ENV} higher if you trust this file")
    return entries


def _read_tensor(fh: BinaryIO, offset: int, entry: _Entry, path: Path) -> torch.Tensor:
    buf = torch.empty(entry.end - entry.begin, dtype=torch.uint8)
    fh.seek(offset + entry.begin)
    if buf.numel() and fh.readinto(memoryview(buf.numpy())) != buf.numel():
        raise _problem(path, "is damaged or truncated: it ended while its tensors were read")
    return buf.view(entry.dtype).reshape(entry.shape)


def load(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and metadata, after checking the file is complete and unmodified."""
    path = Path(path)
    refuse_pickle(path)
    with _opened(path) as (fh, size):
        header, n = _read_header(fh, size, path)
        meta = _meta_of(header, path)
        entries = _layout(header, size - 8 - n, path)
        try:
            tensors = {e.name: _read_tensor(fh, 8 + n, e, path) for e in entries}
        except OSError as exc:
            raise _problem(path, f"cannot be read: {exc.strerror or exc}") from None
    if _checksum(tensors, meta) != meta.get("checksum"):
        raise _problem(path, "failed its checksum: the file is damaged")
    return tensors, meta


def split_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def flatten_optimizer(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], list]:
    """An optimizer state as flat tensors plus JSON-able param groups."""
    sd = opt.state_dict()
    tensors = {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"{prefix}.{idx}.{key}"] = t
    groups = json.loads(json.dumps(sd["param_groups"], default=list))
    return tensors, groups
