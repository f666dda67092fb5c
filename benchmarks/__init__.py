"""Benchmarks: the gan-zoo engine against a plain-PyTorch reference loop (`python -m benchmarks`)."""
