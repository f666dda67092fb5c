"""A short conditional run on the built-in shapes draws the class it is asked for more often
than chance, judged by a small kind classifier trained on the shapes themselves
(benchmarks.shape_kinds). The run is ACGAN + projection with a strong classifier weight: the
setting in which 500 steps of a tiny conv32 already shape the class (docs/conditional.md has the
measured runs); chance is 1/3."""

from __future__ import annotations

import torch

from benchmarks.shape_kinds import classify, train_kind_classifier
from gan_zoo import api

STEPS = 500
SAMPLES = 300


def test_a_short_conditional_run_on_the_shapes_draws_the_asked_class(tmp_path):
    classifier, held_out = train_kind_classifier(32, steps=150)
    assert held_out > 0.9  # the judge itself knows the kinds
    config = {
        "arch": "conv32", "conditional": True, "steps": STEPS, "batch_size": 32, "seed": 0,
        "precision": "fp32", "loss": "hinge", "lr_g": 4e-4, "lr_d": 4e-4,
        "beta1_g": 0.0, "beta1_d": 0.0, "beta2_g": 0.9, "beta2_d": 0.9,
        "sample_every": 10_000, "checkpoint_every": 10_000,
        "options": {"conv32": {"width": 16, "latent_dim": 32, "d_norm": "spectral",
                               "d_condition": "both", "acgan_weight": 5.0}},
    }
    api.train(config, out=tmp_path / "run")
    G, _ = api.load_generator(tmp_path / "run")
    assert G.class_names == ("disc", "square", "triangle")
    images = api.sample(G, SAMPLES, seed=1, classes=[0, 1, 2])
    asked = torch.arange(SAMPLES) % 3
    drawn = classify(classifier, images)
    accuracy = (drawn == asked).float().mean().item()
    # Chance is 1/3; with 300 samples, 0.42 is more than three standard deviations above it.
    assert accuracy > 0.42, (accuracy, torch.bincount(drawn, minlength=3).tolist())
