"""Checkpoints: safetensors files with JSON metadata, written atomically and checksummed.

Nothing here unpickles: tensors come from safetensors, everything else from JSON in the
header. A checkpoint stores ``checksum`` (SHA-256 over tensor names, dtypes, shapes and bytes
and over the rest of the metadata) and is verified on load, so a truncated or damaged file is
reported instead of loaded. The header is parsed only within size limits.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .atomic import write_bytes
from .errors import CheckpointError

FORMAT = "gan-zoo-checkpoint/1"
META_KEY = "gan_zoo"
# A gan-zoo header is kilobytes; the limits stop a hostile file from making the JSON parser
# build gigabytes of objects (deep nesting is caught separately as RecursionError).
MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_META_BYTES = 4 * 1024 * 1024
PICKLE_SUFFIXES = {".pt", ".pth", ".ckpt", ".pkl", ".bin"}


def _checksum(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(name.encode() + b"\0" + str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
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
            f"{str(path)!r} looks like a pickled PyTorch file. gan-zoo never unpickles files "
            "(unpickling can run arbitrary code). If you trust it, convert its weights once in "
            "Python: `safetensors.torch.save_file(torch.load(path, weights_only=True), "
            "'model.safetensors')` and load them with "
            "`module.load_state_dict(safetensors.torch.load_file('model.safetensors'))`; "
            "gan-zoo's own checkpoints are always .safetensors files"
        )


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """Only the JSON metadata, read from the header without loading tensors."""
    path = Path(path)
    refuse_pickle(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise CheckpointError(f"{str(path)!r} is not a safetensors checkpoint (too short)")
            n = int.from_bytes(head, "little")
            if n > MAX_HEADER_BYTES or n > os.path.getsize(path) - 8:
                raise CheckpointError(f"{str(path)!r} is damaged or truncated (bad header size)")
            header = json.loads(fh.read(n))
    except (OSError, ValueError, UnicodeDecodeError, RecursionError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise CheckpointError(f"checkpoint {str(path)!r} does not exist") from None
        raise CheckpointError(f"{str(path)!r} is not a readable safetensors file: {exc}") from None
    extra = header.get("__metadata__") if isinstance(header, dict) else None
    raw = extra.get(META_KEY) if isinstance(extra, dict) else None
    if not isinstance(raw, str):
        raise CheckpointError(f"{str(path)!r} is a safetensors file but not a gan-zoo checkpoint")
    if len(raw) > MAX_META_BYTES:
        raise CheckpointError(f"{str(path)!r} has oversized metadata; refusing to parse it")
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError):
        raise CheckpointError(f"{str(path)!r} has damaged metadata") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} has an unknown checkpoint format")
    problem = _meta_problem(meta)
    if problem:
        raise CheckpointError(f"{str(path)!r} has malformed gan-zoo metadata: {problem}")
    return meta


def _meta_problem(meta: dict[str, Any]) -> str | None:
    """What every reader relies on. The checksum is no signature (anyone can compute one), so a
    stranger's file can carry a valid checksum over nonsense; refuse it here, by name, rather
    than fail deep inside sampling or resuming."""
    step = meta.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        return f"'step' must be a whole number >= 0, got {step!r}"
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
    return None


def load(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and metadata, after checking the file is complete and unmodified."""
    path = Path(path)
    meta = read_meta(path)
    try:
        tensors = st_load(path.read_bytes())
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{str(path)!r} is damaged or truncated: {exc}") from None
    if _checksum(tensors, meta) != meta.get("checksum"):
        raise CheckpointError(f"{str(path)!r} failed its checksum: the file is damaged")
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


def restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": groups})
    # Safetensors stores tensors contiguous; give each moment its parameter's memory layout
    # again (channels-last weights): fused Adam on mismatched layouts is not bit-identical, and
    # a resumed run must continue exactly as the uninterrupted one.
    for param, param_state in opt.state.items():
        for name, value in param_state.items():
            if torch.is_tensor(value) and value.shape == param.shape and \
                    value.stride() != param.stride():
                param_state[name] = torch.empty_like(param, dtype=value.dtype).copy_(value)
