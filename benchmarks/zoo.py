"""The zoo table: every architecture family trained for the same CPU budget on one dataset,
then FID, KID and coverage against the same real images, beside the real-vs-real floor.

    python -m benchmarks.zoo --data ../shared/data/faces128 --res 64 --minutes 10 --out runs/zoo
    python -m benchmarks.zoo ... --minutes 10 30 --write-docs     # also rewrite docs/zoo.md's table

Each family runs with its recommended settings (FAMILIES below, the flags its docs section
recommends), written as a recipe file per family so `ganzoo compare` trains and evaluates them
all alike: the same data, seed, precision and budget on the process's CPU clock
(`--budget-clock cpu`: CPU-minutes, fair when the runs share the machine), one thread per run
(start two of these processes with different --families on a 2-core machine), each run
picking its best checkpoint by FID every `--eval-every` steps. The floor is FID/KID between two
disjoint sets of real images of the same N, decoded at the same resolution: no generator can be
expected to beat it at that N.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent.parent / "docs"
TABLE_START, TABLE_END = "<!-- zoo-table:start -->", "<!-- zoo-table:end -->"

# Each family's recommended settings (its docs/zoo.md section says why); {res} is the side.
FAMILIES: dict[str, dict[str, Any]] = {
    "conv": {"arch": "conv{res}"},
    "resnet": {"arch": "resnet{res}", "loss": "hinge"},
    # ADA's R1 heuristic 0.0002 * side^2 / batch (batch 64): r1_gamma is set per side below.
    "stylegan2": {"arch": "stylegan2-{res}", "loss": "bce", "r1_every": 16, "ema_decay": 0.996,
                  "beta1_g": 0.0, "beta1_d": 0.0, "beta2_g": 0.99, "beta2_d": 0.99,
                  "lr_g": 2.5e-3, "lr_d": 2.5e-3},
    "fastgan": {"arch": "fastgan{res}", "loss": "hinge", "augment": ["diffaugment"],
                "batch_size": 16},
}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def write_recipes(folder: Path, families: list[str], res: int) -> list[Path]:
    """One recipe file per family (its recommended settings at this resolution)."""
    from gan_zoo.util.tomlio import dumps_toml

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for family in families:
        values = {k: (v.format(res=res) if isinstance(v, str) else v)
                  for k, v in FAMILIES[family].items()}
        if family == "stylegan2":
            values["r1_gamma"] = 0.0002 * res * res / values.get("batch_size", 64)
        path = folder / f"{family}-{res}.toml"
        path.write_text(f"# benchmarks.zoo: {family} at {res}px, recommended settings\n"
                        + dumps_toml(values))
        paths.append(path)
    return paths


def real_floor(data: str | None, res: int, n: int) -> dict[str, float]:
    """FID and KID of the first n real images against the next n (decoded at res)."""
    from gan_zoo.data.folders import load_dataset
    from gan_zoo.evaluation import ArraySource, EvalContext, build_metric, evaluate

    images = load_dataset(data, res).images  # a folder, or None: the built-in shapes
    if len(images) < 2 * n:
        raise SystemExit(f"the floor needs {2 * n} images, the data has {len(images)}")
    context = EvalContext(generator=None, reference=ArraySource(images[:n]),
                          samples=ArraySource(images[n:2 * n]), precision="auto")
    metrics = [build_metric("fid", {"n": n}), build_metric("kid", {"n": n})]
    return evaluate(metrics, context)


def sample_grid(checkpoint: str, png: Path, n: int = 16) -> None:
    """A grid of n samples (seed 0) from the checkpoint the comparison evaluated."""
    from gan_zoo import api

    G, _ = api.load_generator(checkpoint)
    api.save_images(api.sample(G, n, seed=0), png)


def fid_points(row: dict[str, Any], minutes: float) -> list[tuple[float, float]]:
    """(CPU-minutes, FID) of a run's evaluations during training: the step's share of the
    run's steps times the budget (a CPU-budgeted step costs about the same all along)."""
    from gan_zoo.training.metrics_file import iter_metrics

    path = Path(row.get("run_dir") or "") / "metrics.jsonl"
    steps = row.get("steps")
    if not path.is_file() or not isinstance(steps, int) or steps < 1:
        return []
    points = {}
    for record in iter_metrics(path):
        fid, step = record.get("fid"), record.get("step")
        if record.get("event", "eval") == "eval" and isinstance(fid, float) \
                and isinstance(step, int):
            points[step] = fid  # the last record of a step wins
    return [(minutes * step / steps, fid) for step, fid in sorted(points.items())]


def fid_curves(budgets: dict[float, dict[str, Any]], floor: dict[str, float], png: Path,
               res: int) -> None:
    """FID over CPU-minutes for every family, one panel per budget, the floor dashed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FormatStrFormatter

    budgets = {m: c for m, c in budgets.items() if c["candidates"]}
    fig = Figure(figsize=(5 * max(1, len(budgets)), 3.6), dpi=100)
    FigureCanvasAgg(fig)
    for i, (minutes, comp) in enumerate(budgets.items()):
        ax = fig.add_subplot(1, len(budgets), i + 1)
        for r in comp["candidates"]:
            points = fid_points(r, minutes)
            if points:
                family = family_of(r)  # one colour per family in every panel
                colour = f"C{list(FAMILIES).index(family) % 10}" if family in FAMILIES else None
                ax.plot(*zip(*points, strict=True), marker="o", label=family, color=colour)
        ax.axhline(floor["fid"], color="grey", linestyle="--", label="real vs real")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
        ax.set_xlim(0, minutes)
        ax.set_xlabel("CPU-minutes of training")
        ax.set_ylabel(f"FID at {res} px (N = 1000)")
        ax.set_title(f"{minutes:g} CPU-minutes")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)


def comparison_dir(args: argparse.Namespace, minutes: float, family: str) -> Path:
    return Path(args.out) / f"{args.res}px-{minutes:g}min" / family


def run_family(args: argparse.Namespace, minutes: float, family: str) -> None:
    """One family's run and evaluation: a comparison of one candidate, so families can be
    trained in separate processes (two at a time on two cores) and a table built from any
    that finished; re-running skips what is done."""
    from gan_zoo.compare import run_comparison

    out = comparison_dir(args, minutes, family)
    (recipe,) = write_recipes(Path(args.out) / "recipes", [family], args.res)
    metric_opts = [f"{m}.max_real={args.n}" for m in ("fid", "kid", "coverage")]
    run_comparison(
        out, recipes=[str(recipe)], data=args.data, minutes=minutes,
        budget_clock="cpu", metrics=("fid", "kid", "coverage"), n=args.n, options=metric_opts,
        seed=args.seed, precision=args.precision, eval_every=args.eval_every,
        log=lambda m: print(m, file=sys.stderr))


def collect(args: argparse.Namespace) -> dict[float, dict[str, Any]]:
    """Every finished comparison under --out, per budget, rows ranked by FID."""
    budgets: dict[float, dict[str, Any]] = {}
    for minutes in args.minutes:
        rows = []
        for family in FAMILIES:
            path = comparison_dir(args, minutes, family) / "compare.json"
            if path.is_file():
                comparison = json.loads(path.read_text())
                rows += [dict(r, eval_every=comparison.get("eval_every"))
                         for r in comparison["candidates"]]
        fid = [(r.get("metrics", {}).get("fid", {}).get("value"), i) for i, r in enumerate(rows)]
        order = sorted(fid, key=lambda t: (t[0] is None, t[0] or 0.0, t[1]))
        budgets[minutes] = {"candidates": [rows[i] for _, i in order]}
    return budgets


def family_of(row: dict[str, Any]) -> str:
    """The family of a comparison row (its candidate is the recipe file FAMILY-RES)."""
    return row["candidate"].rsplit("-", 1)[0]


def _fmt(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, int | float) else "–"


def cpu_rate(row: dict[str, Any]) -> float | None:
    """Training images per CPU-second (steps x batch over the CPU time the budget counted):
    the speed that does not depend on what else ran on the machine."""
    seconds, steps = row.get("train_seconds"), row.get("steps")
    batch = (row.get("config") or {}).get("batch_size")
    if row.get("train_clock") != "cpu" or not all(isinstance(v, int | float) and v > 0
                                                  for v in (seconds, steps, batch)):
        return None
    return steps * batch / seconds


def _intervals(budgets: dict[float, dict[str, Any]], args: argparse.Namespace) -> str:
    """How often each budget's runs evaluated FID to keep their best checkpoint, e.g.
    '1000 steps (10 min; resnet: at the end only) and 2000 steps (30 min)'."""
    parts = []
    for minutes, comp in budgets.items():
        groups: dict[str, list[str]] = {}
        for r in comp["candidates"]:
            every = r.get("eval_every") or args.eval_every
            text = ("at the end only" if isinstance(r.get("steps"), int) and every > r["steps"]
                    else f"{every} steps")
            groups.setdefault(text, []).append(family_of(r))
        if not groups:
            continue
        main = max(groups, key=lambda k: len(groups[k]))
        others = "".join(f"; {', '.join(groups[k])}: {k}" for k in groups if k != main)
        parts.append(f"{main} ({minutes:g} min{others})" if len(budgets) > 1 or others
                     else main)
    return " and ".join(parts) or f"{args.eval_every} steps"


def table(budgets: dict[float, dict[str, Any]], floor: dict[str, float], args: argparse.Namespace,
          images: Path | None) -> str:
    """The markdown table (both budgets), with the floor and the machine named."""
    lines = [f"Faces at {args.res} px ({args.data_name}), budgets in CPU-minutes "
             f"(`--budget-clock cpu`), {args.precision}, one thread per run, "
             f"on {args.cpu}; measured {args.date}. FID and KID (×10³) use N = {args.n} samples "
             f"against the first {args.n} real images; the real-vs-real floor (the first {args.n} "
             f"against the next {args.n}) is **FID {floor['fid']:.1f}, KID×10³ "
             f"{floor['kid'] * 1e3:.1f}**. Coverage (k-NN, Naeem et al. 2020) is the share of "
             "real images with a sample in their neighbourhood (1 = all); img/CPU-s is training "
             "images per CPU-second, so it does not depend on the machine's load. Each run kept "
             "its best "
             f"checkpoint by FID, evaluated every {_intervals(budgets, args)}.", "",
             "| budget | family | FID ↓ | KID×10³ ↓ | coverage ↑ | best step of steps | img/CPU-s "
             "| G params | D params | samples |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for minutes, comp in budgets.items():
        for r in comp["candidates"]:  # ranked by FID, failed runs last
            m = {k: v.get("value") for k, v in r.get("metrics", {}).items()}
            family = family_of(r)
            pic = ""
            if images is not None and r.get("status") == "ok":
                pic = f"![{family}](images/zoo-{args.res}-{family}-{minutes:g}min.png)"
            kid = m.get("kid")
            lines.append(
                f"| {minutes:g} min | {family} | {_fmt(m.get('fid'), '.1f')} | "
                f"{_fmt(kid * 1e3 if kid is not None else None, '.1f')} | "
                f"{_fmt(m.get('coverage'), '.2f')} | {_fmt(r.get('checkpoint_step'), 'd')} "
                f"of {_fmt(r.get('steps'), 'd')} | {_fmt(cpu_rate(r), '.0f')} | "
                f"{_fmt(r.get('params_g'), ',')} | {_fmt(r.get('params_d'), ',')} | "
                f"{pic or r.get('reason') or ''} |")
    return "\n".join(lines)


def write_docs(text: str) -> None:
    path = DOCS / "zoo.md"
    doc = path.read_text()
    start, end = doc.index(TABLE_START) + len(TABLE_START), doc.index(TABLE_END)
    path.write_text(doc[:start] + "\n" + text + "\n" + doc[end:])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.zoo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="image folder (faces128 in docs/zoo.md)")
    p.add_argument("--res", type=int, default=64, choices=(32, 64, 128))
    p.add_argument("--minutes", type=float, nargs="+", default=[10.0],
                   help="CPU-minute budgets, one table block each")
    p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    p.add_argument("--n", type=int, default=1000, help="N samples and N real images")
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--table-only", action="store_true",
                   help="train nothing: build the table from the finished runs under --out")
    p.add_argument("--precision", default="bf16")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/zoo")
    p.add_argument("--write-docs", action="store_true",
                   help="rewrite docs/zoo.md's table and docs/images/zoo-*.png")
    args = p.parse_args(argv)
    args.cpu, args.date = cpu_name(), time.strftime("%Y-%m-%d")
    args.data_name = Path(args.data).name
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if not args.table_only:
        for minutes in args.minutes:
            for family in args.families:
                run_family(args, minutes, family)
    budgets = collect(args)
    floor_file = Path(args.out) / f"floor-{args.res}px-{args.n}.json"
    if floor_file.is_file():
        floor = json.loads(floor_file.read_text())
    else:
        floor = real_floor(args.data, args.res, args.n)
        floor_file.write_text(json.dumps(floor))
    images = DOCS / "images" if args.write_docs else None
    if images is not None:
        for minutes, comp in budgets.items():
            for r in comp["candidates"]:
                if r.get("status") == "ok" and r.get("checkpoint"):
                    sample_grid(r["checkpoint"],
                                images / f"zoo-{args.res}-{family_of(r)}-{minutes:g}min.png")
    text = table(budgets, floor, args, images)
    if images is not None:
        fid_curves(budgets, floor, images / f"zoo-{args.res}-fid-curves.png", args.res)
    print(text)
    Path(args.out, f"zoo-{args.res}px.md").write_text(text + "\n")
    if args.write_docs:
        write_docs(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
