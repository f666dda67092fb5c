"""The known-modes benchmark: how many of a known set of equally likely modes a GAN covers.

    python -m benchmarks.modes make --out /tmp/modes-data            # 4,800 PNGs, 100 per mode
    ganzoo train --arch conv32 --data /tmp/modes-data --steps 1500 --out /tmp/modes-conv32
    python -m benchmarks.modes eval /tmp/modes-conv32 --n 480        # table; --json for scripts
    python -m benchmarks.modes labeller                              # train/show the labeller
    python -m benchmarks.modes zoo conv resnet stylegan2 fastgan --minutes 5 --out /tmp/modes-zoo

After stacked MNIST's mode counts (Metz et al. 2017, "Unrolled GANs"; Srivastava et al. 2017,
"VEEGAN"; Lin et al. 2018, "PacGAN"), built from the built-in shapes (gan_zoo.data.builtin)
so that it needs no download: 3 kinds (disc, square, triangle) x 4 colours (red, lime, cyan,
violet: hues 90 degrees apart) x 4 positions (the centres of the four quadrants) = 48 modes,
equally likely. Inside a mode the size (30-42% of the side), the centre (+-3%), the colour
(hue +-0.03, saturation, value) and the two-colour background gradient vary, so a generator
cannot cover the set by memorising 48 images.

Why a small CNN separates the modes reliably: the factors are far apart against their jitter.
Hues 0.25 apart vary by +-0.03; positions 16 px apart vary by +-1 px; shapes 10-13 px across
differ in filled area (square 1, disc 0.79, triangle 0.5 of the box) and in their corners.
The labeller has one head per factor (kind, colour, position); its confidence in a mode is the
product of the three heads' top probabilities. It is also trained on off-mode images (a hue
halfway between two palette colours, a shape halfway between two quadrants, no shape, two
shapes in two quadrants) with a uniform target on the factor that is off, so that a sample
that is in no mode gets a low confidence and counts as off-mode (the literature's
"high-quality samples" fraction is 1 - off-mode) instead of being forced into the nearest
mode.

Metrics, for N samples: modes covered (a mode with at least one confident sample; also with
at least --min-count, by default N/(4M) rounded up), KL(sample mode distribution || uniform)
over the confident samples (0 when every mode is equally frequent, log M = 3.87 when all
land in one mode), and the off-mode fraction. The same numbers for N fresh real draws (mean
over --real-repeats draws) are the floor at that N: even real data has KL about (M-1)/(2N)
from sampling noise alone. The labeller is trained once (seeded; about 75 CPU-seconds, an
estimated 40 s of wall time on 2 idle cores) and cached as safetensors (nothing is
unpickled) in ~/.cache/gan_zoo/modes (or --cache).
"""

from __future__ import annotations

import argparse
import colorsys
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gan_zoo.data.builtin import draw_shape

RESOLUTION = 32
KINDS = ("disc", "square", "triangle")  # draw_shape's kind 0, 1, 2
COLOURS = (("red", 0.0), ("lime", 0.25), ("cyan", 0.5), ("violet", 0.75))  # (name, hue)
POSITIONS = (("top-left", (0.25, 0.25)), ("top-right", (0.75, 0.25)),
             ("bottom-left", (0.25, 0.75)), ("bottom-right", (0.75, 0.75)))
HEADS = (len(KINDS), len(COLOURS), len(POSITIONS))
M = HEADS[0] * HEADS[1] * HEADS[2]  # 48 modes
# Variation inside a mode (fractions of the side, HSV units).
SIZE_RANGE = (0.30, 0.42)
CENTRE_JITTER = 0.03
HUE_JITTER = 0.03
SATURATION = (0.7, 0.95)
VALUE = (0.8, 1.0)
# Off-mode images for the labeller: a hue this far from every palette hue, or a centre at 0.5.
OFF_HUE = 0.125
THRESHOLD = 0.8  # confidence (product of the heads' top probabilities) below: off-mode
GEOMETRY_VERSION = 2  # bump when the drawing or the labeller changes: a new cache file


# ------------------------------------------------------------------------------ the modes
def mode_index(kind: int, colour: int, position: int) -> int:
    """The mode of factor indices into KINDS, COLOURS, POSITIONS."""
    return (kind * HEADS[1] + colour) * HEADS[2] + position


def mode_factors(mode: int) -> tuple[int, int, int]:
    """(kind, colour, position) of a mode index in [0, M)."""
    return mode // (HEADS[1] * HEADS[2]), mode // HEADS[2] % HEADS[1], mode % HEADS[2]


def mode_name(mode: int) -> str:
    k, c, p = mode_factors(mode)
    return f"{COLOURS[c][0]} {KINDS[k]}, {POSITIONS[p][0]}"


def _rgb(rng: np.random.Generator, hue: float) -> tuple[int, int, int]:
    h = (hue + rng.uniform(-HUE_JITTER, HUE_JITTER)) % 1.0
    rgb = colorsys.hsv_to_rgb(h, rng.uniform(*SATURATION), rng.uniform(*VALUE))
    return tuple(int(round(v * 255)) for v in rgb)  # type: ignore[return-value]


def _draw(rng: np.random.Generator, kind: int, hue: float, centre: tuple[float, float],
          size: float | None = None, background: np.random.Generator | None = None
          ) -> np.ndarray:
    """A shape with its nuisance variables drawn from rng; the background from `background`
    (default: rng too)."""
    colour = _rgb(rng, hue)
    cx, cy = np.asarray(centre) + rng.uniform(-CENTRE_JITTER, CENTRE_JITTER, size=2)
    size = rng.uniform(*SIZE_RANGE) if size is None else size
    return draw_shape(rng if background is None else background, RESOLUTION, kind=kind,
                      colour=colour, centre=(float(cx), float(cy)), size=size)


def draw_mode(rng: np.random.Generator, mode: int) -> np.ndarray:
    """One (32, 32, 3) uint8 image of `mode`, its nuisance variables drawn from rng."""
    k, c, p = mode_factors(mode)
    return _draw(rng, k, COLOURS[c][1], POSITIONS[p][1])


def draw_modes(modes: Sequence[int] | np.ndarray, seed: int) -> np.ndarray:
    """(n, 32, 32, 3) uint8 images of the given modes, identical for the same arguments."""
    rng = np.random.default_rng(seed)
    return np.stack([draw_mode(rng, int(m)) for m in modes]) if len(modes) else \
        np.zeros((0, RESOLUTION, RESOLUTION, 3), np.uint8)


def balanced_modes(n: int, seed: int) -> np.ndarray:
    """n mode indices in a seeded order, each mode n // M or n // M + 1 times."""
    return np.random.default_rng(seed).permutation(np.arange(n) % M)


OFF_KINDS = 4  # what draw_off_mode draws


def draw_off_mode(rng: np.random.Generator, what: int) -> tuple[np.ndarray, tuple[int, int, int]]:
    """An image in no mode and its labels, -1 for a factor that is off (a uniform target):
    what 0: a hue halfway between two palette colours; 1: a centre halfway between two or four
    quadrants; 2: no shape; 3: two shapes in two quadrants (a GAN's blend of modes)."""
    k, c, p = int(rng.integers(HEADS[0])), int(rng.integers(HEADS[1])), int(rng.integers(HEADS[2]))
    hue, centre = COLOURS[c][1], POSITIONS[p][1]
    if what == 0:
        return _draw(rng, k, hue + OFF_HUE, centre), (k, -1, p)
    if what == 1:
        axis = int(rng.integers(3))  # x, y or both at the middle
        centre = (0.5 if axis != 1 else centre[0], 0.5 if axis != 0 else centre[1])
        return _draw(rng, k, hue, centre), (k, c, -1)
    if what == 2:
        return _draw(rng, k, hue, centre, size=0.0), (-1, -1, -1)
    # Two images on the same background, one shape each: their sum less the background.
    k2, c2 = int(rng.integers(HEADS[0])), int(rng.integers(HEADS[1]))
    p2 = (p + 1 + int(rng.integers(HEADS[2] - 1))) % HEADS[2]
    seed = int(rng.integers(2**63))
    shapes = [_draw(rng, kk, COLOURS[cc][1], POSITIONS[pp][1], size=size,
                    background=np.random.default_rng(seed))
              for kk, cc, pp, size in ((k, c, p, None), (k2, c2, p2, None), (k, c, p, 0.0))]
    image = shapes[0].astype(np.int16) + shapes[1] - shapes[2]
    return (np.clip(image, 0, 255).astype(np.uint8),
            (k if k2 == k else -1, c if c2 == c else -1, -1))


# ---------------------------------------------------------------------------- the labeller
class Labeller(nn.Module):
    """A small CNN with one head per factor (kind, colour, position); 32 px images in [-1, 1]."""

    def __init__(self, width: int = 16):
        super().__init__()
        w = width
        self.features = nn.Sequential(  # strided convolutions: 4x cheaper than pooling here
            nn.Conv2d(3, w, 4, stride=2, padding=1), nn.ReLU(),                # 16 px
            nn.Conv2d(w, 2 * w, 4, stride=2, padding=1), nn.ReLU(),            # 8 px
            nn.Conv2d(2 * w, 4 * w, 4, stride=2, padding=1), nn.ReLU(),        # 4 px
            # flattened, not pooled: the position head needs to know where the shape is
            nn.Flatten(), nn.Linear(4 * w * 16, 8 * w), nn.ReLU(),
            nn.Linear(8 * w, sum(HEADS)))

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)


def _heads(logits: Tensor) -> list[Tensor]:
    return list(logits.split(HEADS, dim=1))


@torch.no_grad()
def label(labeller: Labeller, images: Tensor, batch_size: int = 500) -> tuple[Tensor, Tensor]:
    """Mode index and confidence (product of the heads' top probabilities) of each image
    (N, 3, H, W) in [-1, 1]; images not at 32 px are resized (antialiased) first."""
    labeller.eval()
    modes, confidence = [], []
    for x in images.split(batch_size):
        x = x.float()
        if x.shape[-2:] != (RESOLUTION, RESOLUTION):
            x = F.interpolate(x, size=(RESOLUTION, RESOLUTION), mode="bilinear",
                              antialias=True, align_corners=False)
        probs = [h.softmax(1) for h in _heads(labeller(x))]
        top = [p.max(1) for p in probs]
        k, c, p = (t.indices for t in top)
        modes.append((k * HEADS[1] + c) * HEADS[2] + p)
        confidence.append(top[0].values * top[1].values * top[2].values)
    if not modes:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0)
    return torch.cat(modes), torch.cat(confidence)


def to_tensor(images: np.ndarray) -> Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [-1, 1], as a generator makes them."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1


@dataclass(frozen=True)
class LabellerSpec:
    """How the labeller is trained; every field is in the cache file's name (a digest)."""

    per_mode: int = 120  # clean training images per mode
    off_fraction: float = 0.3  # off-mode training images, as a fraction of the clean ones
    held_out_per_mode: int = 40
    epochs: int = 6
    batch_size: int = 128
    lr: float = 2e-3
    width: int = 16
    noise: float = 0.06  # pixel noise (sd up to this) in training: GAN samples are noisy
    seed: int = 1234

    def digest(self) -> str:
        text = json.dumps({**asdict(self), "geometry": GEOMETRY_VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


SPEC = LabellerSpec()  # the benchmark's labeller (what the commands use)


def _labelled_set(spec: LabellerSpec, per_mode: int, seed: int
                  ) -> tuple[Tensor, Tensor, int]:
    """Clean images of every mode then off-mode ones: images, (n, 3) factor labels (-1: off),
    and how many are clean."""
    rng = np.random.default_rng(seed)
    modes = np.random.default_rng(seed + 1).permutation(np.arange(per_mode * M) % M)
    images = [draw_mode(rng, int(m)) for m in modes]
    labels = [mode_factors(int(m)) for m in modes]
    for i in range(int(round(len(modes) * spec.off_fraction))):
        image, factors = draw_off_mode(rng, i % OFF_KINDS)
        images.append(image)
        labels.append(factors)
    return to_tensor(np.stack(images)), torch.tensor(labels), len(modes)


def _targets(labels: Tensor) -> list[Tensor]:
    """Per head, a probability target: one-hot for a label, uniform for -1 (off-mode)."""
    out = []
    for j, n in enumerate(HEADS):
        t = torch.full((len(labels), n), 1.0 / n)
        on = labels[:, j] >= 0
        t[on] = F.one_hot(labels[on, j], n).float()
        out.append(t)
    return out


def train_labeller(spec: LabellerSpec = SPEC,
                   log: Callable[[str], None] = lambda msg: None) -> tuple[Labeller, dict[str, Any]]:
    """Train on freshly drawn labelled images (seeded) and measure on held-out ones: accuracy
    (all three factors right) on clean images, and the off-mode fractions at THRESHOLD of
    clean images (should be near 0) and of off-mode images (should be near 1)."""
    started, cpu = time.perf_counter(), time.process_time()
    torch.manual_seed(spec.seed)
    x, y, _ = _labelled_set(spec, spec.per_mode, spec.seed)
    targets = _targets(y)
    model = Labeller(spec.width)
    opt = torch.optim.Adam(model.parameters(), lr=spec.lr)
    steps = spec.epochs * math.ceil(len(x) / spec.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, spec.lr, total_steps=steps)
    gen = torch.Generator().manual_seed(spec.seed)
    model.train()
    for epoch in range(spec.epochs):
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for idx in order.split(spec.batch_size):
            xb = x[idx]
            sd = torch.rand(len(idx), 1, 1, 1, generator=gen) * spec.noise
            xb = xb + sd * torch.randn(xb.shape, generator=gen)
            heads = _heads(model(xb))
            loss = sum(F.cross_entropy(h, t[idx]) for h, t in zip(heads, targets, strict=True))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        log(f"labeller epoch {epoch + 1}/{spec.epochs}: loss {total / len(x):.4f}")
    info = measure_labeller(model, spec)
    info["train_seconds"] = round(time.perf_counter() - started, 1)
    info["train_cpu_seconds"] = round(time.process_time() - cpu, 1)  # all threads
    return model, info


def measure_labeller(model: Labeller, spec: LabellerSpec) -> dict[str, Any]:
    x, y, clean = _labelled_set(spec, spec.held_out_per_mode, spec.seed + 100)
    modes, conf = label(model, x)
    truth = (y[:clean, 0] * HEADS[1] + y[:clean, 1]) * HEADS[2] + y[:clean, 2]
    return {"accuracy": float((modes[:clean] == truth).float().mean()),
            "held_out": clean,
            "clean_off_mode": float((conf[:clean] < THRESHOLD).float().mean()),
            "off_mode_rejected": float((conf[clean:] < THRESHOLD).float().mean()),
            # by draw_off_mode's `what`: off-palette hue, between quadrants, no shape, two shapes
            "off_mode_rejected_by_kind": [float((conf[clean:][w::OFF_KINDS] < THRESHOLD)
                                                .float().mean()) for w in range(OFF_KINDS)],
            "held_out_off_mode": len(x) - clean,
            "threshold": THRESHOLD}


def default_cache() -> Path:
    from gan_zoo.data.folders import cache_dir

    return cache_dir().parent / "modes"


_LOADED: dict[Path, tuple[Labeller, dict[str, Any]]] = {}


def get_labeller(spec: LabellerSpec | None = None, cache: Path | None = None,
                 log: Callable[[str], None] = lambda msg: None) -> tuple[Labeller, dict[str, Any]]:
    """The labeller of `spec`: from its safetensors cache file, else trained and cached."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file, save_file

    from gan_zoo.util.atomic import replacing

    spec = spec or SPEC
    path = (cache or default_cache()) / f"labeller-{spec.digest()}.safetensors"
    if path in _LOADED:
        return _LOADED[path]
    model = Labeller(spec.width)
    try:
        with safe_open(str(path), framework="pt") as fh:
            info = json.loads((fh.metadata() or {})["info"])
        model.load_state_dict(load_file(str(path)))  # strict: every key and shape
        log(f"labeller: {path}")
    except (OSError, KeyError, ValueError, RuntimeError, SafetensorError) as exc:
        if path.exists():
            log(f"labeller cache {path} unreadable ({exc}); training again")
        log(f"training the labeller (seed {spec.seed}; once, cached in {path.parent})")
        model, info = train_labeller(spec, log)
        with replacing(path) as tmp:
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp),
                      metadata={"info": json.dumps(info)})
    model.eval()
    _LOADED[path] = (model, info)
    return model, info


# ---------------------------------------------------------------------------- the metrics
def mode_counts(modes: Tensor | np.ndarray, confident: Tensor | np.ndarray | None = None
                ) -> np.ndarray:
    """(M,) samples per mode, counting only the confident ones when a mask is given."""
    modes = np.asarray(modes, dtype=np.int64)
    if confident is not None:
        modes = modes[np.asarray(confident, dtype=bool)]
    return np.bincount(modes, minlength=M)


def kl_to_uniform(counts: np.ndarray) -> float:
    """KL(counts / sum || uniform) in nats: 0 for equal counts, log(len) for one mode; NaN
    when there is nothing to count."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        return math.nan
    p = counts[counts > 0] / total
    return float(np.sum(p * np.log(p * len(counts))))


def covered(counts: np.ndarray, minimum: int = 1) -> int:
    """Modes with at least `minimum` samples."""
    return int(np.sum(np.asarray(counts) >= minimum))


def default_min_count(n: int) -> int:
    """N / (4M) rounded up, at least 1: a quarter of a mode's expected share."""
    return max(1, math.ceil(n / (4 * M)))


def summarize(modes: Tensor, confidence: Tensor, threshold: float = THRESHOLD,
              min_count: int | None = None) -> dict[str, Any]:
    n = len(modes)
    confident = np.asarray(confidence) >= threshold
    counts = mode_counts(modes, confident)
    k = default_min_count(n) if min_count is None else min_count
    return {"n": n, "modes": M, "covered": covered(counts), "min_count": k,
            "covered_min": covered(counts, k), "kl": kl_to_uniform(counts),
            "off_mode": float(1 - confident.mean()) if n else math.nan,
            "counts": counts.tolist()}


def evaluate_images(images: Tensor, threshold: float = THRESHOLD, min_count: int | None = None,
                    labeller: Labeller | None = None) -> dict[str, Any]:
    """The metrics of images (N, 3, H, W) in [-1, 1]."""
    labeller = labeller if labeller is not None else get_labeller()[0]
    return summarize(*label(labeller, images), threshold, min_count)


def evaluate_generator(G: nn.Module, n: int = 10 * M, seed: int = 0, *,
                       threshold: float = THRESHOLD, min_count: int | None = None,
                       labeller: Labeller | None = None, batch_size: int = 64) -> dict[str, Any]:
    """Sample n images of G (gan_zoo.api.sample, noise seed `seed`) and measure them:
    {n, modes, covered, min_count, covered_min, kl, off_mode, counts}."""
    from gan_zoo import api

    images = api.sample(G, n, seed=seed, batch_size=batch_size)  # type: ignore[arg-type]
    return evaluate_images(images, threshold, min_count, labeller)


def real_floor(n: int = 10 * M, seed: int = 0, repeats: int = 5, *,
               threshold: float = THRESHOLD, min_count: int | None = None,
               labeller: Labeller | None = None) -> dict[str, Any]:
    """The same metrics for n real draws (modes i.i.d. uniform, as a perfect generator's),
    averaged over `repeats` independent draws (seeds 10**6 + seed * 1000 + r, apart from
    the dataset's and the labeller's): the floor at that n."""
    labeller = labeller if labeller is not None else get_labeller()[0]
    runs = []
    for r in range(repeats):
        s = 10**6 + seed * 1000 + r
        modes = np.random.default_rng(s).integers(M, size=n)
        runs.append(evaluate_images(to_tensor(draw_modes(modes, s)), threshold, min_count,
                                    labeller))
    out: dict[str, Any] = {key: float(np.mean([r[key] for r in runs]))
                           for key in ("covered", "covered_min", "kl", "off_mode")}
    out.update(n=n, modes=M, min_count=runs[0]["min_count"], repeats=repeats,
               kl_sd=float(np.std([r["kl"] for r in runs], ddof=1)) if repeats > 1 else 0.0,
               per_repeat=[{k: r[k] for k in ("covered", "covered_min", "kl", "off_mode")}
                           for r in runs])
    return out


# ------------------------------------------------------------------------------- commands
def make_dataset(out: Path, n: int = 100 * M, seed: int = 0) -> list[Path]:
    """n PNGs named NNNNN-mMM.png (MM: the mode) in `out`, which must hold no images; balanced
    (each mode n // M or n // M + 1 times)."""
    from PIL import Image

    from gan_zoo.data.folders import IMAGE_EXTENSIONS

    out.mkdir(parents=True, exist_ok=True)
    if any(p.suffix.lower() in IMAGE_EXTENSIONS for p in out.rglob("*")):
        raise SystemExit(f"error: {out} already holds images; give an empty or new folder")
    modes = balanced_modes(n, seed)
    images = draw_modes(modes, seed)
    paths = []
    for i, (m, image) in enumerate(zip(modes, images, strict=True)):
        path = out / f"{i:05d}-m{int(m):02d}.png"
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


def _fmt(x: float, spec: str) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def table(rows: list[dict[str, Any]], real: dict[str, Any]) -> list[str]:
    k = real["min_count"]
    lines = [f"| run | step | N | modes covered (≥1) | modes covered (≥{k}) | KL to uniform "
             "| KL / real | off-mode |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = r["kl"] / real["kl"] if real["kl"] else math.nan
        lines.append(f"| {r['run']} | {r.get('step', '–')} | {r['n']} | {r['covered']}/{M} "
                     f"| {r['covered_min']}/{M} | {_fmt(r['kl'], '.3f')} | "
                     f"{_fmt(ratio, '.2f')}× | {_fmt(100 * r['off_mode'], '.1f')}% |")
    lines.append(f"| real draws (floor, mean of {real['repeats']}) | – | {real['n']} "
                 f"| {real['covered']:.1f}/{M} | {real['covered_min']:.1f}/{M} "
                 f"| {real['kl']:.3f} ± {real['kl_sd']:.3f} | 1.00× "
                 f"| {100 * real['off_mode']:.1f}% |")
    return lines


def cmd_eval(args: argparse.Namespace) -> int:
    from gan_zoo import api
    from gan_zoo.errors import GanZooError
    from gan_zoo.training.rundir import RunDir
    from gan_zoo.util.textsafe import escape

    log = (lambda msg: None) if args.json else (lambda msg: print(msg, file=sys.stderr))
    labeller, info = get_labeller(cache=args.cache, log=log)
    n = args.n
    rows = []
    for run in args.runs:
        which = args.checkpoint
        if which == "auto":
            which = "best" if Path(run).is_dir() and RunDir(run).best_path.exists() else "latest"
        try:
            G, meta = api.load_generator(run, "best" if which == "best" else "latest")
        except GanZooError as e:  # a missing or unreadable run: one line, no traceback
            raise SystemExit(f"error: {escape(str(e))}") from None
        r = evaluate_generator(G, n, args.seed, threshold=args.threshold,
                               min_count=args.min_count, labeller=labeller)
        rows.append({"run": str(run), "checkpoint": meta.get("path"), "step": meta.get("step"),
                     **r})
    real = real_floor(n, args.seed, args.real_repeats, threshold=args.threshold,
                      min_count=args.min_count, labeller=labeller)
    if args.json:
        json.dump({"n": n, "modes": M, "threshold": args.threshold, "seed": args.seed,
                   "labeller": info, "runs": rows, "real": real}, sys.stdout, indent=1)
        print()
        return 0
    print(f"Known-modes benchmark: {M} modes, N = {n} samples per row, confidence threshold "
          f"{args.threshold}; labeller held-out accuracy {100 * info['accuracy']:.2f}% "
          f"(N = {info['held_out']}), rejects {100 * info['off_mode_rejected']:.1f}% of "
          "off-mode draws")
    print("\n".join(table(rows, real)))
    return 0


def candidate_recipe(candidate: str, folder: Path) -> tuple[str, Path]:
    """(row name, recipe file) of a `zoo` candidate: a family of benchmarks.zoo (its
    recommended settings at 32 px) or a recipe, by name (`ganzoo recipes`) or TOML file."""
    from benchmarks.zoo import FAMILIES, write_recipes

    if candidate in FAMILIES:
        return candidate, write_recipes(folder, [candidate], RESOLUTION)[0]
    from gan_zoo.errors import UsageError
    from gan_zoo.training.recipes import find

    try:
        recipe = find(candidate)
    except UsageError as e:
        raise SystemExit(f"error: {e}") from None
    return recipe.name, recipe.path


def cmd_zoo(args: argparse.Namespace) -> int:
    """Train each candidate for the same CPU budget on the benchmark's images (made once in
    OUT/data), one thread each, then evaluate them all like `eval`. Finished runs are kept
    (OUT/NAME.done) and not trained again, so an interrupted table continues."""
    import os
    import shutil
    import subprocess

    out: Path = args.out
    data = out / "data"
    if not (data / "done").is_file():
        if data.exists():
            shutil.rmtree(data)
        make_dataset(data, args.images, args.seed)
        (data / "done").write_text("")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    runs = []
    for candidate in args.candidates:
        name, recipe = candidate_recipe(candidate, out / "recipes")
        run, done = out / name, out / f"{name}.done"
        runs.append(run)
        if done.is_file():
            continue
        if run.exists():  # an interrupted run: start it again from nothing
            shutil.rmtree(run)
        cmd = [sys.executable, "-m", "gan_zoo", "train", "--recipe", str(recipe),
               "--data", str(data), "--minutes", f"{args.minutes:g}", "--budget-clock", "cpu",
               "--precision", args.precision, "--seed", str(args.seed), "--out", str(run),
               "--sample-every", "100000"]
        print(f"{name}: training {args.minutes:g} CPU-minutes in {run}", file=sys.stderr)
        if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode != 0:
            raise SystemExit(f"error: training {name} failed: {' '.join(cmd)}")
        done.write_text("")
    eval_args = argparse.Namespace(runs=[str(r) for r in runs], n=args.n, checkpoint="last",
                                   seed=args.seed, threshold=args.threshold, min_count=None,
                                   real_repeats=args.real_repeats, cache=args.cache,
                                   json=args.json)
    return cmd_eval(eval_args)


def cmd_make(args: argparse.Namespace) -> int:
    paths = make_dataset(args.out, args.n, args.seed)
    counts = np.bincount([int(p.stem.split("-m")[1]) for p in paths], minlength=M)
    print(f"wrote {len(paths)} PNGs ({counts.min()}-{counts.max()} per mode, {M} modes) to "
          f"{args.out}")
    return 0


def cmd_labeller(args: argparse.Namespace) -> int:
    _, info = get_labeller(cache=args.cache, log=lambda msg: print(msg, file=sys.stderr))
    print(json.dumps(info, indent=1))
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.modes",
                                description=__doc__.split("\n\n")[1].split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    mk = sub.add_parser("make", help="write the benchmark's dataset as PNGs")
    mk.add_argument("--out", type=Path, required=True, help="folder for the PNGs (new or empty)")
    mk.add_argument("--n", type=int, default=100 * M, help=f"images (default {100 * M})")
    mk.add_argument("--seed", type=int, default=0)
    mk.set_defaults(func=cmd_make)
    lab = sub.add_parser("labeller", help="train (once) and describe the labeller")
    lab.add_argument("--cache", type=Path, help="labeller cache folder")
    lab.set_defaults(func=cmd_labeller)
    ev = sub.add_parser("eval", help="modes covered, KL to uniform and off-mode of runs")
    ev.add_argument("runs", nargs="+", help="run directories or checkpoint files")
    ev.add_argument("--n", type=int, default=10 * M, help=f"samples per run (default {10 * M})")
    ev.add_argument("--checkpoint", choices=("auto", "best", "last"), default="auto",
                    help="auto: the run's best checkpoint when it kept one, else the last")
    ev.add_argument("--seed", type=int, default=0, help="noise seed (and real draws' seed)")
    ev.add_argument("--threshold", type=float, default=THRESHOLD,
                    help="labeller confidence below which a sample is off-mode")
    ev.add_argument("--min-count", type=int, help="second coverage column: modes with at "
                    "least this many samples (default N/(4M) rounded up)")
    ev.add_argument("--real-repeats", type=int, default=5, help="real draws averaged for the floor")
    ev.add_argument("--cache", type=Path, help="labeller cache folder")
    ev.add_argument("--json", action="store_true", help="print JSON instead of the table")
    ev.set_defaults(func=cmd_eval)
    zoo = sub.add_parser("zoo", help="train families or recipes for one CPU budget, then eval")
    zoo.add_argument("candidates", nargs="+", help="families of benchmarks.zoo (conv, resnet, "
                     "stylegan2, fastgan: their recommended settings) or recipes (name or TOML)")
    zoo.add_argument("--out", type=Path, required=True, help="folder for the data and runs")
    zoo.add_argument("--minutes", type=float, default=5.0, help="CPU-minutes per run")
    zoo.add_argument("--threads", type=int, default=1, help="threads per run")
    zoo.add_argument("--precision", default="bf16")
    zoo.add_argument("--images", type=int, default=100 * M, help="training images")
    zoo.add_argument("--n", type=int, default=10 * M, help=f"samples per run (default {10 * M})")
    zoo.add_argument("--seed", type=int, default=0, help="training, noise and real draws' seed")
    zoo.add_argument("--threshold", type=float, default=THRESHOLD)
    zoo.add_argument("--real-repeats", type=int, default=5)
    zoo.add_argument("--cache", type=Path, help="labeller cache folder")
    zoo.add_argument("--json", action="store_true", help="print JSON instead of the table")
    zoo.set_defaults(func=cmd_zoo)
    args = p.parse_args(argv)
    if getattr(args, "n", 1) < 1:
        p.error("--n must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
