"""The five component kinds, in a module without heavy imports (the CLI reads them at start)."""

from __future__ import annotations

KINDS: tuple[str, ...] = ("arch", "loss", "schedule", "augment", "metric")
KIND_TITLES = {
    "arch": "architecture",
    "loss": "loss",
    "schedule": "schedule",
    "augment": "augmentation",
    "metric": "metric",
}
