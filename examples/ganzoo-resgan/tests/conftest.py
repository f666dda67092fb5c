"""Make the plugin's components available by name, installed or not."""

from __future__ import annotations

import ganzoo_resgan
import pytest

from gan_zoo.plugins import get_registry

# Gives the `ganzoo_plugin` fixture (register a plugin object for one test).
pytest_plugins = ["gan_zoo.testing"]


@pytest.fixture(scope="session", autouse=True)
def resgan_registered():
    """When the package is pip-installed gan-zoo finds it by its entry point; when the tests run
    from a source checkout (PYTHONPATH=src), register it in-process under the same name."""
    from gan_zoo.testing import registered_plugin  # after pytest_plugins, for assert rewriting

    if "resgan" in get_registry().names("arch"):
        yield get_registry().entry("arch", "resgan").plugin
        return
    with registered_plugin(ganzoo_resgan, name="resgan", distribution="ganzoo-resgan",
                           version=ganzoo_resgan.__version__) as info:
        yield info.name
