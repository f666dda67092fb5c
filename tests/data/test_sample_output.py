"""Sampling to disk (gan_zoo.data.sample_output): the precision choice, batch-size checks, the
same images in every output form, and the PNG thread pool: its errors become one message with
no temporary folder left, an interrupt leaves nothing, and at most a bounded number of chunks
wait to be encoded however many images are asked for. No timing assertions: the pool's bound is
shown with a writer that blocks until the producer has to wait."""

from __future__ import annotations

import errno
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn

from gan_zoo import api
from gan_zoo.data import sample_output
from gan_zoo.data.images import to_uint8
from gan_zoo.data.sample_output import (
    PENDING_PER_WORKER,
    generate,
    sample_precision,
    sample_to,
    write_samples,
)
from gan_zoo.errors import GanZooError, UsageError
from gan_zoo.interfaces import Generator


class TinyGenerator(Generator):
    """A small conv generator (8 px, 3 channels) with fixed random weights: fast on any CPU."""

    def __init__(self) -> None:
        super().__init__()
        self.latent_dim, self.resolution, self.channels = 16, 8, 3
        torch.manual_seed(0)
        self.fc = nn.Linear(16, 32 * 4 * 4)
        self.up = nn.ConvTranspose2d(32, 3, 4, 2, 1)

    def forward(self, z: Tensor) -> Tensor:
        return torch.tanh(self.up(torch.relu(self.fc(z)).view(-1, 32, 4, 4)))


@pytest.fixture
def gen() -> TinyGenerator:
    return TinyGenerator().eval()


def expected(generator: Generator, n: int, seed: int, precision: str, batch: int) -> np.ndarray:
    return np.concatenate([to_uint8(b) for b in generate(generator, n, seed, batch, "cpu",
                                                          precision)])


def leftovers(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*"))


# ------------------------------------------------------------------------------ precision

def test_auto_picks_bf16_only_where_the_hardware_runs_it_fast(monkeypatch):
    monkeypatch.setattr(sample_output.hardware, "bf16_fast", lambda d: (True, "this CPU has AMX"))
    assert sample_precision("auto", "cpu") == ("bf16", "auto: this CPU has AMX")
    monkeypatch.setattr(sample_output.hardware, "bf16_fast", lambda d: (False, "no bf16 units"))
    assert sample_precision("auto", "cpu") == ("fp32", "auto: no bf16 units")
    # a precision the caller names is kept, whatever the hardware
    assert sample_precision("bf16", "cpu") == ("bf16", "as requested")
    assert sample_precision("fp32", "cpu") == ("fp32", "as requested")


@pytest.mark.parametrize("bad", ["fp16", "BF16", "", "\x1b[31mred"])
def test_an_unknown_precision_is_one_message_naming_the_choices(gen, tmp_path, bad):
    with pytest.raises(UsageError, match="use one of auto, fp32, bf16") as info:
        sample_to(gen, 4, tmp_path / "a.npy", precision=bad)
    assert "\x1b" not in str(info.value)
    assert not leftovers(tmp_path)


def test_bf16_runs_the_generator_in_bf16_and_hands_back_float32(gen):
    seen: list[torch.dtype] = []
    gen.up.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    batch = next(generate(gen, 4, 0, 4, "cpu", "bf16"))
    assert seen == [torch.bfloat16] and batch.dtype == torch.float32
    assert not torch.is_autocast_enabled("cpu")  # autocast does not leak into the caller


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "64"])
def test_a_bad_batch_size_is_one_message(gen, tmp_path, bad):
    with pytest.raises(UsageError, match="batch size must be a whole number of at least 1"):
        sample_to(gen, 4, tmp_path / "f", batch_size=bad)
    assert not leftovers(tmp_path)


# ------------------------------------------------------------------------------ the same images

@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_every_form_holds_the_same_images(gen, tmp_path, precision):
    n, seed, batch = 23, 7, 5  # a last batch that is not full
    want = expected(gen, n, seed, precision, batch)
    assert np.array_equal(to_uint8(api.sample(gen, n, seed, batch, precision=precision)), want)
    sample_to(gen, n, tmp_path / "a.npy", seed, batch, precision=precision)
    sample_to(gen, n, tmp_path / "f", seed, batch, precision=precision)
    sample_to(gen, n, tmp_path / "g.png", seed, batch, precision=precision)
    assert np.array_equal(np.load(tmp_path / "a.npy"), want)
    pngs = sorted((tmp_path / "f").iterdir())
    assert [p.name for p in pngs] == [f"{i:06d}.png" for i in range(n)]
    assert np.array_equal(np.stack([np.asarray(Image.open(p)) for p in pngs]), want)
    # the grid is the one drawn from those images
    write_samples([torch.from_numpy(want).permute(0, 3, 1, 2).float() / 127.5 - 1], n,
                  tmp_path / "ref.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "g.png")),
                          np.asarray(Image.open(tmp_path / "ref.png")))


def test_bf16_images_are_close_to_fp32_and_repeatable(gen):
    fp32 = expected(gen, 32, 1, "fp32", 8).astype(int)
    bf16 = expected(gen, 32, 1, "bf16", 8).astype(int)
    assert np.array_equal(bf16, expected(gen, 32, 1, "bf16", 8))
    assert np.abs(bf16 - fp32).max() <= 2


# ------------------------------------------------------------------------------ the PNG pool

@pytest.mark.parametrize(("code", "text"), [(errno.ENOSPC, "No space left on device"),
                                            (errno.EACCES, "Permission denied")])
def test_a_pool_error_is_one_message_and_leaves_no_temporary_folder(gen, tmp_path, monkeypatch,
                                                                    code, text):
    real = sample_output._save_pngs

    def failing(folder: Path, first: int, images: np.ndarray) -> None:
        if first >= 8:  # some images are written first, as on a disk that fills up
            raise OSError(code, text)
        real(folder, first, images)

    monkeypatch.setattr(sample_output, "_save_pngs", failing)
    with pytest.raises(GanZooError, match=f"cannot write --out .*: {text}$"):
        sample_to(gen, 40, tmp_path / "f", batch_size=4)
    assert not leftovers(tmp_path)


class GatedWriter:
    """Encodes nothing until the producer first has to wait for a chunk, then everything:
    shows how far ahead of the encoders the producer can get."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, workers: int):
        self.gate = threading.Event()
        self.drawn = 0
        self.at_first_wait: tuple[int, int] | None = None  # (chunks pending, batches drawn)
        self.written: list[int] = []
        self.real = sample_output._save_pngs
        monkeypatch.setattr(sample_output, "png_workers", lambda: workers)
        monkeypatch.setattr(sample_output, "_save_pngs", self.save)
        finish = sample_output._Folder._finish_oldest

        def finish_oldest(folder: sample_output._Folder) -> None:
            if self.at_first_wait is None:
                self.at_first_wait = (len(folder.pending), self.drawn)
            self.gate.set()
            finish(folder)

        monkeypatch.setattr(sample_output._Folder, "_finish_oldest", finish_oldest)

    def save(self, folder: Path, first: int, images: np.ndarray) -> None:
        if not self.gate.wait(timeout=60):  # a safety net only: the test never waits this long
            raise AssertionError("the producer never waited for the encoders")
        self.real(folder, first, images)
        self.written.extend(range(first, first + len(images)))

    def batches(self, count: int, size: int):
        for _ in range(count):
            self.drawn += 1
            yield torch.zeros(size, 3, 8, 8)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_the_producer_waits_once_the_pending_chunks_reach_their_bound(tmp_path, monkeypatch,
                                                                      workers):
    writer = GatedWriter(monkeypatch, workers)
    count, size = 50, 6
    write_samples(writer.batches(count, size), count * size, tmp_path / "f")
    bound = PENDING_PER_WORKER * workers
    # Each batch is cut into `workers` chunks: the first wait comes with bound + 1 queued,
    # after bound / workers + 1 batches of 50, and every image was written exactly once.
    assert writer.at_first_wait == (bound + 1, bound // workers + 1)
    assert sorted(writer.written) == list(range(count * size))


def test_an_interrupt_while_chunks_are_encoded_leaves_nothing(tmp_path, monkeypatch):
    writer = GatedWriter(monkeypatch, 2)

    def batches():
        yield from writer.batches(2, 4)  # queued, not yet encoded
        writer.gate.set()
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_samples(batches(), 40, tmp_path / "f")
    assert not leftovers(tmp_path)
