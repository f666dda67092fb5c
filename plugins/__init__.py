"""gan-zoo's built-in plugins (import name ``gan_zoo_plugins``).

Each module registers through the ``gan_zoo`` entry-point group in pyproject.toml, exactly as a
third-party plugin package would; the engine knows none of them by name.
"""
