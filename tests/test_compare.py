"""`ganzoo compare` end to end on the built-in shapes (issue 17): two tiny candidates (an
architecture and a recipe) and one that fails, 2 steps each, FID through the stand-in Inception
file of tests/conftest.py (no download; not a known export, so --trust-weights) and coverage;
the files it writes, the ranking, a re-run that skips what is done, and the refusals that come
before anything trains."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gan_zoo.cli import cli
from gan_zoo.interfaces import Loss
from gan_zoo.testing import registered_plugin

from .conftest import write_stand_in_inception


class NanLoss(Loss):
    """A loss that is NaN from the first step: the candidate that fails."""

    name = "test-compare-nan"

    def real_loss(self, real_logits, real_target=1.0):
        return real_logits.mean() * float("nan")

    def fake_loss(self, fake_logits):
        return fake_logits.mean()

    def generator_loss(self, fake_logits, real_logits=None):
        return -fake_logits.mean()


def compare(*args: object):
    return CliRunner().invoke(cli, ["compare", *[str(a) for a in args]])


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("compare")
    weights = write_stand_in_inception(root / "tiny-inception.pt")
    nan_recipe = root / "nan-recipe.toml"
    nan_recipe.write_text('arch = "conv32"\nloss = "test-compare-nan"\nsteps = 50\n')
    out = root / "cmp"
    args = ("--arch", "conv32", "--recipe", "face-modern", "--recipe", nan_recipe,
            "-o", "conv32.width=4", "--steps", 2, "--batch-size", 4,
            "-m", "fid", "-m", "coverage", "-n", 8, "-o", "fid.max_real=16",
            "-o", "coverage.max_real=16", "-o", "coverage.k=2", "-o", f"fid.weights={weights}",
            "--trust-weights", "--out", out)
    with registered_plugin(NanLoss, name="test-compare-nan"):
        first = compare(*args)
        yield {"out": out, "args": args, "first": first}


def test_end_to_end_files_ranking_and_failed_candidate(setup):
    res, out = setup["first"], setup["out"]
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "compare.json").read_text())
    assert doc["budget"] == {"steps": 2} and doc["ranked_by"] == "fid"
    rows = {r["candidate"]: r for r in doc["candidates"]}
    assert list(rows)[-1] == "nan-recipe"  # failed: last, no rank, its one-line reason
    bad = rows["nan-recipe"]
    assert bad["status"] == "failed" and bad["rank"] is None and "nan" in bad["reason"]
    assert "\n" not in bad["reason"]
    ok = [r for r in doc["candidates"] if r["status"] == "ok"]
    assert [r["candidate"] for r in ok] == sorted(["conv32", "face-modern"],
                                                  key=lambda c: rows[c]["metrics"]["fid"]["value"])
    assert [r["rank"] for r in ok] == [1, 2]
    for r in ok:
        assert r["steps"] == 2 and r["checkpoint_kind"] == "last" and r["checkpoint_step"] == 2
        assert r["metrics"]["fid"]["n"] == 8 and r["metrics"]["fid"]["n_real"] == 16
        assert r["metrics"]["coverage"]["n"] == 8 and r["metrics"]["coverage"]["higher_is_better"]
        assert r["params_g"] > 0 and r["params_d"] > 0 and r["images_per_s"] > 0
        assert r["config"]["options"]["conv32"]["width"] == 4  # -o reached the recipe too
        assert Path(r["checkpoint"]).is_file()
        logged = (out / "runs" / r["candidate"] / "metrics.jsonl").read_text()
        assert '"event": "compare-eval"' in logged
    assert rows["face-modern"]["config"]["loss"] == "hinge"  # the recipe's own settings
    md = (out / "compare.md").read_text()
    assert "N = 8 generated vs 16 real" in md and "Ranked by fid" in md
    table = [x for x in md.splitlines() if x.startswith("| ")]
    assert [x.split(" | ")[1] for x in table[2:]] == [r["candidate"] for r in doc["candidates"]]
    assert "| – | nan-recipe | failed | failed |" in md
    assert table[0] in res.stdout  # the ranking is printed
    page = (out / "report.html").read_text()
    assert 'id="ranking"' in page and 'id="comparison"' in page and "nan-recipe" in page


def test_rerun_skips_completed_candidates(setup):
    out = setup["out"]
    ckpt = out / "runs" / "conv32" / "checkpoints" / "step-0000002.safetensors"
    before = ckpt.stat().st_mtime_ns
    res = compare(*setup["args"])  # the fixture still has the NaN loss registered
    assert res.exit_code == 0, res.output
    assert "conv32: trained in an earlier run of this comparison; skipped" in res.stderr
    assert "face-modern: trained in an earlier run of this comparison; skipped" in res.stderr
    assert "nan-recipe: failed before" in res.stderr  # a failed one is tried again
    assert ckpt.stat().st_mtime_ns == before
    first = json.loads((out / "compare.json").read_text())["candidates"]
    assert first[0]["status"] == "ok"


def test_unknown_arch_is_one_message_before_anything_trains(tmp_path):
    out = tmp_path / "cmp"
    res = compare("--arch", "conv32", "--arch", "convv32", "--steps", 2, "-m", "coverage",
                  "--out", out)
    assert res.exit_code == 2
    assert "unknown architecture 'convv32'" in res.output and "conv32" in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize(("extra", "needle"), [
    (("--recipe", "no-such-recipe"), "unknown recipe"),
    (("--arch", "conv32", "--minutes", 1), "one of the two"),
    (("--arch", "conv32", "-o", "conv64.width=4"), "no candidate uses 'conv64'"),
    (("--arch", "conv32", "--arch", "conv32"), "given twice"),
])
def test_bad_flags_exit_2(tmp_path, extra, needle):
    res = compare(*extra, "--steps", 2, "-m", "coverage", "--out", tmp_path / "cmp")
    assert res.exit_code == 2 and needle in res.output, res.output
    assert not (tmp_path / "cmp").exists()


def test_out_over_an_unrelated_folder_is_refused(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    res = compare("--arch", "conv32", "--steps", 2, "-m", "coverage", "--out", out)
    assert res.exit_code == 2 and "holds no comparison" in res.output
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_threads_split_between_parallel_processes(monkeypatch):
    from gan_zoo.compare import thread_split

    monkeypatch.setattr("gan_zoo.util.hardware.choose_threads", lambda: (8, "test"))
    assert thread_split(2) == (4, "")
    each, note = thread_split(16)
    assert each == 1 and "--budget-clock cpu" in note
