"""Sampling tools (issue 18): truncation (`ganzoo sample --truncation`, api.sample(truncation=))
and latent walks (`--interpolate K`, api.interpolate): the truncated normal, the mapping path
of a StyleGAN2 generator, slerp, the GIF (and MP4 through a stand-in ffmpeg), and the command
line's messages. Tiny generators only: every test runs in about a second."""

from __future__ import annotations

import json
import math
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor

from gan_zoo import api, sampling
from gan_zoo.data import sample_output
from gan_zoo.data.images import to_uint8
from gan_zoo.errors import GanZooError, UsageError
from gan_zoo.interfaces import Generator
from gan_zoo.training.assembly import build

from .data.test_sample_output import TinyGenerator
from .reliability.helpers import tiny_config, tiny_data
from .reliability.test_hostile_output import _invoke as one_message_cli


def rng(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def invoke(*args: object) -> tuple[int, str]:
    """The CLI in-process: exit code and output; a traceback or more than one `Error:` line
    fails the test."""
    return one_message_cli(*(str(a) for a in args))


def gif_frames(path: Path) -> tuple[np.ndarray, dict]:
    with Image.open(path) as im:
        info = dict(im.info)
        frames = []
        for i in range(im.n_frames):
            im.seek(i)
            frames.append(np.asarray(im.convert("RGB")))
    return np.stack(frames), info


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def gen() -> TinyGenerator:
    return TinyGenerator().eval()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trained conv32 run (one checkpoint) to sample from."""
    out = tmp_path_factory.mktemp("tools") / "run"
    api.train(tiny_config(steps=1, checkpoint_every=1), out=out, data=tiny_data(8))
    return out


def tiny_stylegan2(seed: int = 0) -> Generator:
    """stylegan2-32 at contract width, with a non-zero w_avg (a fresh one tracks zeros)."""
    torch.manual_seed(seed)
    arch = build("arch", "stylegan2-32", {"width": 4, "d_width": 4, "max_channels": 16,
                                          "latent_dim": 8, "w_dim": 8})
    G = arch.build_generator().eval()
    with torch.no_grad():
        G.w_avg.normal_()
    return G


# ------------------------------------------------------------------------ truncated normal

def test_psi_one_is_exactly_the_plain_normal_draw():
    assert torch.equal(sampling.truncated_normal(8, 24, 1.0, generator=rng(3)),
                       torch.randn(8, 24, generator=rng(3)))


@pytest.mark.parametrize("psi", [0.95, 0.5, 0.1, 1e-6])
def test_truncated_normal_bounds_determinism_and_the_components_it_keeps(psi):
    z = sampling.truncated_normal(64, 32, psi, generator=rng(1))
    assert z.shape == (64, 32) and z.dtype == torch.float32
    assert z.abs().max() <= 2 * psi
    assert torch.equal(z, sampling.truncated_normal(64, 32, psi, generator=rng(1)))
    assert not torch.equal(z, sampling.truncated_normal(64, 32, psi, generator=rng(2)))
    # Components of the plain draw inside the bound are kept; the others were redrawn.
    plain = torch.randn(64, 32, generator=rng(1))
    inside = plain.abs() <= 2 * psi
    assert torch.equal(z[inside], plain[inside])
    assert not torch.equal(z[~inside], plain[~inside])


def test_truncated_normal_has_the_truncated_distribution():
    b = 1.0  # psi 0.5
    z = sampling.truncated_normal(2000, 100, 0.5, generator=rng(0))
    phi = math.exp(-b * b / 2) / math.sqrt(2 * math.pi)
    mass = math.erf(b / math.sqrt(2))
    assert abs(z.mean().item()) < 0.005
    assert abs(z.var().item() - (1 - 2 * b * phi / mass)) < 0.005  # 0.291
    # the share within 0.5 of the mean: P(|z| < 0.5) / P(|z| < 1) = 0.561
    share = (z.abs() < 0.5).float().mean().item()
    assert abs(share - math.erf(0.5 / math.sqrt(2)) / mass) < 0.005


def test_psi_zero_is_the_mean_latent_and_tiny_psi_takes_few_vectorized_rounds(monkeypatch):
    assert torch.equal(sampling.truncated_normal(4, 8, 0.0, generator=rng()).abs(),
                       torch.zeros(4, 8))
    calls = []
    real_rand = torch.rand
    monkeypatch.setattr(torch, "rand", lambda *a, **k: calls.append(a) or real_rand(*a, **k))
    for psi in (0.5, 1e-9):
        calls.clear()
        z = sampling.truncated_normal(64, 512, psi, generator=rng())
        assert z.abs().max() <= 2 * psi
        # two draws per round, each for every component still outside: not one per element
        assert 0 < len(calls) <= 60, len(calls)


@pytest.mark.parametrize("bad", [0, 0.0, -0.5, 1.0001, 2, float("nan"), float("inf"), True,
                                 "0.5", None])
def test_a_psi_outside_zero_one_is_one_usage_error(bad):
    with pytest.raises(UsageError, match=r"--truncation .*use a number in \(0, 1\]"):
        sampling.check_psi(bad)
    assert sampling.check_psi(1) == 1.0 and sampling.check_psi(0.25) == 0.25
    assert sampling.check_psi(0, allow_zero=True) == 0.0


# ------------------------------------------------------------------------ which truncation

def test_the_latent_path_truncates_z_and_calls_plain_g(gen):
    assert Generator.truncation == "latent" and gen.truncation == "latent"
    z = sampling.draw_latents(gen, 16, 0.5, rng(4))
    assert torch.equal(z, sampling.truncated_normal(16, gen.latent_dim, 0.5, generator=rng(4)))
    with torch.no_grad():
        assert torch.equal(sampling.images_for(gen, z, 0.5), gen(z))
        # api.sample with truncation: the first batch's latents are exactly these
        assert torch.equal(api.sample(gen, 16, seed=4, truncation=0.5), gen(z))
        assert torch.equal(api.sample(gen, 16, seed=4, truncation=1.0), api.sample(gen, 16, seed=4))


def test_variety_shrinks_as_psi_shrinks_for_a_latent_generator(gen):
    spread = [api.sample(gen, 256, seed=0, truncation=psi).std(0).mean().item()
              for psi in (1.0, 0.7, 0.5, 0.3, 0.1)]
    assert all(a > b for a, b in zip(spread, spread[1:], strict=False)), spread
    assert spread[-1] < 0.5 * spread[0], spread


def test_the_mapping_path_passes_truncation_psi_to_stylegan2():
    G = tiny_stylegan2()
    assert G.truncation == "mapping"
    z = G.sample_latent(6, generator=rng(5))
    with torch.no_grad():
        plain = G(z)
        assert torch.equal(sampling.images_for(G, z, 1.0), plain)
        half = sampling.images_for(G, z, 0.5)
        assert torch.equal(half, G(z, truncation_psi=0.5)) and not torch.equal(half, plain)
        zero = sampling.images_for(G, z, 0.0)  # every w is w_avg: one image
        assert torch.allclose(zero, zero[:1].expand_as(zero), atol=1e-6)
        assert (plain - plain[:1]).abs().amax() > 0.01  # while the plain images differ
        # z stays the plain draw (the generator truncates w itself)
        assert torch.equal(sampling.draw_latents(G, 6, 0.5, rng(5)), z)
        assert torch.equal(api.sample(G, 6, seed=5, truncation=0.5), half)


def test_a_latent_generator_with_its_own_prior_is_refused_below_one(gen):
    class UniformPrior(TinyGenerator):
        def sample_latent(self, n, *, generator=None, device=None):
            return torch.rand(n, self.latent_dim, generator=generator, device=device)

    other = UniformPrior().eval()
    assert api.sample(other, 2, truncation=1.0).shape == (2, 3, 8, 8)
    with pytest.raises(UsageError, match="overrides sample_latent.*truncation = 'mapping'"):
        api.sample(other, 2, truncation=0.5)


def test_an_unknown_truncation_declaration_is_one_message(gen):
    class Odd(TinyGenerator):
        truncation = "w-space"

    with pytest.raises(UsageError, match="declares truncation = 'w-space'"):
        api.sample(Odd().eval(), 2, truncation=0.5)


def test_labels_are_passed_as_y_only_when_given():
    seen: list[dict] = []

    class Recording(TinyGenerator):
        def forward(self, z: Tensor, **kwargs) -> Tensor:
            seen.append(kwargs)
            return super().forward(z)

    G = Recording().eval()
    z = torch.randn(3, 16)
    labels = torch.tensor([0, 1, 2])
    sampling.images_for(G, z, 0.5)
    sampling.images_for(G, z, 0.5, y=labels)
    assert seen[0] == {} and list(seen[1]) == ["y"] and seen[1]["y"] is labels


# ------------------------------------------------------------------------ slerp and walks

def test_slerp_endpoints_norms_and_great_circle():
    a, b = torch.randn(32, generator=rng(1)) * 3, torch.randn(32, generator=rng(2))
    assert torch.equal(sampling.slerp(a, b, 0.0), a) and torch.equal(sampling.slerp(a, b, 1.0), b)
    t = torch.linspace(0, 1, 11)
    path = sampling.slerp(a.expand(11, -1), b.expand(11, -1), t)
    assert path.shape == (11, 32)
    torch.testing.assert_close(path.norm(dim=1), (1 - t) * a.norm() + t * b.norm())
    # the direction moves at constant angular speed along the great circle
    a64, p64 = a.double(), path.double()
    omega = torch.arccos(torch.dot(a64, b.double()) / (a64.norm() * b.double().norm()))
    angle = torch.arccos((p64 @ a64 / (p64.norm(dim=1) * a64.norm())).clamp(-1, 1))
    torch.testing.assert_close(angle, t.double() * omega, atol=1e-3, rtol=0)
    # equal-norm orthogonal vectors: the midpoint keeps the norm (a straight line would not)
    x, y = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 2.0])
    torch.testing.assert_close(sampling.slerp(x, y, 0.5), torch.tensor([2, 2]) / math.sqrt(2))
    # parallel and zero vectors fall back to the straight line
    torch.testing.assert_close(sampling.slerp(x, 3 * x, 0.5), 2 * x)
    torch.testing.assert_close(sampling.slerp(torch.zeros(2), y, 0.25), y / 4)


def test_walk_latents_visit_each_key_and_loop():
    keys = torch.randn(3, 16, generator=rng(0))
    walk = sampling.walk_latents(keys, 5)
    assert walk.shape == (15, 16)
    for i in range(3):
        assert torch.equal(walk[5 * i], keys[i])
    # the last segment heads back to the first latent, without repeating it
    torch.testing.assert_close(walk[-1], sampling.slerp(keys[2], keys[0], 0.8))
    steps = (walk.roll(-1, 0) - walk).norm(dim=1)  # includes last -> first
    assert steps.max() < 0.5 * (keys[0] - keys[1]).norm()
    with pytest.raises(UsageError, match="at least 2"):
        sampling.walk_latents(keys[:1], 5)


def test_the_gif_has_every_frame_the_size_loops_and_starts_at_the_first_latent(gen, tmp_path):
    out = tmp_path / "walk.gif"
    assert api.interpolate(gen, 3, out, frames=4, fps=10, seed=2, truncation=0.8) == out
    assert leftovers(tmp_path) == ["walk.gif"]
    frames, info = gif_frames(out)
    assert frames.shape == (12, 8, 8, 3)
    assert info["loop"] == 0 and info["duration"] == 100
    # frame i * frames is image i of the same seed and truncation (GIF palette: close, not equal)
    keys = to_uint8(api.sample(gen, 3, seed=2, truncation=0.8)).astype(int)
    for i in range(3):
        errors = [np.abs(frames[4 * i].astype(int) - key).mean() for key in keys]
        assert errors[i] < 6 and errors[i] < 0.5 * min(e for j, e in enumerate(errors) if j != i)
    made = sample_output.walk_frames(gen, 3, 4, seed=2, truncation=0.8)
    assert np.abs(frames.astype(int) - made).mean() < 6
    assert ((made[0].astype(int) - keys[0]) == 0).all()  # before the palette: exactly image 0


def test_the_walk_honours_truncation(gen):
    wide = sample_output.walk_frames(gen, 4, 2, seed=0, truncation=1.0).astype(float)
    narrow = sample_output.walk_frames(gen, 4, 2, seed=0, truncation=0.2).astype(float)
    assert narrow.std(0).mean() < 0.6 * wide.std(0).mean()


def test_an_existing_file_is_replaced_whole_and_kept_when_the_walk_fails(gen, tmp_path,
                                                                          monkeypatch):
    out = tmp_path / "walk.gif"
    out.write_bytes(b"an older walk")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(sample_output, "walk_frames", interrupted)
        with pytest.raises(KeyboardInterrupt):
            api.interpolate(gen, 2, out, frames=2)
    assert out.read_bytes() == b"an older walk" and leftovers(tmp_path) == ["walk.gif"]
    api.interpolate(gen, 2, out, frames=2)
    assert gif_frames(out)[0].shape == (4, 8, 8, 3) and leftovers(tmp_path) == ["walk.gif"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o644


@pytest.mark.parametrize(("k", "frames", "fps", "text"), [
    (1, 4, 12, "--interpolate 1"), (3, 0, 12, "--frames 0"), (3, 4, 0, "--fps 0"),
    (1000, 16, 12, "over the 4096"), (2.5, 4, 12, "--interpolate 2.5")])
def test_bad_walk_arguments_are_one_usage_error(gen, tmp_path, k, frames, fps, text):
    with pytest.raises(UsageError, match=text):
        api.interpolate(gen, k, tmp_path / "w.gif", frames=frames, fps=fps)
    assert leftovers(tmp_path) == []


# ------------------------------------------------------------------------ MP4 through ffmpeg

def fake_ffmpeg(folder: Path, exit_status: int = 0) -> Path:
    """An `ffmpeg` on PATH that records its arguments and writes what it reads from stdin to its
    last argument (or fails the way a build without an encoder does)."""
    folder.mkdir()
    script = folder / "ffmpeg"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        "data = sys.stdin.buffer.read()\n"
        f"json.dump({{'argv': sys.argv[1:], 'bytes': len(data)}}, open({str(folder / 'call.json')!r}, 'w'))\n"
        f"if {exit_status}:\n"
        "    sys.stderr.write('Unknown encoder libx264\\n'); sys.exit(" f"{exit_status})\n"
        "open(sys.argv[-1], 'wb').write(b'MP4' + data[:16])\n")
    script.chmod(0o755)
    return folder


def test_mp4_pipes_raw_rgb_frames_to_ffmpeg_as_an_argument_list(gen, tmp_path, monkeypatch):
    bin_dir = fake_ffmpeg(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "videos" / "walk.mp4"
    assert api.interpolate(gen, 2, out, frames=3, fps=24) == out
    call = json.loads((bin_dir / "call.json").read_text())
    argv = call["argv"]
    assert call["bytes"] == 6 * 8 * 8 * 3  # K * frames raw RGB frames of 8 x 8
    for flag, value in (("-f", "rawvideo"), ("-pix_fmt", "rgb24"), ("-s", "8x8"), ("-r", "24"),
                        ("-i", "pipe:0")):
        assert argv[argv.index(flag) + 1] == value, (flag, argv)
    assert out.read_bytes().startswith(b"MP4") and leftovers(out.parent) == ["walk.mp4"]


def test_a_failing_ffmpeg_is_one_message_and_leaves_nothing(gen, tmp_path, monkeypatch):
    bin_dir = fake_ffmpeg(tmp_path / "bin", exit_status=1)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(GanZooError, match="ffmpeg failed .*Unknown encoder libx264"):
        api.interpolate(gen, 2, tmp_path / "walk.mp4", frames=2)
    assert leftovers(tmp_path) == ["bin"]


# ------------------------------------------------------------------------ command line

@pytest.mark.parametrize("psi", ["0", "-0.5", "1.5", "nan", "inf"])
def test_cli_refuses_a_bad_psi_before_loading_anything(tmp_path, psi):
    code, output = invoke("sample", tmp_path / "no-run", "--truncation", psi,
                          "--out", tmp_path / "a.npy")
    assert code == 2 and "--truncation" in output and "(0, 1]" in output
    assert leftovers(tmp_path) == []


def test_cli_truncation_reaches_every_output_form(run_dir, tmp_path):
    generator, _ = api.load_generator(run_dir)
    expected = to_uint8(api.sample(generator, 5, seed=1, truncation=0.5, batch_size=2))
    assert not np.array_equal(expected, to_uint8(api.sample(generator, 5, seed=1, batch_size=2)))
    same = ("-n", 5, "--seed", 1, "--truncation", 0.5, "--batch-size", 2, "--precision", "fp32")
    code, output = invoke("sample", run_dir, *same, "--out", tmp_path / "a.npy")
    assert code == 0 and "truncation 0.5" in output
    assert np.array_equal(np.load(tmp_path / "a.npy"), expected)
    assert invoke("sample", run_dir, *same, "--out", tmp_path / "f")[0] == 0
    pngs = sorted((tmp_path / "f").iterdir())
    assert np.array_equal(np.stack([np.asarray(Image.open(p)) for p in pngs]), expected)
    assert invoke("sample", run_dir, *same, "--out", tmp_path / "g.png")[0] == 0
    with Image.open(tmp_path / "g.png") as grid:
        assert np.array_equal(np.asarray(grid)[2:34, 2:34], expected[0])  # first tile


def test_cli_writes_a_walk(run_dir, tmp_path):
    code, output = invoke("sample", run_dir, "--interpolate", 2, "--frames", 3, "--fps", 5,
                          "--truncation", 0.7, "--out", tmp_path / "walk.gif")
    assert code == 0, output
    assert "walk through 2 latents (6 frames, 5 fps)" in output and "truncation 0.7" in output
    frames, info = gif_frames(tmp_path / "walk.gif")
    assert frames.shape == (6, 32, 32, 3) and info["loop"] == 0 and info["duration"] == 200


@pytest.mark.parametrize(("args", "code", "text"), [
    (("--interpolate", 1, "--out", "w.gif"), 2, "'--interpolate': 1 is not in the range 2<=x"),
    (("--interpolate", "two", "--out", "w.gif"), 2, "'--interpolate': 'two' is not a valid"),
    (("--interpolate", 500, "--frames", 16, "--out", "w.gif"), 2, "over the 4096"),
    (("--interpolate", 3, "--out", "w.png"), 2, "give x.gif (or x.mp4, with ffmpeg on PATH)"),
    (("--interpolate", 3, "--out", "walk"), 2, "give x.gif"),
    (("--out", "w.gif"), 2, "add --interpolate K"),
    (("--frames", 8, "--out", "a.npy"), 2, "--frames set the animation of --interpolate K"),
    (("--interpolate", 3, "-n", 8, "--out", "w.gif"), 2, "-n does not apply to --interpolate"),
])
def test_cli_bad_walk_options_are_one_message(run_dir, tmp_path, monkeypatch, args, code, text):
    monkeypatch.chdir(tmp_path)
    got, output = invoke("sample", run_dir, *args)
    assert got == code and text in output, output
    assert leftovers(tmp_path) == []


def test_cli_mp4_without_ffmpeg_says_what_to_do(run_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("shutil.which", lambda name, *a, **k: None)
    code, output = invoke("sample", run_dir, "--interpolate", 2, "--out", tmp_path / "walk.mp4")
    assert code == 1
    assert "MP4 needs an ffmpeg executable on PATH" in output and ".gif" in output
    assert leftovers(tmp_path) == []


def test_cli_walk_replaces_an_existing_file_and_refuses_a_folder(run_dir, tmp_path):
    old = tmp_path / "walk.gif"
    old.write_bytes(b"an older walk")
    assert invoke("sample", run_dir, "--interpolate", 2, "--frames", 2, "--out", old)[0] == 0
    assert gif_frames(old)[0].shape == (4, 32, 32, 3) and leftovers(tmp_path) == ["walk.gif"]
    folder = tmp_path / "folder.gif"
    folder.mkdir()
    (folder / "mine.txt").write_text("a user's file")
    code, output = invoke("sample", run_dir, "--interpolate", 2, "--out", folder)
    assert code == 2 and "is a folder" in output
    assert leftovers(folder) == ["mine.txt"]
