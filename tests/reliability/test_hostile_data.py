"""Hostile and odd image files: usable ones train (converted correctly), the rest are skipped and
counted; a folder with nothing usable is one clear error. HOSTILE_FILES counts the kinds fed."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from gan_zoo.cli import cli
from gan_zoo.data import MAX_PIXELS, load_folder, load_image

from .helpers import TINY_ARGS, no_hang

RES = 32


def _png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and header claiming width x height over a few bytes of data: a
    decompression bomb as far as anything that trusts the header is concerned."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def _encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _good(colour=(200, 30, 30), size=(40, 40)) -> Image.Image:
    return Image.new("RGB", size, colour)


# Files that must be skipped: name -> bytes.
def _bad_files() -> dict[str, bytes]:
    png, jpg = _encoded(_good(), "PNG"), _encoded(_good(size=(64, 64)), "JPEG", quality=90)
    return {
        "zero.png": b"",
        "zero.jpg": b"",
        "truncated.png": png[: len(png) // 2],
        "truncated.jpg": jpg[: len(jpg) // 3],
        "header_only.jpg": jpg[:20],
        "text.png": b"this is not an image\n" * 10,
        "html.jpg": b"<!doctype html><html><body>not a jpeg</body></html>",
        "random.webp": np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "pdf.bmp": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n",
        "bomb_30k.png": _png_header_only(30_000, 30_000),  # over PIL's own limit
        "bomb_9k.png": _png_header_only(9_000, 9_000),  # under PIL's, over gan-zoo's MAX_PIXELS
        "bomb_wide.png": _png_header_only(2**31 - 1, 1),
        # Other formats under an image name: Pillow is told to try only the listed formats,
        # so a renamed file never reaches another decoder (EPS would start Ghostscript).
        "ppm_named.png": b"P6 2 2 255\n" + bytes(12),
        "eps_named.jpg": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n",
        "truncated.gif": _encoded(_good(), "GIF")[:30],
        "truncated.tif": _encoded(_good(), "TIFF")[:60],
    }


def _odd_but_usable() -> dict[str, tuple[Image.Image, str, dict]]:
    """name -> (image, format, save kwargs) of files that must load."""
    palette = Image.new("P", (40, 40), 1)
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    transparent_palette = palette.copy()
    transparent_palette.info["transparency"] = 1
    return {
        "gray.png": (Image.new("L", (40, 40), 128), "PNG", {}),
        "gray_alpha.png": (Image.new("LA", (40, 40), (60, 255)), "PNG", {}),
        "rgba_clear.png": (Image.new("RGBA", (40, 40), (255, 0, 0, 0)), "PNG", {}),
        "rgba_opaque.png": (Image.new("RGBA", (40, 40), (0, 0, 255, 255)), "PNG", {}),
        "palette.png": (palette, "PNG", {}),
        "palette_transparent.png": (transparent_palette, "PNG", {"transparency": 1}),
        "bilevel.png": (Image.new("1", (40, 40), 1), "PNG", {}),
        "sixteen_bright.png": (Image.fromarray(np.full((40, 40), 65535, np.uint16)), "PNG", {}),
        "sixteen_dark.png": (Image.fromarray(np.full((40, 40), 300, np.uint16)), "PNG", {}),
        "cmyk.jpg": (Image.new("CMYK", (40, 40), (0, 255, 255, 0)), "JPEG", {"quality": 95}),
        "tiny_4px.png": (_good(size=(4, 4)), "PNG", {}),
        "one_pixel.bmp": (_good(size=(1, 1)), "BMP", {}),
        "tall_1x600.png": (_good(size=(1, 600)), "PNG", {}),
        "wide_2000x3.png": (_good(size=(2000, 3)), "PNG", {}),
        "exif_rotated.jpg": _exif_rotated(),
        "webp.webp": (_good(), "WEBP", {"lossless": True}),
        "gif.gif": (_good(), "GIF", {}),
        "tiff.tif": (_good(), "TIFF", {}),
        "tiff_lzw.tiff": (_good(), "TIFF", {"compression": "tiff_lzw"}),
        "sixteen.tiff": (Image.fromarray(np.full((40, 40), 65535, np.uint16)), "TIFF", {}),
        "float.tif": (Image.fromarray(np.full((40, 40), 0.5, np.float32)), "TIFF", {}),
        "jfif.jfif": (_good(), "JPEG", {"quality": 95}),
    }


def _exif_rotated() -> tuple[Image.Image, str, dict]:
    """Stored 40 wide x 20 high, left half red, right half blue, EXIF orientation 6 (display
    rotated 90 degrees clockwise): upright it is 20 wide x 40 high, red on top."""
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = (255, 0, 0)
    arr[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    return Image.fromarray(arr), "JPEG", {"exif": exif.tobytes(), "quality": 95}


HOSTILE_FILES = len(_bad_files()) + len(_odd_but_usable()) + 5  # + links, FIFO, names (below)


def _write_usable(folder: Path) -> None:
    for name, (img, fmt, kw) in _odd_but_usable().items():
        (folder / name).write_bytes(_encoded(img, fmt, **kw))


def _write_bad(folder: Path) -> None:
    for name, data in _bad_files().items():
        (folder / name).write_bytes(data)


def _write_special(folder: Path) -> None:
    """Symlink loops, a dangling link, a link to a device and a FIFO, all with image names."""
    os.symlink("self_loop.png", folder / "self_loop.png")
    os.symlink("nowhere/missing.png", folder / "dangling.png")
    os.symlink(".", folder / "dir_loop")  # a directory loop: must not be followed
    os.symlink("/dev/zero", folder / "device.png")
    os.mkfifo(folder / "fifo.png")  # opening it would block forever


def _load(path: Path) -> np.ndarray:
    return load_image(path, RES)


@pytest.mark.parametrize("name", sorted(_bad_files()))
def test_bad_file_is_rejected_by_the_decoder(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(_bad_files()[name])
    with no_hang(), pytest.raises(Exception):  # noqa: B017 -- any decode error; it is skipped
        _load(path)


def test_pixel_limit_is_what_refuses_the_bomb(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(9_000, 9_000))
    assert MAX_PIXELS < 9_000 * 9_000
    with pytest.raises(ValueError, match="exceeds the .* pixel limit"):
        _load(path)


def test_odd_formats_convert_to_rgb_correctly(tmp_path):
    _write_usable(tmp_path)
    out = {name: _load(tmp_path / name) for name in _odd_but_usable()}
    for name, arr in out.items():
        assert arr.shape == (RES, RES, 3) and arr.dtype == np.uint8, name
    centre = {name: tuple(int(c) for c in arr[RES // 2, RES // 2]) for name, arr in out.items()}
    assert centre["gray.png"] == (128, 128, 128)
    assert centre["gray_alpha.png"] == (60, 60, 60)
    assert centre["rgba_clear.png"] == (255, 255, 255)  # transparent -> white, not black or red
    assert centre["rgba_opaque.png"] == (0, 0, 255)
    assert centre["palette.png"] == (10, 200, 30)
    assert centre["palette_transparent.png"] == (255, 255, 255)
    assert centre["bilevel.png"] == (255, 255, 255)
    assert centre["sixteen_bright.png"] == (255, 255, 255)
    assert centre["sixteen_dark.png"] == (1, 1, 1)  # 300/65535 of full scale, not 300/255
    r, g, b = centre["cmyk.jpg"]
    assert r > 200 and g < 40 and b < 40  # C=0 M=Y=255 is red
    for name in ("tiny_4px.png", "one_pixel.bmp", "tall_1x600.png", "wide_2000x3.png",
                 "gif.gif", "tiff.tif", "tiff_lzw.tiff"):
        assert centre[name] == (200, 30, 30), name
    assert centre["sixteen.tiff"] == (255, 255, 255)
    assert centre["float.tif"] == (128, 128, 128)  # floats in 0..1: 0.5 is mid-grey
    assert all(abs(a - b) < 8 for a, b in zip(centre["jfif.jfif"], (200, 30, 30), strict=True))


def test_exif_orientation_is_applied(tmp_path):
    img, fmt, kw = _exif_rotated()
    (tmp_path / "r.jpg").write_bytes(_encoded(img, fmt, **kw))
    arr = _load(tmp_path / "r.jpg").astype(int)
    top, bottom = arr[2, RES // 2], arr[-3, RES // 2]
    assert top[0] > 200 and top[2] < 60, top  # red on top once upright
    assert bottom[2] > 200 and bottom[0] < 60, bottom


def test_extreme_aspect_ratio_keeps_the_centre(tmp_path):
    arr = np.zeros((3, 2000, 3), np.uint8)
    arr[:] = (255, 0, 0)
    arr[:, 995:1005] = (0, 255, 0)
    Image.fromarray(arr).save(tmp_path / "strip.png")
    assert tuple(_load(tmp_path / "strip.png")[RES // 2, RES // 2]) == (0, 255, 0)


def test_mixed_folder_keeps_every_usable_image_and_counts_the_rest(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    _write_usable(folder)
    _write_bad(folder)
    _write_special(folder)
    sub = folder / "sub"
    sub.mkdir()
    weird = os.fsencode(str(sub)) + b"/\xff\xfe-latin1-\xe9.png"  # not valid UTF-8
    Image.new("RGB", (40, 40), (1, 2, 3)).save(os.fsdecode(weird))
    arr = load_folder(folder, RES)
    usable = len(_odd_but_usable()) + 1
    assert len(arr) == usable
    # Bad files, the looping/dangling/device links and the FIFO are skipped and counted; the
    # directory loop is not followed (else images would be counted again).
    assert arr.skipped == len(_bad_files()) + 4
    assert arr.images.shape == (usable, RES, RES, 3)


def test_mixed_folder_trains_from_the_cli(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    _write_usable(folder)
    _write_bad(folder)
    result = CliRunner().invoke(cli, ["train", "--data", str(folder), *TINY_ARGS, "--steps", "2",
                                      "--batch-size", "4", "--out", str(tmp_path / "run"), "-q"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "checkpoints" / "step-0000002.safetensors").exists()


def _cli_train(tmp_path, data) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["train", "--data", str(data), *TINY_ARGS, "--steps", "1",
                                      "--out", str(tmp_path / "run")])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_empty_folder_is_one_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    code, out = _cli_train(tmp_path, tmp_path / "empty")
    assert code == 1 and "Error: no images in" in out


def test_folder_of_only_bad_files_is_one_clear_error(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    _write_bad(folder)
    _write_special(folder)
    code, out = _cli_train(tmp_path, folder)
    assert code == 1
    assert f"Error: none of the {len(_bad_files()) + 4} image files" in out


def test_data_folder_with_non_utf8_name_is_one_clear_error(tmp_path):
    folder = os.fsdecode(os.fsencode(str(tmp_path)) + b"/caf\xe9")
    os.mkdir(folder)
    Image.new("RGB", (40, 40)).save(os.path.join(folder, "a.png"))
    code, out = _cli_train(tmp_path, folder)
    assert code == 2 and "is not valid UTF-8" in out and "rename" in out


def test_data_that_is_a_file_or_missing(tmp_path):
    (tmp_path / "a.png").write_bytes(_encoded(_good(), "PNG"))
    code, out = _cli_train(tmp_path, tmp_path / "a.png")
    assert code == 1 and "must be a folder of images" in out
    code, out = _cli_train(tmp_path, tmp_path / "missing")
    assert code == 1 and "does not exist" in out


def test_animated_gif_gives_its_first_frame(tmp_path):
    frames = [_good((255, 0, 0)), _good((0, 0, 255)), _good((0, 255, 0))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    assert tuple(_load(tmp_path / "anim.gif")[RES // 2, RES // 2]) == (255, 0, 0)
    pages = tmp_path / "pages.tiff"
    frames[1].save(pages, save_all=True, append_images=frames[2:])
    assert tuple(_load(pages)[RES // 2, RES // 2]) == (0, 0, 255)


def test_formats_not_read_are_counted_by_kind(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        (folder / f"ok{i}.png").write_bytes(_encoded(_good(), "PNG"))
    (folder / "anim.gif").write_bytes(_encoded(_good(), "GIF"))
    (folder / "scan.TIF").write_bytes(_encoded(_good(), "TIFF"))
    (folder / "broken.gif").write_bytes(b"GIF89a" + bytes(10))
    (folder / "phone.heic").write_bytes(b"\0\0\0\x18ftypheic")
    (folder / "phone2.HEIC").write_bytes(b"\0\0\0\x18ftypheic")
    (folder / "logo.svg").write_text("<svg/>")
    (folder / "labels.txt").write_text("not an image: not counted")
    arr = load_folder(folder, RES)
    assert len(arr) == 5
    assert arr.skipped == 4
    assert arr.skipped_kinds == {".gif": 1, ".heic": 2, ".svg": 1}
    assert arr.skipped_summary() == "4 unreadable file(s) (.gif: 1, .heic: 2, .svg: 1)"
    again = load_folder(folder, RES)  # from the cache: the same counts
    assert (again.skipped, again.skipped_kinds) == (arr.skipped, arr.skipped_kinds)


def test_the_training_log_names_the_kinds_skipped(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(4):
        (folder / f"ok{i}.png").write_bytes(_encoded(_good(), "PNG"))
    (folder / "phone.heic").write_bytes(b"\0\0\0\x18ftypheic")
    (folder / "cut.png").write_bytes(b"\x89PNG\r\n")
    result = CliRunner().invoke(cli, ["train", "--data", str(folder), *TINY_ARGS, "--steps", "1",
                                      "--batch-size", "4", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert f"skipped 2 unreadable file(s) (.heic: 1, .png: 1) in {folder}" in result.output


def test_folder_of_only_unsupported_formats_says_so(tmp_path):
    folder = tmp_path / "phone"
    folder.mkdir()
    for i in range(2):
        (folder / f"IMG_{i}.HEIC").write_bytes(b"\0\0\0\x18ftypheic")
    code, out = _cli_train(tmp_path, folder)
    assert code == 1 and "no images in" in out and "found 2 .heic file(s)" in out, out
    assert "convert them to PNG or JPEG" in out


def _sixteen_bit_8000(path: Path) -> Path:
    Image.fromarray(np.zeros((8000, 8000), np.uint16)).save(path)  # ~124 KB on disk
    return path


def test_sixteen_bit_8000px_png_decodes_without_float_copies(tmp_path):
    """The 124 KB 16-bit 8000x8000 PNG of issue 14 took 1.6 GB (float64 copies of the whole
    image). numpy allocations are traced: the whole image is never copied into numpy now
    (Pillow's own 128 MB buffer is not traced, and is within MAX_DECODE_BYTES)."""
    import tracemalloc

    path = _sixteen_bit_8000(tmp_path / "big16.png")
    assert path.stat().st_size < 200_000
    tracemalloc.start()
    try:
        arr = _load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert arr.shape == (RES, RES, 3) and int(arr.max()) == 0
    assert peak < 16 * 2**20, f"{peak >> 20} MiB of numpy arrays"


def test_decode_memory_limit_is_checked_from_the_header(tmp_path, monkeypatch):
    from gan_zoo.data import folders as data_mod

    assert data_mod.pixel_bytes("I;16") == 2 and data_mod.pixel_bytes("RGB") == 4
    assert data_mod.pixel_bytes("P") == 1
    # What the limit is for: every mode MAX_PIXELS lets through fits in it.
    assert MAX_PIXELS * 4 <= data_mod.MAX_DECODE_BYTES
    path = _sixteen_bit_8000(tmp_path / "big16.png")
    monkeypatch.setattr(data_mod, "MAX_DECODE_BYTES", 100 * 2**20)  # < 8000*8000*2
    def decoded(self, *args, **kwargs):
        raise AssertionError("pixels were decoded before the size was checked")

    monkeypatch.setattr(Image.Image, "load", decoded)  # refused from the header alone
    with pytest.raises(ValueError, match="122 MiB, over the 100 MiB limit"):
        _load(path)


def test_large_photo_is_reduced_like_a_full_lanczos_resize(tmp_path):
    """Crop-and-reduce first (and JPEG DCT scaling) gives what resizing the whole image gave."""
    rng = np.random.default_rng(0)
    smooth = Image.fromarray(rng.integers(0, 256, (6, 9, 3), dtype=np.uint8)).resize(
        (1800, 1200), Image.Resampling.BICUBIC)
    for name, fmt in (("big.png", "PNG"), ("big.jpg", "JPEG")):
        smooth.save(tmp_path / name, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
        got = _load(tmp_path / name).astype(int)
        with Image.open(tmp_path / name) as im:
            full = im.convert("RGB").crop((300, 0, 1500, 1200))
            want = np.asarray(full.resize((RES, RES), Image.Resampling.LANCZOS)).astype(int)
        assert np.abs(got - want).max() <= 2, (name, np.abs(got - want).max())


def _seeds() -> dict[str, bytes]:
    """One small valid file per format read, to mutate."""
    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 256, (24, 30, 3), dtype=np.uint8))
    frames = [img, img.rotate(90)]
    anim = io.BytesIO()
    frames[0].save(anim, "GIF", save_all=True, append_images=frames[1:])
    return {"png": _encoded(img, "PNG"), "jpg": _encoded(img, "JPEG"),
            "webp": _encoded(img, "WEBP"), "bmp": _encoded(img, "BMP"), "gif": anim.getvalue(),
            "tif": _encoded(img, "TIFF", compression="tiff_lzw"),
            "png16": _encoded(Image.fromarray(rng.integers(0, 65535, (20, 20), dtype=np.uint16)),
                              "PNG")}


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_mutated_images_are_decoded_or_skipped_quickly(tmp_path_factory, data):
    """Bytes flipped, cut or repeated anywhere in a valid file of each format read (headers
    claiming huge sizes included): the loader returns an image or skips the file, in well
    under a second, never an exception or a hang."""
    from gan_zoo.data.folders import _try_load

    seeds = _seeds()
    kind = data.draw(st.sampled_from(sorted(seeds)))
    raw = bytearray(seeds[kind])
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        action = data.draw(st.sampled_from(["flip", "ff", "cut", "repeat"]))
        if action == "flip":
            raw[at] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "ff":
            raw[at : at + 4] = b"\xff\xff\xff\x7f"
        elif action == "cut":
            del raw[at:]
            raw += b"\0" if not raw else b""
        else:
            raw[at:at] = raw[at : at + 64] * 8
    path = tmp_path_factory.mktemp("mut") / f"m.{kind.removesuffix('16')}"
    path.write_bytes(bytes(raw))
    with no_hang():
        out = _try_load(path, RES)
    assert out is None or (out.shape == (RES, RES, 3) and out.dtype == np.uint8)


def test_sixteen_bit_8000px_png_peak_memory(tmp_path):
    """Peak resident memory of decoding that PNG, measured in a fresh process: 1.7 GB more than
    before decoding in the old code, about 160 MB now (Pillow's 128 MB 16-bit image)."""
    import subprocess
    import sys

    path = _sixteen_bit_8000(tmp_path / "big16.png")
    script = ("import resource, sys\nfrom gan_zoo.data import load_image\n"
              "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
              "load_image(sys.argv[1], 32)\n"
              "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n")
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    grown_mib = int(done.stdout.split()[-1]) / 1024  # ru_maxrss is in KiB on Linux
    assert grown_mib < 300, f"decoding grew peak RSS by {grown_mib:.0f} MiB"
