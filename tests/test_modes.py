"""The known-modes benchmark (benchmarks/modes.py): its modes, metrics, dataset and labeller.

The labeller is trained only at toy size here (seconds): its real accuracy is measured by
`python -m benchmarks.modes labeller`. Drawn images are checked against their parameters by
plain pixel measurements instead, independent of any classifier.
"""

from __future__ import annotations

import colorsys
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks import modes as md
from gan_zoo import api
from gan_zoo.data import load_folder
from gan_zoo.data.builtin import make_shapes

TINY = md.LabellerSpec(per_mode=1, held_out_per_mode=1, epochs=1, batch_size=32, width=4)


def test_builtin_shapes_unchanged_by_the_drawing_keywords() -> None:
    """Hashes taken before draw_shape gained kind/colour/centre/size."""
    assert hashlib.sha256(make_shapes(16, 32, 0).tobytes()).hexdigest() == (
        "4c33fa2f111a30f05d92966bcc0721c9a9cdd9b97d5a3fabac6b79431115ced4")
    assert hashlib.sha256(make_shapes(8, 64, 3).tobytes()).hexdigest() == (
        "70b6887d8784228daf27ce432230d65b98b259a53e00981d7137b1fa51aa9fa0")


def test_mode_indices_round_trip() -> None:
    assert md.M == 48
    seen = {md.mode_index(*md.mode_factors(m)) for m in range(md.M)}
    assert seen == set(range(md.M))
    assert md.mode_name(md.mode_index(2, 1, 3)) == "lime triangle, bottom-right"


def _measure(image: np.ndarray) -> tuple[int, float, tuple[float, float]]:
    """(kind, hue, centre) of the bright shape on the dark background, from pixels alone."""
    value = image.max(axis=2) / 255
    mask = value > 0.62  # shapes have value >= 0.8, backgrounds <= 0.45 (edges blend)
    ys, xs = np.nonzero(mask)
    fill = mask.sum() / ((xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1))
    kind = 1 if fill > 0.9 else 0 if fill > 0.66 else 2  # square 1, disc 0.79, triangle 0.5
    core = image[value > 0.75].mean(axis=0) / 255
    hue = colorsys.rgb_to_hsv(*core)[0]
    return kind, hue, ((xs.mean() + 0.5) / image.shape[1], (ys.mean() + 0.5) / image.shape[0])


def test_every_mode_is_drawn_as_its_parameters_say() -> None:
    modes = np.concatenate([np.arange(md.M), np.arange(md.M)])
    images = md.draw_modes(modes, seed=3)
    assert images.shape == (2 * md.M, 32, 32, 3) and images.dtype == np.uint8
    assert np.array_equal(images, md.draw_modes(modes, seed=3))  # seeded
    for m, image in zip(modes, images, strict=True):
        k, c, p = md.mode_factors(int(m))
        kind, hue, (x, y) = _measure(image)
        assert kind == k, md.mode_name(int(m))
        dh = abs((hue - md.COLOURS[c][1] + 0.5) % 1 - 0.5)
        assert dh < 0.06, (md.mode_name(int(m)), hue)
        ex, ey = md.POSITIONS[p][1]
        # triangles' centroids sit below the box centre
        assert abs(x - ex) < 0.07 and abs(y - ey) < 0.1, (md.mode_name(int(m)), x, y)


def test_off_mode_images_are_off_in_the_factor_their_labels_say() -> None:
    rng = np.random.default_rng(0)
    for _ in range(3):
        image, (k, c, p) = md.draw_off_mode(rng, 0)  # a hue halfway between palette colours
        hue = _measure(image)[1]
        assert c == -1 and min(abs((hue - h + 0.5) % 1 - 0.5) for _, h in md.COLOURS) > 0.07
        image, (k, c, p) = md.draw_off_mode(rng, 1)  # a shape between quadrants
        x, y = _measure(image)[2]
        assert p == -1 and c >= 0 and min(abs(x - 0.5), abs(y - 0.5)) < 0.1
        image, labels = md.draw_off_mode(rng, 2)  # the background alone
        assert labels == (-1, -1, -1) and (image.max(axis=2) / 255 <= 0.46).all()
        image, (k, c, p) = md.draw_off_mode(rng, 3)  # two shapes in two quadrants
        bright = image.max(axis=2) > 0.62 * 255
        quadrants = [bright[:16, :16], bright[:16, 16:], bright[16:, :16], bright[16:, 16:]]
        assert p == -1 and sum(q.sum() > 20 for q in quadrants) == 2


def test_balanced_modes() -> None:
    counts = np.bincount(md.balanced_modes(3 * md.M + 5, seed=1), minlength=md.M)
    assert counts.sum() == 3 * md.M + 5 and counts.max() - counts.min() <= 1
    assert not np.array_equal(md.balanced_modes(96, 1), md.balanced_modes(96, 2))


def test_kl_to_uniform() -> None:
    assert md.kl_to_uniform(np.full(md.M, 7)) == pytest.approx(0, abs=1e-12)
    collapsed = np.zeros(md.M)
    collapsed[5] = 100
    assert md.kl_to_uniform(collapsed) == pytest.approx(math.log(md.M))
    half = np.zeros(md.M)
    half[: md.M // 2] = 3
    assert md.kl_to_uniform(half) == pytest.approx(math.log(2))
    assert math.isnan(md.kl_to_uniform(np.zeros(md.M)))


def test_coverage_with_and_without_a_minimum() -> None:
    counts = np.zeros(md.M, int)
    counts[:10], counts[10:20] = 1, 5
    assert md.covered(counts) == 20 and md.covered(counts, 5) == 10 and md.covered(counts, 6) == 0
    assert md.default_min_count(480) == 3 and md.default_min_count(10) == 1
    modes = torch.tensor([0, 0, 0, 1, 2, 2])
    conf = torch.tensor([0.99, 0.95, 0.9, 0.5, 0.85, 0.99])
    s = md.summarize(modes, conf, threshold=0.8, min_count=2)
    assert (s["covered"], s["covered_min"], s["n"]) == (2, 2, 6)
    assert s["off_mode"] == pytest.approx(1 / 6)
    assert s["counts"][:3] == [3, 0, 2]
    assert s["kl"] == pytest.approx(md.kl_to_uniform(np.array(s["counts"])))


def test_make_writes_readable_balanced_pngs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "modes"
    assert md.main(["make", "--out", str(out), "--n", str(md.M + 4), "--seed", "2"]) == 0
    files = sorted(out.glob("*.png"))
    assert len(files) == md.M + 4 and "wrote 52 PNGs" in capsys.readouterr().out
    with Image.open(files[0]) as im:
        assert im.size == (32, 32) and im.mode == "RGB"
    counts = np.bincount([int(f.stem.split("-m")[1]) for f in files], minlength=md.M)
    assert counts.min() == 1 and counts.max() == 2
    assert len(load_folder(out, 32).images) == md.M + 4  # what `ganzoo train --data` reads
    with pytest.raises(SystemExit):  # never mixed into a folder that already holds images
        md.make_dataset(out, 4)


@pytest.fixture(scope="module")
def tiny_labeller(tmp_path_factory: pytest.TempPathFactory) -> tuple[md.Labeller, Path]:
    cache = tmp_path_factory.mktemp("labeller")
    labeller, info = md.get_labeller(TINY, cache=cache)
    assert 0 <= info["accuracy"] <= 1 and info["held_out"] == md.M
    return labeller, cache


def test_labeller_is_cached_as_safetensors_and_reloaded_without_pickle(
        tiny_labeller: tuple[md.Labeller, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    labeller, cache = tiny_labeller
    [path] = cache.glob("labeller-*.safetensors")
    header = json.loads(path.read_bytes()[8:8 + int.from_bytes(path.read_bytes()[:8], "little")])
    assert "accuracy" in json.loads(header["__metadata__"]["info"])
    md._LOADED.clear()

    def no_pickle(*args: object, **kwargs: object) -> None:
        raise AssertionError("unpickled")

    monkeypatch.setattr(torch, "load", no_pickle)
    monkeypatch.setattr("pickle.load", no_pickle)
    monkeypatch.setattr("pickle.loads", no_pickle)
    monkeypatch.setattr(md, "train_labeller", no_pickle)  # loaded, not trained again
    again, _ = md.get_labeller(TINY, cache=cache)
    for a, b in zip(labeller.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_damaged_cache_is_trained_again(tmp_path: Path) -> None:
    path = tmp_path / f"labeller-{TINY.digest()}.safetensors"
    path.write_bytes(b"not a safetensors file")
    md._LOADED.clear()
    _, info = md.get_labeller(TINY, cache=tmp_path)
    assert "accuracy" in info and path.read_bytes()[:8] != b"not a sa"


def test_label_and_evaluate_a_generator(tiny_labeller: tuple[md.Labeller, Path]) -> None:
    labeller, _ = tiny_labeller
    images = md.to_tensor(md.draw_modes(np.arange(6), seed=0))
    modes, conf = md.label(labeller, images)
    assert modes.shape == conf.shape == (6,) and ((modes >= 0) & (modes < md.M)).all()
    assert ((conf > 0) & (conf <= 1)).all()
    big = torch.nn.functional.interpolate(images, size=64)  # other resolutions are resized
    assert md.label(labeller, big)[0].shape == (6,)
    torch.manual_seed(0)
    G = api.build("arch", "conv32", {"width": 8, "latent_dim": 16}).build_generator().eval()
    r = md.evaluate_generator(G, 12, seed=1, labeller=labeller, threshold=0.0)
    assert r["n"] == 12 and r["off_mode"] == 0 and sum(r["counts"]) == 12
    assert 1 <= r["covered"] <= 12 and r["covered_min"] <= r["covered"]
    floor = md.real_floor(12, repeats=2, labeller=labeller, threshold=0.0)
    assert floor["repeats"] == 2 and len(floor["per_repeat"]) == 2 and floor["kl"] >= 0


def test_eval_command_prints_table_and_json(tiny_labeller: tuple[md.Labeller, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    _, cache = tiny_labeller
    monkeypatch.setattr(md, "SPEC", TINY)
    data = tmp_path / "data"
    md.make_dataset(data, 8)
    run = tmp_path / "run"
    api.train({"arch": "conv32", "data": str(data), "batch_size": 4, "steps": 1,
               "options": {"conv32": {"width": 4}}}, out=run)
    capsys.readouterr()
    args = ["eval", str(run), "--n", "8", "--real-repeats", "2", "--cache", str(cache)]
    assert md.main(args) == 0
    out = capsys.readouterr().out
    assert "real draws (floor, mean of 2)" in out and f"| {run} | 1 | 8 |" in out
    assert md.main([*args, "--json", "--checkpoint", "last"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["runs"][0]["n"] == 8 and doc["real"]["n"] == 8 and doc["modes"] == md.M
    with pytest.raises(SystemExit, match=r"^error: .*nope.* does not exist$"):
        md.main(["eval", str(tmp_path / "nope"), "--n", "8", "--cache", str(cache)])


def test_zoo_command_trains_each_candidate_once_then_evaluates(
        tiny_labeller: tuple[md.Labeller, Path], tmp_path: Path, capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    _, cache = tiny_labeller
    monkeypatch.setattr(md, "SPEC", TINY)
    recipe = tmp_path / "tiny.toml"
    recipe.write_text('arch = "conv32"\nbatch_size = 4\n[options.conv32]\nwidth = 4\n')
    out = tmp_path / "zoo"
    args = ["zoo", str(recipe), "--out", str(out), "--minutes", "0.01", "--images", "8",
            "--n", "8", "--real-repeats", "1", "--cache", str(cache), "--json"]
    assert md.main(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["run"] for r in doc["runs"]] == [str(out / "tiny")] and doc["runs"][0]["n"] == 8
    assert len(list((out / "data").glob("*.png"))) == 8 and (out / "tiny.done").is_file()
    last = sorted((out / "tiny" / "checkpoints").glob("*.safetensors"))
    stamps = [p.stat().st_mtime_ns for p in last]
    assert md.main(args) == 0  # finished: evaluated again, not trained again
    capsys.readouterr()
    assert [p.stat().st_mtime_ns for p in last] == stamps
    name, path = md.candidate_recipe("fastgan", tmp_path / "recipes")
    assert name == "fastgan" and 'arch = "fastgan32"' in path.read_text()
    with pytest.raises(SystemExit, match="no-such-recipe"):
        md.candidate_recipe("no-such-recipe", tmp_path / "recipes")
