"""`ganzoo eval RUN --metric NAME...`: any registered metric on a saved run (issue 15: a metric
plugin ran during training, but no command ran it on a saved run). Built-in coverage and
dup_rate need no weights; a third-party metric is registered in-process; Inception metrics use
the tiny stand-in network of test_fid_command (not a known export: --trust-weights)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import Field

from gan_zoo.cli import cli
from gan_zoo.interfaces import Metric
from gan_zoo.options import Options
from gan_zoo.testing import registered_plugin

from ..conftest import write_images
from . import test_fid_command

setup = test_fid_command.setup  # the same tiny run, data folder and stand-in Inception file


def ganzoo_eval(*args: object):
    return CliRunner().invoke(cli, ["eval", *[str(a) for a in args]])


def last_json(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def logged(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


# --------------------------------------------------------------------------- built-in metrics


def test_coverage_and_dup_rate_of_a_run_json_and_metrics_log(setup):
    before = len(logged(setup["run"]))
    record = last_json(ganzoo_eval(setup["run"], "--metric", "coverage", "--metric", "dup_rate",
                                   "--n", 12, "--json"))
    assert record["metrics"] == ["coverage", "dup_rate"]
    assert 0 <= record["coverage"] <= 1 and record["coverage_n"] == 12
    assert 0 <= record["dup_rate"] <= 1 and record["dup_rate_n"] == 12
    assert record["step"] == 2 and record["ema"] is True and record["data"] == str(setup["data"])
    assert record["options"]["coverage"]["n"] == 12 and record["options"]["dup_rate"]["n"] == 12
    assert "weights" not in record  # nothing Inception was loaded
    lines = logged(setup["run"])
    assert len(lines) == before + 1
    assert lines[-1]["event"] == "eval-command"  # not "eval": a resume must not count it
    assert lines[-1]["coverage"] == record["coverage"] and lines[-1]["step"] == 2
    # Seeded: the same numbers again; --no-log appends nothing.
    again = last_json(ganzoo_eval(setup["run"], "--metric", "coverage", "--metric", "dup_rate",
                                  "--n", 12, "--json", "--no-log"))
    assert again["coverage"] == record["coverage"] and again["dup_rate"] == record["dup_rate"]
    assert len(logged(setup["run"])) == before + 1


def test_text_output_names_n_and_options_reach_each_metric(setup):
    res = ganzoo_eval(setup["run"], "-m", "coverage", "-m", "dup_rate", "--n", 12,
                      "-o", "coverage.n=10", "-o", "coverage.k=2", "--no-log")
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    assert lines[0].startswith("coverage ") and "(N=10 generated vs 10 real)" in lines[0]
    assert lines[1].startswith("dup_rate ") and "(N=12 generated)" in lines[1]
    record = last_json(ganzoo_eval(setup["run"], "-m", "coverage", "-o", "coverage.k=2",
                                   "--no-ema", "--json", "--no-log"))
    assert record["options"]["coverage"]["k"] == 2 and record["ema"] is False
    assert record["coverage_n"] == 1000  # the metric's own default when --n is not given


def test_two_folders(setup, tmp_path):
    samples = write_images(tmp_path / "samples", 10, size=32, seed=5)
    record = last_json(ganzoo_eval(samples, setup["data"], "--metric", "dup_rate", "--json"))
    assert record["dup_rate_n"] == 10  # folder mode: every image
    assert record["samples"] == str(samples) and record["data"] == str(setup["data"])
    res = ganzoo_eval(samples, setup["data"], "--metric", "dup_rate", "--best")
    assert res.exit_code == 2 and "do not apply" in res.output


# --------------------------------------------------------------------------- a plugin's metric


class BrightnessOptions(Options):
    n: int = Field(8, ge=2, le=1000, description="generated samples")
    scale: float = Field(1.0, gt=0, description="factor on the value")


class Brightness(Metric):
    """Mean pixel value of the samples (a third-party metric for the test)."""

    name, Options, higher_is_better = "test-brightness", BrightnessOptions, True
    prepared = 0

    def prepare(self, context) -> None:
        type(self).prepared += 1

    def evaluate(self, context) -> dict[str, float]:
        feats = context.fake_features(context.extractor("pixels"), self.options.n)
        return {self.name: float(feats.mean()) * self.options.scale, f"{self.name}_n": len(feats)}


def test_a_plugins_metric_runs_on_a_saved_run(setup):
    with registered_plugin(Brightness, name="test-eval-metric"):
        res = ganzoo_eval(setup["run"], "--metric", "test-brightness", "--n", 6,
                          "-o", "test-brightness.scale=2", "--json", "--no-log")
        record = last_json(res)
        assert record["test-brightness_n"] == 6 and Brightness.prepared == 1
        plain = last_json(ganzoo_eval(setup["run"], "--metric", "test-brightness", "--n", 6,
                                      "--json", "--no-log"))
        assert record["test-brightness"] == pytest.approx(2 * plain["test-brightness"])
        # With a built-in in one command: one context, one record.
        both = last_json(ganzoo_eval(setup["run"], "-m", "test-brightness", "-m", "dup_rate",
                                     "--n", 6, "--json", "--no-log"))
        assert both["test-brightness"] == plain["test-brightness"] and both["dup_rate_n"] == 6


@pytest.mark.parametrize(("result", "needle"), [
    ("raise", "metric 'test-bad' failed: RuntimeError: 'boom'"),
    ("nothing", "returned no value under its name"),
    ("text", "not a number"),
    ("step", "a key already in the record"),
])
def test_a_misbehaving_metric_is_one_message(setup, result, needle):
    class Bad(Metric):
        """Returns what the test asks."""

        name = "test-bad"

        def evaluate(self, context):
            if result == "raise":
                raise RuntimeError("boom")
            return {"nothing": {}, "text": {"test-bad": "high"},
                    "step": {"test-bad": 1.0, "step": 99}}[result]

    before = len(logged(setup["run"]))
    with registered_plugin(Bad, name="test-bad-metric"):
        res = ganzoo_eval(setup["run"], "--metric", "test-bad")
    assert res.exit_code == 1 and needle in res.output and "Traceback" not in res.output
    assert len(logged(setup["run"])) == before  # nothing half-logged


# --------------------------------------------------------------------------- user errors


@pytest.mark.parametrize(("args", "needle"), [
    (["--metric", "covrage"], "Did you mean: coverage"),
    (["--metric", "coverage", "-o", "coverage.k=0"], "coverage.k"),
    (["--metric", "coverage", "-o", "coverage.kk=1"], "coverage.kk: unknown option"),
    (["--metric", "coverage", "-o", "coverage.features=vgg"], "coverage.features"),
    (["--metric", "coverage", "-o", "fid.n=3"], "not one of the metrics named by --metric"),
    (["--metric", "coverage", "-o", "coverage"], "COMPONENT.KEY=VALUE"),
    (["--metric", "dup_rate", "--inception-weights", "w.pt"], "has a `weights` option"),
    (["--metric", "coverage", "-o", "coverage.trust_weights=true"], "unknown option"),
    ([], "Missing option '-m' / '--metric'"),
])
def test_bad_metric_names_and_options_exit_2(setup, args, needle):
    before = len(logged(setup["run"]))
    res = ganzoo_eval(setup["run"], *args)
    assert res.exit_code == 2, res.output
    assert needle in res.output and "Traceback" not in res.output
    assert len(logged(setup["run"])) == before


def test_not_a_run_names_the_folder_form(tmp_path):
    res = ganzoo_eval(tmp_path, "--metric", "coverage")
    assert res.exit_code == 2 and "ganzoo eval DIR_A DIR_B" in res.output


# --------------------------------------------------------------------------- Inception metrics


def test_inception_metrics_trust_only_from_the_command_line(setup):
    args = (setup["run"], "-m", "fid", "-m", "coverage", "-o", "coverage.features=inception",
            "--n", 6, "--max-real", 6, "--json", "--no-log")
    res = ganzoo_eval(*args, "--inception-weights", setup["weights"])
    assert res.exit_code == 1 and "not a known FID Inception export" in res.output
    # An option chooses the file; it cannot trust it.
    res = ganzoo_eval(setup["run"], "-m", "fid", "-o", f"fid.weights={setup['weights']}",
                      "--n", 6)
    assert res.exit_code == 1 and "not a known FID Inception export" in res.output
    record = last_json(ganzoo_eval(*args, "--inception-weights", setup["weights"],
                                   "--trust-weights"))
    assert record["fid"] > 0 and record["fid_n"] == 6 and record["fid_n_real"] == 6
    assert record["coverage_n"] == 6 and record["weights"] == str(setup["weights"])
    assert record["weights_verified"].startswith("unknown") and record["mode"] == "clean"
    # ganzoo fid gives the same number on the same samples.
    fid = CliRunner().invoke(cli, ["fid", str(setup["run"]), "--n", "6", "--max-real", "6",
                                   "--json", "--no-log", "--inception-weights",
                                   str(setup["weights"]), "--trust-weights"])
    assert last_json(fid)["fid"] == record["fid"]
