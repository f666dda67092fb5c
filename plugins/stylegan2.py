"""The stylegan2 architecture family (being written; registers nothing yet)."""

from __future__ import annotations

import gan_zoo


@gan_zoo.hookimpl
def register_architectures(register):
    pass
