"""`ganzoo compare`: which GAN is best on my images within my budget, in one command.

    ganzoo compare --data ./faces --arch conv64 --arch resnet64 --recipe face-modern \\
        --minutes 30 --budget-clock cpu --metric fid --metric kid --out cmp/

Every candidate -- an architecture with the default training settings (``--arch``), or a recipe
(``--recipe``) -- trains on the same images, with the same seed and the same budget (minutes of
training time, or steps), into OUT/runs/NAME. The checkpoint each run chose (its best by the
first metric with ``--eval-every``, else its last) is then evaluated with the same metrics at
the same N by `ganzoo eval`'s code, and the ranking is written as OUT/compare.json,
OUT/compare.md and OUT/report.html (`ganzoo report`'s page with the ranking on top).

Names, options and flags of every candidate are checked before anything trains (one message,
exit 2). A candidate that fails while training or evaluating (a crash, a NaN stop) is a row with
its reason and the others go on. OUT/compare-state.json keeps each candidate's config and
outcome, so the same command again skips finished candidates, resumes interrupted ones (a time
budget continues where it stopped) and re-evaluates only checkpoints or metrics that changed.
"""

from __future__ import annotations

import contextlib
import gc
import html
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import click

from . import __version__
from .errors import GanZooError, UsageError
from .util.atomic import write_bytes
from .util.textsafe import escape, shown

STATE_NAME = "compare-state.json"
STATE_FORMAT = "gan-zoo compare"
EVENT = "compare-eval"  # the evaluation's record in each run's metrics.jsonl ("eval" in it: a metric)
WORKER = "from gan_zoo.compare import worker_main; worker_main()"
LOCK_NAME = ".compare.lock"
# Keys of a candidate's config that the comparison sets for all (recipes' own values dropped).
DROPPED = ("steps", "epochs", "time_budget", "budget_clock", "eval_every", "metric",
           "early_stop_patience", "data", "seed")


class CompareInterrupted(GanZooError):
    """Ctrl-C or SIGTERM: the runs saved their state; the same command continues."""

    exit_code = 130


@dataclass
class Settings:
    """What every candidate shares: data, budget, seed, metrics and the shared overrides."""

    out: Path
    data: str | None = None
    minutes: float | None = None
    steps: int | None = None
    budget_clock: Literal["wall", "cpu"] = "wall"
    metrics: tuple[str, ...] = ("fid",)
    n: int | None = None
    seed: int = 0
    batch_size: int | None = None
    precision: str | None = None
    device: str | None = None
    parallel: int = 1
    eval_every: int | None = None
    trust_weights: bool = False

    def budget_text(self) -> str:
        if self.steps is not None:
            return f"{self.steps} steps each"
        clock = "CPU" if self.budget_clock == "cpu" else "wall-clock"
        return f"{self.minutes:g} minutes of {clock} training time each"


@dataclass
class Candidate:
    """One contender: its folder name, where it came from and its validated config."""

    name: str
    kind: Literal["arch", "recipe"]
    source: str
    config: dict[str, Any]  # TrainConfig.model_dump(mode="json")
    resolution: int
    params_g: int | None
    params_d: int | None
    state: dict[str, Any] = field(default_factory=dict)  # this candidate's entry in the state file

    def run_dir(self, out: Path) -> Path:
        return out / "runs" / self.name


@dataclass
class Comparison:
    """What run_comparison returns: the ranked rows (compare.json's candidates) and the files."""

    rows: list[dict[str, Any]]
    json_path: Path
    md_path: Path
    report_path: Path | None
    table: str  # the ranking table in Markdown, as printed


# ------------------------------------------------------------------------------ the plan

def _count(module: Any) -> int | None:
    try:
        return int(sum(p.numel() for p in module.parameters()))
    except Exception:  # an uninitialized (lazy) parameter has no size yet
        return None


def _candidate_values(kind: str, source: str, s: Settings) -> dict[str, Any]:
    """The config values of one candidate before -o options: its own, then the shared ones."""
    from .training.config import load_config_file
    from .training.recipes import find

    if kind == "arch":
        values: dict[str, Any] = {"arch": source}
    else:
        values = load_config_file(find(source).path, "recipe file")
    for key in DROPPED:
        values.pop(key, None)
    if s.steps is not None:
        values["steps"] = s.steps
    else:
        values["time_budget"], values["budget_clock"] = s.minutes, s.budget_clock
    if s.data is not None:
        values["data"] = s.data
    values["seed"] = s.seed
    for key in ("batch_size", "precision", "device"):
        if getattr(s, key) is not None:
            values[key] = getattr(s, key)
    if s.eval_every is not None:
        values["eval_every"], values["metric"] = s.eval_every, s.metrics[0]
    return values


def _uses(values: dict[str, Any]) -> list[str]:
    """The components a config uses (what its options may name)."""
    used = [values.get("arch", "conv32"), values.get("loss", "bce"),
            *values.get("schedules", []), *values.get("augment", [])]
    if values.get("eval_every") is not None:
        used.append(values.get("metric", "fid"))
    return [u for u in used if isinstance(u, str)]


def build_metric_set(s: Settings, assignments: dict[str, dict[str, Any]]) -> list[Any]:
    """The metrics by name, each with its options (-o NAME.KEY=VALUE, then --n), validated."""
    from .evaluation.eval_command import build_metrics

    return build_metrics(s.metrics, {k: v for k, v in assignments.items() if k in s.metrics},
                         {"--n": ("n", s.n)})


def plan(s: Settings, archs: Sequence[str], recipes: Sequence[str],
         options: dict[str, dict[str, Any]]) -> tuple[list[Candidate], list[Any]]:
    """Every candidate's config built and checked, and the metrics: any problem is one
    UsageError before anything is written or trained."""
    from .training.assembly import build_components
    from .training.config import make_config, merge_options
    from .training.recipes import find

    if not archs and not recipes:
        raise UsageError("give at least one candidate: --arch NAME or --recipe NAME (repeatable)")
    if (s.minutes is None) == (s.steps is None):
        raise UsageError("give the budget of every candidate: --minutes M (or --steps N), one "
                         "of the two")
    if not s.metrics:
        raise UsageError("give at least one --metric")
    if len(set(s.metrics)) != len(s.metrics):
        raise UsageError("a --metric is given twice")
    if s.data is not None and not Path(s.data).is_dir():
        raise UsageError(f"--data {shown(s.data)} is not a folder of images")
    metrics = build_metric_set(s, options)
    metric_options = {m.name: m.options.model_dump(mode="json") for m in metrics}
    named: list[tuple[str, str, str]] = []
    for kind, sources in (("arch", archs), ("recipe", recipes)):
        for source in sources:
            name = source if kind == "arch" else find(source).name
            named.append((kind, source, name))
    names = [n for _, _, n in named]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(f"candidate {shown(twice[0])} is given twice (each --arch and --recipe "
                         "names one candidate, and the names must differ)")
    unused = set(options) - set(s.metrics)
    candidates = []
    for kind, source, name in named:
        try:
            values = _candidate_values(kind, source, s)
            used = _uses(values)
            # A recipe's options for what it no longer uses (its own metric) are dropped.
            own = {k: v for k, v in (values.get("options") or {}).items() if k in used}
            mine = {k: v for k, v in options.items() if k in used}
            unused -= set(mine)
            if s.eval_every is not None:  # the run's evaluation measures as the final one does
                mine[s.metrics[0]] = metric_options[s.metrics[0]]
            values["options"] = merge_options(own, mine)
            cfg = make_config(values, "config")
            comps = build_components(cfg)
        except UsageError as exc:
            raise UsageError(f"candidate {shown(name)} ({kind} {shown(source)}): {exc}") from None
        arch = comps.arch
        candidates.append(Candidate(
            name, kind, source, cfg.model_dump(mode="json"), arch.resolution,
            _count(arch.build_generator()), _count(arch.build_discriminator())))
    if unused:
        first = sorted(unused)[0]
        raise UsageError(f"-o {shown(first)}.…: no candidate uses {shown(first)} and it is not "
                         f"a --metric ({', '.join(s.metrics)})")
    return candidates, metrics


def preflight_metrics(metrics: list[Any], s: Settings) -> None:
    """Load what the metrics need (Inception weights) now: a missing or untrusted file is one
    message before hours of training, not a failure after."""
    import numpy as np

    from .evaluation import ArraySource, EvalContext
    from .training.trainer import resolve_device

    context = EvalContext(None, ArraySource(np.zeros((0, 8, 8, 3), np.uint8), "preflight"),
                          device=resolve_device(s.device or "auto"),
                          trust_weights=s.trust_weights)
    for metric in metrics:
        try:
            metric.prepare(context)
        except GanZooError:
            raise
        except Exception as exc:
            raise GanZooError(f"metric {shown(metric.name)} could not prepare: "
                              f"{type(exc).__name__}: {shown(str(exc))}") from None


# ------------------------------------------------------------------------------ OUT and state

def _read_state(out: Path) -> dict[str, Any]:
    path = out / STATE_NAME
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {shown(str(path))} ({exc}); choose another --out") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT or \
            not isinstance(state.get("candidates"), dict):
        raise UsageError(f"{shown(str(path))} is not a gan-zoo comparison's state; choose "
                         "another --out")
    return state


def open_out(out: Path, candidates: list[Candidate]) -> dict[str, Any]:
    """The comparison's state: new for a new or empty folder, read back from an earlier run of
    the command. A folder holding anything else is refused (its files are never touched), and
    so is a candidate whose config differs from the one its run was trained with."""
    if os.path.lexists(out) and not out.is_dir():
        raise UsageError(f"--out {shown(str(out))} exists and is not a folder")
    entries = set(os.listdir(out)) - {LOCK_NAME} if out.is_dir() else set()
    if entries and STATE_NAME not in entries:
        raise UsageError(
            f"--out {shown(str(out))} is not empty and holds no comparison ({STATE_NAME}); "
            "a comparison is written only into a new or empty folder, or continued in its own: "
            "choose another --out")
    state = _read_state(out) if entries else {"format": STATE_FORMAT, "version": 1,
                                               "candidates": {}}
    for c in candidates:
        before = state["candidates"].get(c.name)
        if before is None:
            continue
        if before.get("config") != c.config:
            keys = sorted(k for k in set(before.get("config") or {}) | set(c.config)
                          if (before.get("config") or {}).get(k) != c.config.get(k))
            raise UsageError(
                f"candidate {shown(c.name)} in {shown(str(out))} was trained with another config "
                f"(differs in: {', '.join(keys)}); a comparison's candidates share one budget "
                "and settings: use a new --out for new settings")
        c.state = before
    return state


def _save_state(out: Path, state: dict[str, Any], candidates: list[Candidate]) -> None:
    for c in candidates:
        state["candidates"][c.name] = c.state
    write_bytes(out / STATE_NAME, (json.dumps(state, indent=1) + "\n").encode("utf-8"))


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """One `ganzoo compare` at a time per OUT (advisory flock; none where unsupported)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise UsageError(f"another `ganzoo compare` is writing {shown(str(out))}") from None
        yield
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------ training

def one_line(exc: BaseException) -> str:
    """An exception as the one-line reason in the table."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, GanZooError):
        text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= 300 else text[:297] + "..."


def train_candidate(spec: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    """Train one candidate, or continue its interrupted run; never raises for the run's own
    failures: {"status": "done"|"failed"|"interrupted", "reason", "stopped", "step"}."""
    from . import api
    from .training.rundir import RunDir

    run_dir = Path(spec["run_dir"])
    length = {"steps": spec["config"]["steps"]} if spec["config"].get("steps") else \
        {"minutes": spec["config"]["time_budget"]}
    trainer = None
    try:
        if RunDir(run_dir).step_checkpoints(include_irregular=True):
            log(f"continuing the run in {run_dir} from its last checkpoint")
            trainer = api.prepare_training(resume=run_dir, log=log,
                                           trust_weights=spec["trust_weights"], **length)
        else:
            trainer = api.prepare_training(spec["config"], out=run_dir, log=log,
                                           trust_weights=spec["trust_weights"])
        reporter = _progress_logger(log)
        trainer.callbacks.on_step.append(reporter)
        summary = trainer.train()
    except Exception as exc:  # noqa: BLE001 -- a candidate's crash must not stop the others
        return {"status": "failed", "reason": one_line(exc)}
    finally:
        if trainer is not None and trainer.run is not None:
            trainer.run.unlock()  # a training that raised keeps its lock otherwise
    stopped = summary["stopped"]
    if stopped in ("SIGINT", "SIGTERM"):
        return {"status": "interrupted", "reason": f"stopped by {stopped}", "step": summary["step"]}
    return {"status": "done", "stopped": stopped, "step": summary["step"]}


def _progress_logger(log: Callable[[str], None], every: float = 60.0) -> Callable[..., None]:
    """An on_step callback writing one line a minute: long budgets show they are alive."""
    last = [time.perf_counter()]

    def report(trainer: Any, stats: dict[str, float]) -> None:
        now = time.perf_counter()
        if now - last[0] >= every:
            last[0] = now
            budget = trainer.budget
            where = (f"{budget.spent / 60:.1f} of {budget.seconds / 60:g} min" if budget else
                     f"of {trainer.total_steps}")
            log(f"step {trainer.step} ({where}), D {stats['loss_d']:.3f} G {stats['loss_g']:.3f}")

    return report


def worker_main() -> None:
    """`--parallel`: one candidate in its own process (spec file in argv[1], result beside it)."""
    from .errors import install_warning_format

    install_warning_format()
    spec_path, result_path = Path(sys.argv[1]), Path(sys.argv[2])
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    result = train_candidate(spec, lambda m: print(escape(m), file=sys.stderr, flush=True))
    write_bytes(result_path, json.dumps(result).encode("utf-8"))


def _spec(c: Candidate, s: Settings) -> dict[str, Any]:
    return {"name": c.name, "config": c.config, "run_dir": str(c.run_dir(s.out)),
            "trust_weights": s.trust_weights}


def _record(c: Candidate, result: dict[str, Any]) -> None:
    c.state.update({"status": result["status"], "reason": result.get("reason"),
                    "stopped": result.get("stopped")})


def _train_sequential(todo: list[Candidate], s: Settings, save: Callable[[], None],
                      log: Callable[[str], None]) -> None:
    for i, c in enumerate(todo, 1):
        tag = f"[{i}/{len(todo)}] {c.name}"
        log(f"{tag}: training ({s.budget_text()}) in {c.run_dir(s.out)}")
        started = time.perf_counter()
        result = train_candidate(_spec(c, s), lambda m, tag=tag: log(f"{tag}: {m}"))
        gc.collect()
        _record(c, result)
        save()
        _report_result(tag, result, time.perf_counter() - started, log)
        if result["status"] == "interrupted":
            raise CompareInterrupted(_interrupted_message(s))


def _report_result(tag: str, result: dict[str, Any], seconds: float,
                   log: Callable[[str], None]) -> None:
    if result["status"] == "done":
        extra = f" ({result['stopped']})" if result.get("stopped") else ""
        log(f"{tag}: trained to step {result['step']} in {seconds:.0f}s{extra}")
    else:
        log(f"{tag}: {result['status']}: {result.get('reason')}")


def _interrupted_message(s: Settings) -> str:
    return (f"comparison interrupted; the runs saved their state. Run the same command again "
            f"(--out {s.out}) to continue: finished candidates are skipped, interrupted ones "
            "resume")


def thread_split(parallel: int) -> tuple[int, str]:
    """Threads per process when `parallel` candidates train at once, and a note when the cores
    cannot be split without sharing."""
    from .util.hardware import choose_threads

    total = choose_threads()[0]
    each = max(1, total // parallel)
    note = ""
    if parallel > total:
        note = (f"{parallel} processes on {total} cores: they share cores, so a wall-clock "
                "budget gives each less compute than it says; --budget-clock cpu stays fair")
    return each, note


def _train_parallel(todo: list[Candidate], s: Settings, save: Callable[[], None],
                    log: Callable[[str], None]) -> None:
    """Up to s.parallel candidates at a time, each a process with its share of the threads;
    output in OUT/logs/NAME.log."""
    threads, note = thread_split(s.parallel)
    log(f"training {len(todo)} candidate(s), {s.parallel} at a time, {threads} thread(s) each")
    if note:
        log(f"note: {note}")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    logs = s.out / "logs"
    logs.mkdir(exist_ok=True)
    pending = list(todo)
    running: dict[str, tuple[Candidate, subprocess.Popen, Any, float]] = {}
    interrupted = False
    try:
        while pending or running:
            while pending and len(running) < s.parallel and not interrupted:
                c = pending.pop(0)
                spec_path, result_path = logs / f"{c.name}.spec.json", _result_path(logs, c.name)
                result_path.unlink(missing_ok=True)
                write_bytes(spec_path, json.dumps(_spec(c, s)).encode("utf-8"))
                fh = open(logs / f"{c.name}.log", "ab")  # noqa: SIM115 -- closed when it ends
                proc = subprocess.Popen(
                    [sys.executable, "-c", WORKER, str(spec_path), str(result_path)],
                    stdout=fh, stderr=subprocess.STDOUT, env=env)
                running[c.name] = (c, proc, fh, time.perf_counter())
                log(f"{c.name}: training ({s.budget_text()}) in {c.run_dir(s.out)}, "
                    f"output in {logs / (c.name + '.log')}")
            for name, (c, proc, fh, started) in list(running.items()):
                if proc.poll() is None:
                    continue
                fh.close()
                del running[name]
                result = _worker_result(logs, c.name, proc.returncode)
                _record(c, result)
                save()
                _report_result(c.name, result, time.perf_counter() - started, log)
                interrupted |= result["status"] == "interrupted"
            if interrupted and not running:
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        for _c, proc, _fh, _ in running.values():
            proc.send_signal(signal.SIGINT)  # each saves a checkpoint after its step
        for c, proc, fh, _ in running.values():
            proc.wait()
            fh.close()
            _record(c, _worker_result(logs, c.name, proc.returncode))
        save()
        interrupted = True
    if interrupted:
        raise CompareInterrupted(_interrupted_message(s))


def _result_path(logs: Path, name: str) -> Path:
    return logs / f"{name}.result.json"


def _worker_result(logs: Path, name: str, returncode: int) -> dict[str, Any]:
    path = _result_path(logs, name)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    tail = ""
    with contextlib.suppress(OSError):
        lines = (logs / f"{name}.log").read_text(encoding="utf-8", errors="replace").splitlines()
        tail = next((x.strip() for x in reversed(lines) if x.strip()), "")
    if returncode in (-signal.SIGINT, -signal.SIGTERM, 130):
        return {"status": "interrupted", "reason": f"process ended by signal ({returncode})"}
    why = f"the training process exited with code {returncode}"
    return {"status": "failed", "reason": f"{why}: {tail}" if tail else why}


# ------------------------------------------------------------------------------ evaluation

def _checkpoint(c: Candidate, s: Settings) -> tuple[Path, str]:
    """The checkpoint to compare: the run's best (with --eval-every), else its last."""
    from .training.rundir import RunDir

    run = RunDir(c.run_dir(s.out))
    if s.eval_every is not None and run.best_path.is_file():
        return run.best_path, "best"
    found = run.step_checkpoints()
    if not found:
        raise GanZooError(f"the run {shown(str(run.path))} saved no checkpoint")
    return found[0][1], "last"


def evaluate_candidate(c: Candidate, s: Settings, options: dict[str, dict[str, Any]],
                       log: Callable[[str], None]) -> dict[str, Any]:
    """The chosen checkpoint's metrics through `ganzoo eval`'s code (the record it logs), also
    appended to the run's metrics.jsonl; reused from the state when nothing changed."""
    from .evaluation import evaluate
    from .evaluation.eval_command import RECORD_KEYS, finish, inception_record, open_target

    path, which = _checkpoint(c, s)
    metrics = build_metric_set(s, options)
    key = {"checkpoint": str(path), "mtime_ns": path.stat().st_mtime_ns,
           "size": path.stat().st_size, "seed": s.seed, "device": s.device,
           "metrics": {m.name: m.options.model_dump(mode="json") for m in metrics}}
    before = c.state.get("evaluation")
    if isinstance(before, dict) and before.get("key") == key:
        log(f"{c.name}: metrics of {path.name} from the earlier run of this comparison")
        return before["record"]
    started = (time.perf_counter(), time.process_time())
    target = open_target(str(c.run_dir(s.out)), None, command="compare", data=s.data,
                         best=which == "best", no_ema=False, device=s.device or "auto",
                         seed=s.seed, batch_size=50, workers=None, log=log,
                         trust_weights=s.trust_weights)
    record: dict[str, Any] = {**target.record, "metrics": [m.name for m in metrics]}
    record.update(evaluate(metrics, target.context, taken=RECORD_KEYS))
    record["options"] = {m.name: m.options.model_dump(mode="json") for m in metrics}
    record.update(inception_record(target.context))
    record["which"] = which
    finish(target, record, EVENT, False, started)
    c.state["evaluation"] = {"key": key, "record": record}
    return record


# ------------------------------------------------------------------------------ the results

def _direction(metric: str) -> bool:
    from .plugins import get_registry

    return bool(get_registry().get("metric", metric).higher_is_better)


def _run_facts(c: Candidate, s: Settings) -> dict[str, Any]:
    """Steps reached, training time and images/s, from the run's own files."""
    from .training import checkpoint as ckpt
    from .training.rundir import RunDir

    run = RunDir(c.run_dir(s.out))
    facts: dict[str, Any] = {"steps": None, "train_seconds": None, "train_clock": None,
                             "images_per_s": None}
    with contextlib.suppress(GanZooError, OSError):
        found = run.step_checkpoints()
        if found:
            meta = ckpt.read_meta(found[0][1])
            facts["steps"] = int(meta["step"])
            budget = meta.get("budget")
            if isinstance(budget, dict):
                facts["train_seconds"] = round(float(budget["spent"]), 2)
                facts["train_clock"] = budget.get("clock")
    with contextlib.suppress(GanZooError, OSError):
        records = [r for r in run.read_metrics() if "loss_d" in r]
        rates = [r["img_per_s"] for r in records if isinstance(r.get("img_per_s"), int | float)]
        if rates:
            facts["images_per_s"] = round(statistics.median(rates), 2)
        if facts["train_seconds"] is None and records and \
                isinstance(records[-1].get("time"), int | float):
            facts["train_seconds"] = records[-1]["time"]  # since the last (re)start
            facts["train_clock"] = "wall, evaluation included"
    return facts


def build_rows(candidates: list[Candidate], s: Settings, records: dict[str, dict[str, Any]],
               failures: dict[str, str]) -> list[dict[str, Any]]:
    """compare.json's candidates, ranked by the first metric (failed ones last)."""
    rows = []
    for order, c in enumerate(candidates):
        record = records.get(c.name)
        row: dict[str, Any] = {
            "candidate": c.name, "kind": c.kind, "source": c.source,
            "status": "ok" if record is not None else "failed",
            "reason": failures.get(c.name), "stopped": c.state.get("stopped"),
            "run_dir": str(c.run_dir(s.out)), "resolution": c.resolution,
            "params_g": c.params_g, "params_d": c.params_d, **_run_facts(c, s),
            "checkpoint": None, "checkpoint_kind": None, "checkpoint_step": None, "ema": None,
            "metrics": {}, "config": c.config, "_order": order}
        if record is not None:
            row.update({"checkpoint": record.get("checkpoint"), "checkpoint_kind": record["which"],
                        "checkpoint_step": record.get("step"), "ema": record.get("ema")})
            for name in s.metrics:
                extras = {k[len(name) + 1:]: v for k, v in record.items()
                          if k.startswith(name + "_") and isinstance(v, int | float)}
                row["metrics"][name] = {"value": record.get(name), **extras,
                                        "higher_is_better": _direction(name),
                                        "options": record["options"].get(name)}
        rows.append(row)
    first, up = s.metrics[0], _direction(s.metrics[0])

    def rank_key(row: dict[str, Any]) -> tuple:
        value = row["metrics"].get(first, {}).get("value")
        finite = isinstance(value, int | float) and math.isfinite(value)
        return (row["status"] != "ok", not finite,
                (-value if up else value) if finite else 0.0, row["_order"])

    rows.sort(key=rank_key)
    for i, row in enumerate(rows, 1):
        row.pop("_order")
        row["rank"] = i if row["status"] == "ok" else None
    return rows


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.{digits}g}"
    return str(value)


def _size(n: int | None) -> str:
    if n is None:
        return "–"
    for unit, div in (("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return str(n)


def _n_text(rows: list[dict[str, Any]], metric: str) -> str:
    """"N = 1000 generated vs 1000 real" when every row agrees (they do: one options set)."""
    sizes = {(r["metrics"][metric].get("n"), r["metrics"][metric].get("n_real"))
             for r in rows if metric in r["metrics"]}
    parts = []
    for n, n_real in sorted(sizes, key=str):
        if n is None:
            continue
        parts.append(f"N = {n} generated" + (f" vs {n_real} real" if n_real is not None else ""))
    return "; ".join(parts) or "N not reported by the metric"


def _table_cells(rows: list[dict[str, Any]], s: Settings) -> tuple[list[str], list[list[str]]]:
    arrows = {m: "↑" if _direction(m) else "↓" for m in s.metrics}
    head = ["rank", "candidate", *(f"{m} {arrows[m]}" for m in s.metrics), "steps",
            "train time", "img/s", "G params", "D params", "checkpoint", "note"]
    body = []
    for r in rows:
        cells = [str(r["rank"]) if r["rank"] else "–", r["candidate"]]
        cells += [_fmt(r["metrics"].get(m, {}).get("value")) if r["status"] == "ok" else "failed"
                  for m in s.metrics]
        secs = r["train_seconds"]
        cells += [_fmt(r["steps"]), f"{secs:.0f} s" if isinstance(secs, int | float) else "–",
                  _fmt(r["images_per_s"], 3), _size(r["params_g"]), _size(r["params_d"])]
        cells.append(f"{r['checkpoint_kind']}, step {r['checkpoint_step']}"
                     if r["checkpoint_kind"] else "–")
        note = r["reason"] or (r["stopped"] if r["stopped"] else "")
        cells.append(note)
        body.append(cells)
    return head, body


def markdown_table(rows: list[dict[str, Any]], s: Settings) -> str:
    head, body = _table_cells(rows, s)

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(escape(c).replace("|", "\\|") for c in cells) + " |"

    align = ["---:", "---", *(["---:"] * len(s.metrics)), "---:", "---:", "---:", "---:", "---:",
             "---", "---"]
    return "\n".join([line(head), "| " + " | ".join(align) + " |", *map(line, body)])


def _summary_lines(rows: list[dict[str, Any]], s: Settings, data_text: str) -> list[str]:
    which = (f"each run's best checkpoint by {s.metrics[0]} (evaluated every {s.eval_every} "
             "steps during training)" if s.eval_every is not None else "each run's last checkpoint")
    metrics = "; ".join(f"{m} ({_n_text(rows, m)}; "
                        f"{'higher' if _direction(m) else 'lower'} is better)" for m in s.metrics)
    return [f"Data: {data_text}. Budget: {s.budget_text()}, seed {s.seed}.",
            f"Metrics: {metrics}. Ranked by {s.metrics[0]}.",
            f"Checkpoint compared: {which}, with the generator's EMA weights where the run "
            "kept them."]


def write_markdown(path: Path, rows: list[dict[str, Any]], s: Settings, data_text: str) -> str:
    table = markdown_table(rows, s)
    text = "\n".join(["# gan-zoo compare", "", *(f"{x}  " for x in _summary_lines(
        rows, s, data_text)), "", table, "",
        "Train time is the training time each run was charged (evaluation not counted) for a "
        "time budget; for a step budget, the wall time since the run's last start. img/s is "
        "the median over the run's logged intervals. Report: report.html; every number: "
        "compare.json.", ""])
    write_bytes(path, text.encode("utf-8"))
    return table


def write_report(out: Path, rows: list[dict[str, Any]], s: Settings, data_text: str,
                 warn: Callable[[str], None]) -> Path | None:
    """`ganzoo report`'s page of the runs (comparison table, curves, grids) with the ranking on
    top; None when no run left anything to show."""
    from .visual.curves import write_atomic
    from .visual.report import collect, render_html

    reports = []
    for r in rows:
        try:
            reports.append(collect(r["run_dir"], r["candidate"]))
        except (GanZooError, OSError) as exc:
            warn(f"report: {r['candidate']} left out: {one_line(exc)}")
    if not reports:
        return None
    title = "gan-zoo compare: " + " vs ".join(r["candidate"] for r in rows)
    head, body = _table_cells(rows, s)
    e = html.escape
    cells = "".join(f"<th>{e(h)}</th>" for h in head)
    winner = (0, 2) if rows[0]["status"] == "ok" else None  # the first metric of rank 1

    def cell(i: int, j: int, text: str) -> str:
        return f'<td{" class=win" if (i, j) == winner else ""}>{e(text)}</td>'

    trs = "".join("<tr>" + "".join(cell(i, j, c) for j, c in enumerate(row)) + "</tr>"
                  for i, row in enumerate(body))
    facts = "".join(f"<p>{e(x)}</p>" for x in _summary_lines(rows, s, data_text))
    section = (f'<section id="ranking"><h2>Ranking</h2>{facts}<div class="scroll">'
               f'<table class="cmp"><tr>{cells}</tr>{trs}</table></div><p class="dim">The '
               "metrics above are the comparison's own evaluation of each chosen checkpoint; "
               "the runs' sections below show their training curves, their evaluations during "
               "training and this one (logged as compare-eval).</p></section>")
    page = render_html(reports, title).replace("<main>", "<main>" + section, 1)
    path = out / "report.html"
    write_atomic(path, page.encode("utf-8"))
    return path


# ------------------------------------------------------------------------------ the command

def run_comparison(
    out: str | os.PathLike,
    *,
    archs: Sequence[str] = (),
    recipes: Sequence[str] = (),
    data: str | os.PathLike | None = None,
    minutes: float | None = None,
    steps: int | None = None,
    budget_clock: Literal["wall", "cpu"] = "wall",
    metrics: Sequence[str] = ("fid",),
    n: int | None = None,
    options: Sequence[str] | dict[str, dict[str, Any]] = (),
    seed: int = 0,
    batch_size: int | None = None,
    precision: str | None = None,
    device: str | None = None,
    parallel: int = 1,
    eval_every: int | None = None,
    trust_weights: bool = False,
    log: Callable[[str], None] | None = None,
) -> Comparison:
    """Train every candidate for the same budget on the same data, evaluate each chosen
    checkpoint with the same metrics, and write OUT/compare.json, compare.md and report.html.

    `options` are -o assignments ("conv32.width=8") or their parsed form; each goes to every
    candidate that uses the component it names, or to the metric it names."""
    from .options import parse_assignments

    log = log or (lambda message: None)
    if not os.fspath(out).strip():
        raise UsageError("--out needs a folder name, not an empty path")
    if parallel < 1:
        raise UsageError("--parallel needs a number of processes of at least 1")
    assignments = parse_assignments(list(options)) if not isinstance(options, dict) else options
    s = Settings(out=Path(out), data=str(Path(data).resolve()) if data is not None else None,
                 minutes=minutes, steps=steps, budget_clock=budget_clock, metrics=tuple(metrics),
                 n=n, seed=seed, batch_size=batch_size, precision=precision, device=device,
                 parallel=parallel, eval_every=eval_every, trust_weights=trust_weights)
    candidates, metric_set = plan(s, archs, recipes, assignments)
    preflight_metrics(metric_set, s)
    state = open_out(s.out, candidates)
    try:
        s.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GanZooError(f"cannot create --out {shown(str(s.out))}: {exc.strerror or exc}") from None
    with _locked(s.out):
        return _run_locked(s, candidates, state, assignments, log)


def _data_text(s: Settings, candidates: list[Candidate], log: Callable[[str], None]) -> str:
    """Decode the images once for every resolution, before training (the runs then read the
    cache; a bad folder is one message here, not one failure per candidate)."""
    from .data.folders import load_dataset

    text = ""
    for res in sorted({c.resolution for c in candidates}):
        array = load_dataset(s.data, res)
        if array.skipped:
            log(f"skipped {array.skipped_summary()} in {array.source}")
        text = f"{array.source} ({len(array)} images)"
    return text


def _run_locked(s: Settings, candidates: list[Candidate], state: dict[str, Any],
                assignments: dict[str, dict[str, Any]], log: Callable[[str], None]) -> Comparison:
    from .training.rundir import RunDir

    (s.out / "runs").mkdir(exist_ok=True)
    for c in candidates:
        c.state.setdefault("kind", c.kind)
        c.state.setdefault("source", c.source)
        c.state.setdefault("config", c.config)
        c.state.setdefault("status", "pending")

    def save() -> None:
        _save_state(s.out, state, candidates)

    for c in candidates:
        if c.state["status"] == "done" and not RunDir(c.run_dir(s.out)).step_checkpoints():
            log(f"{c.name}: its run has no checkpoint any more; training it again")
            c.state["status"] = "pending"
    save()
    data_text = _data_text(s, candidates, log)
    done = [c for c in candidates if c.state["status"] == "done"]
    for c in done:
        log(f"{c.name}: trained in an earlier run of this comparison; skipped")
    todo = [c for c in candidates if c.state["status"] != "done"]
    for c in todo:
        if c.state["status"] == "failed":
            log(f"{c.name}: failed before ({c.state.get('reason')}); trying again")
    if todo:
        if s.parallel > 1 and len(todo) > 1:
            _train_parallel(todo, s, save, log)
        else:
            _train_sequential(todo, s, save, log)
    records: dict[str, dict[str, Any]] = {}
    failures: dict[str, str] = {}
    for c in candidates:
        if c.state["status"] != "done":
            failures[c.name] = c.state.get("reason") or c.state["status"]
            continue
        try:
            records[c.name] = evaluate_candidate(c, s, assignments, log)
        except Exception as exc:  # noqa: BLE001 -- one candidate's evaluation, not the others'
            failures[c.name] = f"evaluation: {one_line(exc)}"
        save()
    rows = build_rows(candidates, s, records, failures)
    doc = {"gan_zoo_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
           "data": s.data, "data_text": data_text,
           "budget": ({"steps": s.steps} if s.steps is not None else
                      {"minutes": s.minutes, "clock": s.budget_clock}),
           "seed": s.seed, "parallel": s.parallel, "eval_every": s.eval_every,
           "metrics": list(s.metrics), "ranked_by": s.metrics[0], "candidates": rows}
    json_path = s.out / "compare.json"
    write_bytes(json_path, (json.dumps(doc, indent=1) + "\n").encode("utf-8"))
    md_path = s.out / "compare.md"
    table = write_markdown(md_path, rows, s, data_text)
    report = write_report(s.out, rows, s, data_text, log)
    return Comparison(rows, json_path, md_path, report, table)


@click.command("compare")
@click.option("--data", type=click.Path(), help="Folder of images every candidate trains on "
              "(default: the built-in shapes).")
@click.option("--arch", "archs", multiple=True, metavar="NAME",
              help="A candidate: this architecture with the default training settings "
              "(`ganzoo list arch`); repeatable.")
@click.option("--recipe", "recipes", multiple=True, metavar="RECIPE",
              help="A candidate: this recipe, by name (`ganzoo recipes`) or TOML file, its run length "
              "replaced by the shared budget; repeatable.")
@click.option("--minutes", type=click.FloatRange(0, min_open=True),
              help="Each candidate's budget in minutes of training time (evaluation not counted).")
@click.option("--budget-clock", type=click.Choice(["wall", "cpu"]), default="wall",
              show_default=True, help="What --minutes counts: wall-clock time, or each training "
              "process's CPU time (fairer on a busy machine and with --parallel).")
@click.option("--steps", type=click.IntRange(1), help="Each candidate's length in steps instead "
              "of --minutes (equal steps are not equal cost: for quick checks and tests).")
@click.option("-m", "--metric", "metric_names", multiple=True, metavar="NAME",
              help="Metric to evaluate each chosen checkpoint with (`ganzoo list metric`); "
              "repeatable; the first one ranks. Default: fid.")
@click.option("-n", "--n", "n", type=click.IntRange(2, 1_000_000),
              help="Generated samples for every metric with an `n` option (default: each "
              "metric's own, 1000 for fid); the same N for every candidate.")
@click.option("-o", "--option", "option_items", multiple=True, metavar="COMPONENT.KEY=VALUE",
              help="Option for every candidate that uses COMPONENT, or for a --metric, e.g. "
              "-o conv64.width=32 -o fid.max_real=1000; repeatable.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True,
              help="Seed of every candidate's training and of the evaluation's samples.")
@click.option("--batch-size", type=click.IntRange(1, 65536),
              help="Batch size of every candidate (default: each candidate's own).")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
              help="Training precision of every candidate (default: each candidate's own, auto).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]),
              help="Device of every candidate and of the evaluation (default auto).")
@click.option("--parallel", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Train this many candidates at a time, each in its own process with its "
              "share of the CPU threads (docs/zoo.md says when that is fair).")
@click.option("--eval-every", type=click.IntRange(1),
              help="Each run evaluates the first --metric every N steps and keeps its best "
              "checkpoint, which is then compared (default: each run's last checkpoint).")
@click.option("--trust-weights", is_flag=True,
              help="Let the metrics load an Inception file that is not a known FID export "
              "(it can run code); command line only.")
@click.option("--out", type=click.Path(), required=True,
              help="Folder for runs/, compare.json, compare.md and report.html: new, empty, or "
              "this comparison's own (then finished candidates are skipped).")
@click.option("-q", "--quiet", is_flag=True, help="Only the ranking table.")
def compare_command(archs: tuple[str, ...], recipes: tuple[str, ...], metric_names: tuple[str, ...],
                    option_items: tuple[str, ...], quiet: bool, out: str, **flags: Any) -> None:
    """Train several architectures or recipes for the same budget on the same images, evaluate
    each one's best (or last) checkpoint with the same metrics at the same N, and rank them.

    Writes OUT/runs/NAME (one run per candidate), OUT/compare.json, OUT/compare.md and
    OUT/report.html, and prints the ranking. A candidate that fails is a row with its reason.
    Run the same command again to continue an interrupted comparison."""
    from .util.textsafe import message_block

    echo = (lambda m: None) if quiet else (lambda m: click.echo(message_block(m), err=True))
    result = run_comparison(out, archs=archs, recipes=recipes, metrics=metric_names or ("fid",),
                            options=option_items, log=echo, **flags)
    click.echo(escape(result.table, keep_newlines=True))
    echo(f"wrote {result.json_path}, {result.md_path}"
         + (f" and {result.report_path}" if result.report_path else ""))
