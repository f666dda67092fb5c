"""What a checkpoint holds: a trainer's state packed as tensors and JSON metadata.

gan_zoo.training.restore is the reverse: it checks a checkpoint's values against the run and hands them
back (restore.Restored) for Trainer.load_state to apply.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .. import __version__
from ..plugins import component_record, get_registry, plugin_versions
from . import checkpoint as ckpt

if TYPE_CHECKING:
    from .trainer import Trainer


def pack(trainer: Trainer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The tensors (weights, optimizer moments, random states, fixed noise) and metadata
    (config, components and their plugins, counters, schedules) a resume needs."""
    t, c = trainer, trainer.c
    tensors: dict[str, Tensor] = {}
    # The saved EMA generator samples as it did in training: its batch-norm statistics measured.
    G_ema = t.ema.calibrated(t.step) if t.ema is not None else None
    for prefix, module in (("G", t.G), ("D", t.D), ("G_ema", G_ema)):
        if module is not None:
            tensors.update({f"{prefix}.{k}": v for k, v in module.state_dict().items()})
    og, groups_g = ckpt.flatten_optimizer(t.opt_g, "opt_g")
    od, groups_d = ckpt.flatten_optimizer(t.opt_d, "opt_d")
    tensors.update(og)
    tensors.update(od)
    sampler = t.sampler.state_dict()
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.sampler"] = sampler.pop("rng")
    if t.device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(t.device)
    tensors["fixed_z"] = t.fixed_z
    entry = get_registry().entry("arch", c.arch.name)
    meta = {
        "gan_zoo_version": __version__,
        "step": t.step,
        "total_steps": t.total_steps,
        "config": t.config.model_dump(mode="json"),
        "precision": t.precision,  # what config.precision "auto" resolved to on this machine
        "arch": {
            "name": c.arch.name,
            "options": c.arch.options.model_dump(mode="json"),
            "plugin": entry.plugin,
            "distribution": entry.distribution,
            "version": entry.version,
            "resolution": c.arch.resolution,
        },
        "plugins": plugin_versions(),
        # Who provides every component in use, so a resume without the plugin names it.
        "components": [component_record(kind, comp.name) for kind, group in (
            ("loss", [c.loss]), ("schedule", c.schedules), ("augment", c.augments))
            for comp in group],
        # A conditional run's classes (names in label order, images per class); None otherwise.
        "classes": t.classes.to_meta() if t.classes is not None else None,
        "has_ema": G_ema is not None,
        "sampler": sampler,
        "opt_g_groups": groups_g,
        "opt_d_groups": groups_d,
        "schedules": {s.name: s.state_dict() for s in c.schedules},
        "last_stats": t.last_stats,
        "lr_factor": t.lr_factor,
        "rollbacks": t.rollbacks,
        "world_size": t.dist.world_size,
        "scaler": t.scaler.state_dict() if t.scaler.is_enabled() else None,
        "budget": t.budget.state() if t.budget is not None else None,  # --minutes spent so far
        "created": time.time(),
    }
    return tensors, meta
