"""Evaluation during training: ``eval_every``, ``metric``, ``early_stop_patience``.

Every ``eval_every`` steps (and at the last step) the metric is computed on the sampling
generator (the EMA copy when on) against the training images as decoded for training, and
logged as ``{"event": "eval", "step": S, "<metric>": v, ...}`` in metrics.jsonl. An
improvement writes ``checkpoints/best.safetensors`` (a full checkpoint, with ``best`` in its
metadata); ``early_stop_patience`` evaluations in a row without improvement stop the run.
On resume the best value and the patience count are rebuilt from the (rewound) metrics log.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError
from ..training import checkpoint as ckpt
from . import build_metric, evaluate
from .core import ArraySource, EvalContext

if TYPE_CHECKING:
    from ..interfaces import Metric
    from ..training.trainer import Callbacks, Trainer


# The keys an evaluation record has beside the metric's values.
RECORD_KEYS = ("step", "event", "metric", "best", "eval_seconds", "eval_cpu_seconds")


class Evaluator:
    """Runs one metric on a trainer's generator and keeps the best checkpoint."""

    def __init__(self, trainer: Trainer, metric: Metric, context: EvalContext | None = None):
        cfg = trainer.config
        self.trainer, self.metric = trainer, metric
        self.every = int(cfg.eval_every or 0)
        self.patience = cfg.early_stop_patience
        # Trust in unknown Inception weights comes from this process's command line (train
        # --trust-weights, set by api.prepare_training), never from the run's saved config.
        self.context = context or EvalContext(
            trainer.sampling_generator(), ArraySource(trainer.data.images, trainer.data.source),
            device=trainer.device, seed=cfg.seed, log=trainer.notify,
            trust_weights=getattr(trainer, "trust_weights", False))
        self.best: float | None = None
        self.best_step: int | None = None
        self.stale = 0  # evaluations since the last improvement
        self.last_eval_step: int | None = None
        self._restore()

    # ---------------------------------------------------------------- state
    def _restore(self) -> None:
        """Best value and patience count from earlier evaluations of this run (resume)."""
        run = self.trainer.run
        if run is None:
            return
        for record in run.read_metrics():
            if record.get("event") == "eval" and isinstance(record.get(self.metric.name), int | float):
                self._account(float(record[self.metric.name]), int(record["step"]))

    def improved(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        return value > self.best if self.metric.higher_is_better else value < self.best

    def _account(self, value: float, step: int) -> bool:
        better = self.improved(value)
        if better:
            self.best, self.best_step, self.stale = value, step, 0
        else:
            self.stale += 1
        return better

    # ---------------------------------------------------------------- evaluation
    def evaluate(self) -> dict[str, Any]:
        trainer, name = self.trainer, self.metric.name
        self.context.new_samples(trainer.sampling_generator())  # real features stay
        t0, cpu0 = time.perf_counter(), time.process_time()
        # One message naming the metric when a plugin's metric raises or returns junk.
        values = evaluate([self.metric], self.context, taken=RECORD_KEYS, prepare=False)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        value = float(values[name])
        better = self._account(value, trainer.step)
        record = {"step": trainer.step, "event": "eval", "metric": name, **values,
                  "best": better, "eval_seconds": round(seconds, 3),
                  "eval_cpu_seconds": round(cpu, 3)}  # all threads: the cost on a busy machine
        if trainer.run is not None:
            trainer.run.log(record)
            if better:
                self._save_best(value)
        trainer.notify(f"step {trainer.step}: {name} {value:.4g}"
                       + (" (best so far)" if better else
                          f" (best {self.best:.4g} at step {self.best_step})") + f" in {seconds:.1f}s")
        self.last_eval_step = trainer.step
        if self.patience is not None and self.stale >= self.patience and trainer.stop_reason is None:
            trainer.stop_reason = (
                f"early stop: {name} did not improve for {self.stale} evaluations "
                f"(best {self.best:.4g} at step {self.best_step}, kept in "
                f"{trainer.run.best_path if trainer.run else 'memory'})")
        return record

    def _save_best(self, value: float) -> None:
        trainer = self.trainer
        tensors, meta = trainer.state_tensors()
        meta["best"] = {"metric": self.metric.name, "value": value, "step": trainer.step,
                        "higher_is_better": self.metric.higher_is_better}
        try:
            ckpt.save(trainer.run.best_path, tensors, meta)
        except OSError as exc:
            raise CheckpointError(f"cannot write the best checkpoint {str(trainer.run.best_path)!r}: "
                                  f"{exc.strerror or exc}") from None

    # ---------------------------------------------------------------- callbacks
    def on_step(self, trainer: Trainer, stats: dict[str, float]) -> None:
        if trainer.step % self.every == 0:
            self.evaluate()

    def on_end(self, trainer: Trainer) -> None:
        # The final weights are evaluated too, unless a signal asked to stop quickly.
        if trainer.step > 0 and self.last_eval_step != trainer.step and \
                trainer.stop_reason not in ("SIGINT", "SIGTERM"):
            self.evaluate()


def attach(trainer: Trainer, callbacks: Callbacks) -> None:
    """CALLBACK_FACTORIES entry: evaluation for runs with eval_every set."""
    cfg = trainer.config
    if cfg.eval_every is None:
        return
    metric = build_metric(cfg.metric, cfg.options.get(cfg.metric))
    evaluator = Evaluator(trainer, metric)
    metric.prepare(evaluator.context)  # missing weights fail now, not after the first N steps
    callbacks.on_step.append(evaluator.on_step)
    callbacks.on_end.append(evaluator.on_end)
    trainer.evaluator = evaluator  # type: ignore[attr-defined]
