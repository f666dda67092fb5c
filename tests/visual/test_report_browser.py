"""The report in a real browser: headless Chromium opens it, every image decodes, the console
stays clean, nothing is fetched from outside the file, and a screenshot shows the page."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from gan_zoo.visual.report import build_report

from ..cdp import find_chromium, open_page, problems_in
from .test_report import make_run

CHROMIUM = find_chromium()


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs it)")
def test_report_renders_in_headless_chromium(tmp_path):
    a = make_run(tmp_path / "face-model5", fids=(90.0, 60.0, 70.0))
    b = make_run(tmp_path / "face-model7-noise", fids=(80.0, 50.0), noise=True)
    report = build_report([a, b], tmp_path / "report.html")

    page, png, events = open_page(CHROMIUM, report.resolve().as_uri(), tmp_path / "profile")

    assert problems_in(events) == []
    # the only requests: the file itself and its data: URLs
    urls = [e["params"]["request"]["url"] for e in events
            if e.get("method") == "Network.requestWillBeSent"]
    assert urls and all(u.startswith(("file://", "data:")) for u in urls), urls
    assert page["scripts"] == 0
    images = page["images"]
    assert len(images) == 1 + 2 * 3  # overlay + (curves, evolution, grid) per run
    for img in images:
        assert img["complete"] and img["width"] > 0 and img["height"] > 0, img
        assert img["shown"] > 100, img  # laid out at a visible size
    assert page["headings"] == ["Comparison", "Curves overlaid", "face-model5",
                                "face-model7-noise"]
    assert "face-model7-noise" in page["text"] and "noise-anneal" in page["text"]

    shot = Image.open(io.BytesIO(png)).convert("RGB")
    (tmp_path / "screenshot.png").write_bytes(png)
    assert shot.width >= 1300 and shot.height > 3000  # the whole page, not a blank viewport
    pixels = np.asarray(shot, dtype=np.float32)
    assert pixels.std() > 20  # text, plots and sample grids, not an empty page
    # the dark header band is at the top
    assert pixels[:30, :, :].mean() < 80


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs it)")
def test_the_browser_check_sees_broken_images_and_console_errors(tmp_path):
    page_file = tmp_path / "bad.html"
    page_file.write_text('<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body>'
                         '<img alt="broken" src="data:image/png;base64,AAAA">'
                         '<script>console.error("boom"); undefinedFunction();</script></body></html>')
    page, _, events = open_page(CHROMIUM, page_file.as_uri(), tmp_path / "profile")
    found = problems_in(events)
    assert any("console.error" in p for p in found) and any("exception" in p for p in found)
    assert page["images"][0]["width"] == 0
