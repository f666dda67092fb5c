"""The training engine: the Trainer and its loop, configuration and assembly, knobs, checkpoints
and the run directory, EMA, the non-finite guard, distributed training and recipes.

Nothing is imported here, so `ganzoo recipes` and the config readers stay free of PyTorch."""
