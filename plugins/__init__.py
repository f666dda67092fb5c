"""gan-zoo's built-in plugins (import name ``gan_zoo_plugins``).

Each module registers through the ``gan_zoo`` entry-point group in pyproject.toml, exactly as a
third-party plugin package would; the engine knows none of them by name.

Why the folder is ``plugins/`` but the import name is ``gan_zoo_plugins`` (pyproject.toml's
``package-dir``): a top-level package named ``plugins`` would collide with any other project's
``plugins`` module in site-packages. The folder name shows the repository's shape (the engine in
``gan_zoo/``, the components it ships in ``plugins/``); the import name is unique and says whose
plugins they are. The entry points name ``gan_zoo_plugins.conv`` and the rest exactly like a
third-party package names its own module.
"""
