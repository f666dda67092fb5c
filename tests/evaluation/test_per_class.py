"""`ganzoo fid/eval RUN --per-class`: each metric per class of a conditional run, samples of a
class against that class's real images, small classes skipped with the reason, N per class in
the record; and its refusals (unconditional run, two folders, unlabelled reference data). The
tiny TorchScript stand-in for Inception comes from test_fid_command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from gan_zoo import api
from gan_zoo.cli import cli
from gan_zoo.evaluation.per_class import OneClass, SubsetSource

from ..conftest import write_images
from .test_fid_command import save_tiny_inception

SIZES = {"apple": 60, "bread": 55, "rare\x1b[31m": 10}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("per-class")
    weights = save_tiny_inception(root)
    data = root / "data"
    for i, (name, n) in enumerate(SIZES.items()):
        write_images(data / name, n, size=32, seed=i)
    opts = {"options": {"conv32": {"width": 8, "latent_dim": 16}}, "batch_size": 8, "steps": 2}
    api.train({"arch": "conv32", "data": str(data), "conditional": True, **opts}, out=root / "c")
    api.train({"arch": "conv32", "data": str(data), **opts}, out=root / "u")
    return {"weights": weights, "data": data, "cond": root / "c", "uncond": root / "u"}


def invoke(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def tiny(setup: dict[str, Path]) -> tuple[object, ...]:
    return ("--inception-weights", setup["weights"], "--trust-weights")


def test_fid_per_class_states_n_and_skips_small_classes(setup):
    result = invoke("fid", setup["cond"], "--per-class", "--n", 40, "--kid", "--json",
                    *tiny(setup))
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["fid_n"] == 40 and record["fid_n_real"] == 125  # the whole-data FID as before
    apple, bread, rare = record["per_class"]
    assert (apple["name"], apple["n_real"], apple["fid_n"], apple["fid_n_real"]) == \
        ("apple", 60, 40, 60)
    assert (bread["n_real"], bread["fid_n"], bread["kid_n"]) == (55, 40, 40)
    assert rare == {"class": 2, "name": "rare\x1b[31m", "n_real": 10,
                    "skipped": "10 real images (fewer than 50)"}
    assert record["classes_evaluated"] == 2
    assert record["fid_class_mean"] == pytest.approx((apple["fid"] + bread["fid"]) / 2)
    assert apple["fid"] != bread["fid"]
    logged = json.loads((setup["cond"] / "metrics.jsonl").read_text().splitlines()[-1])
    assert logged["event"] == "fid" and logged["per_class"] == record["per_class"]


def test_the_text_table_escapes_class_names(setup):
    result = invoke("fid", setup["cond"], "--per-class", "--n", 20, "--no-log", *tiny(setup))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1].startswith("per class") and lines[2].split() == ["class", "N", "N", "real",
                                                                     "fid"]
    assert lines[3].split()[:3] == ["apple", "20", "60"]
    assert "\x1b" not in result.stdout and "rare\\x1b[31m" in lines[5]
    assert "skipped: 10 real images (fewer than 50)" in lines[5]
    assert lines[6].startswith("mean fid over 2 classes")


def test_eval_per_class_coverage_without_inception(setup):
    result = invoke("eval", setup["cond"], "--per-class", "--metric", "coverage",
                    "-o", "coverage.features=pixels", "--n", 30, "--json", "--no-log")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout.strip().splitlines()[-1])
    values = [c["coverage"] for c in record["per_class"] if "coverage" in c]
    assert len(values) == 2 and all(0 <= v <= 1 for v in values)
    assert record["per_class"][0]["coverage_n"] == 30


@pytest.mark.parametrize("which, extra, message", [
    ("uncond", (), "--per-class needs a conditional generator"),
    ("cond", ("other-folder",), "not two folders"),
    ("cond", ("--data", "flat"), "has no class subfolders"),
])
def test_per_class_refusals_are_one_message(setup, tmp_path, which, extra, message):
    flat = write_images(tmp_path / "flat", 4, size=32)
    extra = tuple(str(flat) if e in ("flat", "other-folder") else e for e in extra)
    result = invoke("fid", setup[which], *extra, "--per-class", "--n", 10, *tiny(setup))
    assert result.exit_code != 0 and message in result.output, result.output
    assert "Traceback" not in result.output


def test_one_class_draws_that_class_and_subsets_read_only_their_images(setup):
    G, _ = api.load_generator(setup["cond"])
    z = G.sample_latent(3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(OneClass(G, 1)(z), G(z, y=torch.ones(3, dtype=torch.long)))
    images = np.arange(5 * 2 * 2 * 3, dtype=np.uint8).reshape(5, 2, 2, 3)
    source = SubsetSource(images, np.array([4, 1, 3]), "x")
    batches = list(source.batches(2))
    assert len(source) == 3 and [len(b) for b in batches] == [2, 1]
    assert np.array_equal(np.concatenate(batches), images[[4, 1, 3]])
    other = SubsetSource(images, np.array([4, 1, 2]), "x")
    assert source.digest() != other.digest()  # the reference-stats cache keys by content


def test_the_report_names_the_class_rows_and_shows_the_per_class_table(setup, tmp_path):
    result = invoke("fid", setup["cond"], "--per-class", "--n", 20, *tiny(setup))
    assert result.exit_code == 0, result.output
    with (setup["cond"] / "metrics.jsonl").open("a") as fh:  # a later hostile line is ignored
        fh.write(json.dumps({"step": 9, "event": "fid", "per_class": [{"name": 5}]}) + "\n")
    out = tmp_path / "report.html"
    assert invoke("report", setup["cond"], "--out", out).exit_code == 0
    page = out.read_text()
    assert "One class per row, the same noise down each column: apple, bread, rare" in page
    assert "\x1b" not in page and "rare\\x1b[31m" in page  # control characters made visible
    assert "<h3>Per class" in page and "skipped: 10 real images (fewer than 50)" in page
    assert "<tr><th>apple</th><td>20</td><td>60</td><td>" in page
    assert "mean fid" in page
