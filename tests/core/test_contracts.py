"""Contract tests over the registry: every registered component of every kind, built-in or
installed, keeps the promises of docs/plugins.md (checks in gan_zoo.testing).

The cases are read from the registry when the tests are collected, so a component added by any
plugin, including a pip-installed third-party package, is checked without editing this file.
"""

from __future__ import annotations

import pytest

from gan_zoo import testing
from gan_zoo.plugins import plugin_system

CASES = testing.contract_cases()
IDS = [f"{kind}:{name}" for kind, name in CASES]


def test_every_kind_has_a_registered_component_to_check():
    kinds = {kind for kind, _ in CASES}
    assert {"arch", "loss"} <= kinds, "the built-in architectures and losses must be registered"


def test_no_builtin_plugin_failed_to_load():
    infos = plugin_system().infos
    assert {n: i.error for n, i in infos.items() if i.builtin and i.error} == {}
    assert {i.module for i in infos.values() if i.builtin} >= {"gan_zoo_plugins.conv",
                                                              "gan_zoo_plugins.losses"}


@pytest.mark.parametrize(("kind", "name"), CASES, ids=IDS)
def test_options_contract(kind, name):
    testing.check_options(plugin_system().registry.get(kind, name))


@pytest.mark.parametrize(("kind", "name"), [c for c in CASES if c[0] != "arch"],
                         ids=[i for i, c in zip(IDS, CASES, strict=True) if c[0] != "arch"])
def test_component_contract(kind, name):
    testing.check_component(kind, name)


@pytest.mark.parametrize(("kind", "name"), [c for c in CASES if c[0] == "arch"],
                         ids=[i for i, c in zip(IDS, CASES, strict=True) if c[0] == "arch"])
def test_architecture_contract(kind, name):
    """Shape and range at its resolution, one training step, a bit-exact checkpoint round trip."""
    testing.check_component(kind, name)


@pytest.mark.parametrize("options", [{"width": 8, "latent_dim": 16, "d_norm": "spectral"}],
                         ids=["conv32-spectral"])
def test_architecture_contract_with_options(options):
    """Non-default options take other code paths (no batch norm in D: the G step sees D alone;
    spectral-norm buffers); resume must stay bit-exact there too."""
    testing.check_component("arch", "conv32", options)
