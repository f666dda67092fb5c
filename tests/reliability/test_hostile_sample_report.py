"""`ganzoo sample` and `ganzoo report` against hostile outputs and run folders.

sample: a million images stream to disk (a .npy or a new folder) instead of being held in
memory; a grid too large to be a picture is refused before anything is generated; an --out that
is a folder named like a file, a file named like a folder, an empty name, a name the file system
cannot hold, a path under /proc or a seed beyond 64 bits is one message; the .npy is written
at exactly the path reported, whatever the case of its suffix; a user's files are never
overwritten.

report: names and metric names with `$` (matplotlib's mathtext), non-finite or non-integer
steps, invalid bytes, decompression-bomb sample grids and FIFOs in place of metrics.jsonl or
sample grids each give a page (with a note) or one message: never a traceback, never a hang.
"""

from __future__ import annotations

import errno
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from gan_zoo import api
from gan_zoo.data.sample_output import write_samples
from gan_zoo.errors import UsageError
from gan_zoo.training.metrics_file import MetricsReading, iter_metrics
from gan_zoo.training.rundir import RunDir
from gan_zoo.visual.curves import load_run, plot_curves
from gan_zoo.visual.report import build_report, collect, render_html

from ..visual.test_report import embedded_images, make_run
from .helpers import cli_env, tiny_config, tiny_data
from .test_hostile_output import _invoke as one_message_cli


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trained run (one checkpoint) to sample from."""
    out = tmp_path_factory.mktemp("sample") / "run"
    api.train(tiny_config(steps=1, checkpoint_every=1), out=out, data=tiny_data(8))
    return out


def invoke(*args: object) -> tuple[int, str]:
    """Run the CLI in-process: exit code and output; a traceback, or other than one `Error:`
    line on failure, fails the test."""
    return one_message_cli(*(str(a) for a in args))


# ------------------------------------------------------------------------------ sample --out

def test_npy_of_any_suffix_case_is_written_at_exactly_the_reported_path(run_dir, tmp_path):
    out = tmp_path / "x.NPY"
    code, output = invoke("sample", run_dir, "-n", 5, "--out", out)
    assert code == 0
    assert f"to {out}" in output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.NPY"]  # no x.NPY.npy
    arr = np.load(out)
    assert arr.shape == (5, 32, 32, 3) and arr.dtype == np.uint8


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_every_form_holds_the_same_images_as_api_sample(run_dir, tmp_path, precision):
    """The command (channels-last where that is fast) gives api.sample's images (contiguous)
    for the same seed, precision and batch size."""
    generator, _ = api.load_generator(run_dir)
    expected = (((api.sample(generator, 7, seed=3, batch_size=4, precision=precision) + 1)
                 * 127.5).round().permute(0, 2, 3, 1).to(torch.uint8).numpy())
    same = ("-n", 7, "--seed", 3, "--batch-size", 4, "--precision", precision)
    assert invoke("sample", run_dir, *same, "--out", tmp_path / "a.npy")[0] == 0
    assert invoke("sample", run_dir, *same, "--out", tmp_path / "f")[0] == 0
    assert np.array_equal(np.load(tmp_path / "a.npy"), expected)
    pngs = sorted((tmp_path / "f").iterdir())
    assert [p.name for p in pngs] == [f"{i:06d}.png" for i in range(7)]
    assert np.array_equal(np.stack([np.asarray(Image.open(p)) for p in pngs]), expected)


def test_the_sample_line_names_the_precision_and_escapes_the_paths(run_dir, tmp_path,
                                                                  monkeypatch):
    monkeypatch.setattr("gan_zoo.util.hardware.bf16_fast", lambda d: (False, "no bf16 units"))
    out = tmp_path / "bell\x07.npy"
    code, output = invoke("sample", run_dir, "-n", 2, "--out", out)
    assert code == 0 and out.is_file()
    assert "\x07" not in output and "bell\\x07.npy" in output  # shown, not rung
    assert "fp32 (auto: no bf16 units)" in output and "images/s" in output


@pytest.mark.parametrize(("args", "text"), [
    (("--batch-size", "0"), "'--batch-size': 0 is not in the range 1<=x<=4096"),
    (("--precision", "fp16"), "'--precision': 'fp16' is not one of 'auto', 'fp32', 'bf16'"),
])
def test_bad_sample_options_are_one_message(run_dir, tmp_path, args, text):
    code, output = invoke("sample", run_dir, "-n", 2, *args, "--out", tmp_path / "a.npy")
    assert code == 2 and text in output
    assert not list(tmp_path.iterdir())


def test_a_full_disk_while_encoding_is_one_message_and_leaves_nothing(run_dir, tmp_path,
                                                                      monkeypatch):
    def full(folder, first, images):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("gan_zoo.data.sample_output._save_pngs", full)
    code, output = invoke("sample", run_dir, "-n", 9, "--out", tmp_path / "f")
    assert code != 0 and "No space left on device" in output
    assert not list(tmp_path.iterdir())


def test_streaming_draws_the_same_images_as_drawing_every_latent_at_once(run_dir):
    """Latents are drawn batch by batch now: the images of a seed did not change."""
    generator, _ = api.load_generator(run_dir)
    rng = torch.Generator().manual_seed(5)
    z = generator.sample_latent(150, generator=rng)
    with torch.no_grad():
        before = torch.cat([generator(chunk) for chunk in z.split(64)])
    assert torch.equal(api.sample(generator, 150, seed=5), before)


def test_a_folder_is_never_written_into_when_it_holds_files(run_dir, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "000000.png").write_bytes(b"my own picture")
    code, output = invoke("sample", run_dir, "-n", 3, "--out", folder)
    assert code == 2 and "not empty" in output
    assert sorted(p.name for p in folder.iterdir()) == ["000000.png"]
    assert (folder / "000000.png").read_bytes() == b"my own picture"
    # an empty folder is used; a new one appears complete (no temporary folder is left)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert invoke("sample", run_dir, "-n", 3, "--out", empty)[0] == 0
    assert len(list(empty.glob("*.png"))) == 3
    assert invoke("sample", run_dir, "-n", 2, "--out", tmp_path / "new" / "deeper")[0] == 0
    assert len(list((tmp_path / "new" / "deeper").glob("*.png"))) == 2
    assert not [p for p in tmp_path.rglob(".*")], list(tmp_path.rglob(".*"))


def test_a_png_grid_too_large_to_be_a_picture_is_refused_before_generating(run_dir, tmp_path):
    code, output = invoke("sample", run_dir, "-n", 1_000_000, "--out", tmp_path / "g.png")
    assert code == 2
    assert "at most" in output and ".npy" in output  # names the limit and the way out
    assert not list(tmp_path.iterdir())


def test_a_grid_over_the_pixel_limit_is_refused_after_one_batch(tmp_path):
    batches = (torch.zeros(64, 3, 256, 256) for _ in range(16))  # 1024 images: 8258 x 8258
    with pytest.raises(UsageError, match="megapixel limit"):
        write_samples(batches, 1024, tmp_path / "big.png")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["a.npy", "a.png", "folder"])
def test_an_interrupted_write_leaves_nothing(tmp_path, name):
    def batches():
        yield torch.zeros(4, 3, 8, 8)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_samples(batches(), 8, tmp_path / name)
    assert not list(tmp_path.iterdir())


BAD_OUTS = {
    "folder named x.png": ("dir", "x.png"),
    "folder named x.npy": ("dir", "x.npy"),
    "file without suffix": ("file", "plain"),
    "FIFO without suffix": ("fifo", "pipe"),
    "empty name": (None, ""),
    "300-character name": (None, "n" * 300 + ".npy"),
    "300-character folder name": (None, "n" * 300),
    "300-character png name": (None, "n" * 300 + ".png"),
    "under /proc (png)": (None, "/proc/x.png"),
    "under /proc (npy)": (None, "/proc/self/x.npy"),
    "under /proc (folder)": (None, "/proc/gan-zoo-samples"),
    "other suffix": (None, "x.jpg"),
}


@pytest.mark.parametrize("kind, name", list(BAD_OUTS.values()), ids=list(BAD_OUTS))
def test_bad_out_is_one_message(run_dir, tmp_path, kind, name):
    target = tmp_path / name if name and not name.startswith("/") else Path(name)
    if kind == "dir":
        target.mkdir()
    elif kind == "file":
        target.write_bytes(b"a user's file")
    elif kind == "fifo":
        os.mkfifo(target)
    out = str(target) if name else ""
    code, output = invoke("sample", run_dir, "-n", 2, "--out", out)
    assert code in (1, 2), output
    if kind == "file":
        assert target.read_bytes() == b"a user's file"
    if kind == "dir":
        assert not list(target.iterdir())


@pytest.mark.parametrize("seed", [2**64, 2**70, -(2**64), 10**40])
def test_seed_beyond_64_bits_is_one_message(run_dir, tmp_path, seed):
    code, output = invoke("sample", run_dir, "-n", 2, "--seed", seed, "--out", tmp_path / "a.npy")
    assert code == 2 and "--seed" in output


def test_the_largest_64_bit_seed_samples(run_dir, tmp_path):
    assert invoke("sample", run_dir, "-n", 2, "--seed", 2**64 - 1,
                  "--out", tmp_path / "a.npy")[0] == 0


# Runs `ganzoo sample RUN -n 2 --out OUT` for each OUT in one process (a process costs seconds).
SAMPLE_EACH = """
import sys
from click.testing import CliRunner
from gan_zoo.cli import cli
for out in sys.argv[2:]:
    result = CliRunner().invoke(cli, ["sample", sys.argv[1], "-n", "2", "--out", out])
    print(result.exit_code, repr(result.exception), result.output)
"""


def test_an_existing_fifo_named_like_the_output_is_replaced_not_opened(run_dir, tmp_path):
    names = [tmp_path / "f.png", tmp_path / "f.npy"]
    for name in names:
        os.mkfifo(name)
    try:  # in another process: opening a FIFO to write would block this one for good
        proc = subprocess.run([sys.executable, "-c", SAMPLE_EACH, str(run_dir), *map(str, names)],
                              env=cli_env(), capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("ganzoo sample opened the FIFO at --out")
    assert proc.stdout.count("0 None wrote 2 images") == 2, proc.stdout + proc.stderr
    assert all(name.is_file() for name in names)


def _peak_rss_kb(*args: str) -> int:
    """Peak resident memory (KiB) of one `ganzoo` process, measured from a fresh parent."""
    probe = ("import resource, subprocess, sys; "
             "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    proc = subprocess.run([sys.executable, "-c", probe, sys.executable, "-m", "gan_zoo", *args],
                          env=cli_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.split()[-1])


def test_many_images_stream_to_disk_in_bounded_memory(run_dir, tmp_path):
    """12,000 images held at once would take ~150 MB as floats (and as much again to join
    them); streamed, the process needs about what it needs for 16."""
    small = _peak_rss_kb("sample", str(run_dir), "-n", "16", "--out", str(tmp_path / "s.npy"))
    big = _peak_rss_kb("sample", str(run_dir), "-n", "12000", "--out", str(tmp_path / "b.npy"))
    assert np.load(tmp_path / "b.npy", mmap_mode="r").shape == (12000, 32, 32, 3)
    assert big - small < 100_000, (small, big)


# ------------------------------------------------------------------------------ report

def _report(*runs: Path, out: Path) -> tuple[int, str]:
    return invoke("report", *runs, "--out", out)


@pytest.mark.parametrize("name", ["$$", "$\\frac{$", "a$^$b", "a$b", "_legend_"])
def test_dollar_signs_in_run_and_metric_names_are_drawn_as_text(tmp_path, name):
    run = make_run(tmp_path / name)
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps({"step": 40, "event": "eval", name: 1.0, f"{name}_2": 2.0}) + "\n")
    code, output = _report(run, out=tmp_path / "r.html")
    assert code == 0, output
    text = (tmp_path / "r.html").read_text()
    assert len(embedded_images(text)) == 3
    plot_curves(load_run(run), tmp_path / "curves.png")  # the live plot of a training run too


def test_runs_overlaid_with_dollars_in_their_names_are_drawn(tmp_path):
    a, b = make_run(tmp_path / "$\\frac{$"), make_run(tmp_path / "$^$")
    code, output = invoke("report", a, b, "--title", "$\\frac{$", "--out", tmp_path / "r.html")
    assert code == 0, output
    assert len(embedded_images((tmp_path / "r.html").read_text())) == 1 + 2 * 3


@pytest.mark.parametrize("run_name, out_name", [
    ("r" * 300, "r.html"), ("run", "o" * 300 + ".html"), ("run", ""), ("run", "/proc/r.html"),
    ("/proc/self/fdinfo/0", "r.html")])
def test_report_paths_the_file_system_refuses_are_one_message(tmp_path, run_name, out_name):
    make_run(tmp_path / "run")
    run = run_name if run_name.startswith("/") else tmp_path / run_name
    out = out_name if out_name.startswith("/") or not out_name else tmp_path / out_name
    code, output = invoke("report", run, "--out", out)
    assert code in (1, 2), output


BAD_LINES = [b'{"step": Infinity, "loss_d": 1.0, "loss_g": 1.0}',
             b'{"step": NaN, "loss_d": 1.0, "loss_g": 1.0}',
             b'{"step": -Infinity, "loss_d": 1.0, "loss_g": 1.0}',
             b'{"step": 1e308, "loss_d": 1.0, "loss_g": 1.0}',
             b'{"step": 3.5, "loss_d": 1.0, "loss_g": 1.0}',
             b'{"step": 100000000000000000000000000000, "loss_d": 1.0, "loss_g": 1.0}',
             b'{"step": -3, "loss_d": 1.0, "loss_g": 1.0}',
             b'{"step": true, "loss_d": 1.0, "loss_g": 1.0}',
             b'{"step": "7", "loss_d": 1.0, "loss_g": 1.0}',
             b'{"step": 5, "loss_d": 1.0, "loss_g": 1.0, "x": "\xff"}',
             b'\xff\xfe',
             b'[1, 2, 3]',
             b'{"step": 9, "loss_d": 1.0',
             b'{"step": ' + b"[" * 100_000,
             b'{"step": ' + b"9" * 5000 + b"}",
             b"x" * (2 << 20)]
# Good lines with values no plot can scale to: kept (a diverged run logs such numbers).
EXTREME_VALUES = [b'{"step": 20, "event": "eval", "fid": 1e999999, "kid": -1e308}',
                  b'{"step": 20, "event": "eval", "is": 1e308, "precision": NaN}']


def test_bad_metrics_lines_are_skipped_and_counted_and_the_rest_is_drawn(tmp_path):
    run = make_run(tmp_path / "run", steps=20, fids=(50.0,))
    good = (run / "metrics.jsonl").read_bytes()
    lines = good.splitlines(keepends=True)
    (run / "metrics.jsonl").write_bytes(b"".join(lines[:10]) + b"\n".join(BAD_LINES) + b"\n"
                                        + b"".join(lines[10:]) + b"\n".join(EXTREME_VALUES))
    records = RunDir(run).read_metrics()
    assert len(records) == len(lines) + len(EXTREME_VALUES)
    assert all(isinstance(r["step"], int) for r in records)
    series = load_run(run)
    assert series.train["loss_d"][0].tolist() == list(range(1, 21))
    assert series.best("fid") == (20, 50.0)
    code, output = _report(run, out=tmp_path / "r.html")
    assert code == 0
    assert f"skipped {len(BAD_LINES)} unreadable line(s)" in output
    text = (tmp_path / "r.html").read_text()
    assert f"skipped {len(BAD_LINES)} unreadable line(s)" in text
    assert "20 of 20 steps" in text


def test_a_metrics_file_of_invalid_bytes_only_reports(tmp_path):
    run = make_run(tmp_path / "run")
    (run / "metrics.jsonl").write_bytes(bytes(range(256)) * 10)
    code, output = _report(run, out=tmp_path / "r.html")
    assert code == 0 and "unreadable line" in output


def test_a_metrics_file_with_thousands_of_metric_names_is_drawn_quickly(tmp_path):
    run = make_run(tmp_path / "run", steps=10, fids=())
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps({"step": 10, "event": "eval",
                             **{f"m{i}": float(i) for i in range(3000)}}) + "\n")
    code, output = _report(run, out=tmp_path / "r.html")
    assert code == 0
    assert "3000 evaluation metrics logged: the curves show the first 12" in output


def _png_header(width: int, height: int, bit_depth: int = 8, colour: int = 2) -> bytes:
    """A PNG that claims width x height: a valid header and a few compressed rows (a real
    bomb continues with rows of zeros, which compress about a thousand times)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(bytes(4096))) + chunk(b"IEND", b""))


@pytest.mark.parametrize("width, height, depth", [(100_000, 100_000, 1), (8000, 8000, 16),
                                                  (2**31 - 1, 1, 8)])
@pytest.mark.parametrize("where", ["samples/step-0000040.png", "samples.png"])
def test_a_decompression_bomb_grid_is_skipped_with_a_note(tmp_path, width, height, depth, where):
    run = make_run(tmp_path / "run")
    (run / where).write_bytes(_png_header(width, height, depth))
    code, output = _report(run, out=tmp_path / "r.html")
    assert code == 0, output
    text = (tmp_path / "r.html").read_text()
    assert f"{width}x{height}" in text and "skipped" in text
    for image in embedded_images(text):
        assert image.width * image.height < 50_000_000


def test_a_grid_that_is_not_a_png_is_not_embedded(tmp_path):
    run = make_run(tmp_path / "run")
    (run / "samples.png").write_text("<script>alert(1)</script>")
    code, _ = _report(run, out=tmp_path / "r.html")
    assert code == 0
    text = (tmp_path / "r.html").read_text()
    assert "PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg" not in text  # base64 of the script
    assert "samples.png" in text and "skipped" in text


FIFO_PLACES = ("metrics.jsonl", "config.toml", "samples.png", "samples/step-0000040.png")


def test_fifos_in_the_run_do_not_hang_the_report(tmp_path):
    """Every file the report reads is a FIFO at once (one process: each costs seconds)."""
    run = make_run(tmp_path / "run")
    for where in FIFO_PLACES:
        (run / where).unlink()
        os.mkfifo(run / where)
    try:
        proc = subprocess.run([sys.executable, "-m", "gan_zoo", "report", str(run), "--out",
                               str(tmp_path / "r.html")], env=cli_env(), capture_output=True,
                              text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"ganzoo report hung on a FIFO (one of {FIFO_PLACES})")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    warned = [line for line in proc.stderr.splitlines() if "not a regular file" in line]
    for where in FIFO_PLACES:
        assert [line for line in warned if where in line], (where, proc.stderr)
    assert len(embedded_images((tmp_path / "r.html").read_text())) == 1  # the older grid's strip


def test_linked_grids_are_not_embedded(tmp_path):
    """A downloaded run whose grids are links to a picture elsewhere (~/private.png) must not
    put that picture into a report the user may share: gan-zoo never writes grids as links."""
    private = tmp_path / "private.png"
    Image.fromarray(np.full((8, 8, 3), 7, np.uint8)).save(private)
    run = make_run(tmp_path / "run")
    grids = [run / "samples.png", *sorted((run / "samples").glob("step-*.png"))]
    for grid in grids:
        grid.unlink()
        grid.symlink_to(private)
    report = collect(run)
    for grid in grids:
        assert any(grid.name in note and "symbolic link" in note for note in report.notes), (
            grid, report.notes)
    html = build_report([run], tmp_path / "r.html").read_text()
    assert [im.size for im in embedded_images(html) if im.size[0] < 100] == []  # curves only


def test_collect_notes_are_escaped_text(tmp_path):
    run = make_run(tmp_path / "run")
    name = "step-0000099.png"
    (run / "samples" / name).write_bytes(_png_header(100_000, 100_000, 1))
    (run / "samples" / "step-0000098.png").write_bytes(b"\x1b]0;pwned\x07")
    report = collect(run)
    assert any(name in note for note in report.notes)
    assert all("\x1b" not in note for note in report.notes)
    text = build_report([run], tmp_path / "r.html").read_text()
    assert "\x1b" not in text


# ------------------------------------------------------------------ generated metrics files

SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                   st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8))
JSON_VALUE = st.recursive(SCALAR, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6)
KEYS = st.one_of(st.sampled_from(["step", "loss_d", "loss_g", "d_real", "d_fake", "d_acc",
                                  "d_steps", "event", "metric", "value", "fid", "recall",
                                  "knob.d_steps", "knob.noise_std_real", "knob.lr_g_scale",
                                  "lr_factor", "time", "img_per_s"]), st.text(max_size=8))
VALUE = st.one_of(JSON_VALUE, st.sampled_from(["eval", "rollback", "fid"]), st.integers(0, 50))
# Most records have a step and a loss (so curves are drawn), then anything.
RECORD = st.builds(lambda base, extra: {**extra, **base}, st.fixed_dictionaries(
    {"step": st.one_of(st.integers(0, 50), st.integers(0, 50), SCALAR)},
    optional={"loss_d": st.one_of(st.floats(), SCALAR), "fid": VALUE, "event": VALUE}),
    st.dictionaries(KEYS, VALUE, max_size=8))
LINE = st.one_of(*[RECORD.map(lambda r: json.dumps(r).encode())] * 3, st.binary(max_size=40))


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(LINE, min_size=1, max_size=20))
def test_any_metrics_file_gives_a_report(tmp_path, lines):
    """Generated records (any JSON value under the keys the report reads) and raw bytes: the
    curves and the page are drawn, and every line is either a record or counted."""
    with tempfile.TemporaryDirectory(dir=tmp_path) as folder:
        run = Path(folder)
        (run / "config.toml").write_text('arch = "conv32"\nlr_g = 0.0002\nlr_d = 0.0002\n')
        (run / "metrics.jsonl").write_bytes(b"\n".join(lines) + b"\n")
        reading = MetricsReading()
        records = list(iter_metrics(run / "metrics.jsonl", reading))
        assert len(records) + reading.skipped == sum(1 for line in b"\n".join(lines).split(b"\n")
                                                     if line.strip())
        report = collect(run)
        assert report.curves_png is None or report.curves_png.startswith(b"\x89PNG")
        render_html([report])
