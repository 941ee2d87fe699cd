"""The report renders in headless Chromium: it loads, logs nothing, shows every section.

Skipped when Chromium is not installed, unless ``QSMIRON_REQUIRE_CHROMIUM=1`` (as in CI), which
turns a missing browser into a failure. Each test first proves on a deliberately broken page
that the check it relies on detects the fault.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest

from qsmiron.report.html import SECTION_IDS

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--enable-logging=stderr", "--v=0")
PROBLEM = re.compile(r":CONSOLE[:(\]]|Uncaught|net::ERR_|Failed to load resource")
"""Log lines that mean the page did something wrong (the report has no script: any console line)."""

CHECK_SCRIPT = """<script>
window.addEventListener('load', function () {
  var images = Array.from(document.images).map(function (i) { return [i.alt, i.naturalWidth, i.naturalHeight]; });
  document.body.setAttribute('data-check', JSON.stringify({
    images: images, scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
    title: document.title, sections: Array.from(document.querySelectorAll('section, header')).map(function (s) {
      return [s.id, s.getBoundingClientRect().height]; })}));
});
</script>"""
"""Appended to a test copy of the report only: records what the browser made of the page."""


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if path is None:
        if os.environ.get("QSMIRON_REQUIRE_CHROMIUM") == "1":
            pytest.fail("QSMIRON_REQUIRE_CHROMIUM=1 but chromium is not installed (apt-get install chromium)")
        pytest.skip("chromium is not installed")
    return path


def run_chromium(chromium: str, page: Path, profile: Path, *extra: str, timeout: float = 90) -> tuple[int, str, str]:
    """Run headless Chromium on ``page``; kill its whole process group if it hangs."""
    args = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, page.resolve().as_uri()]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"chromium did not finish within {timeout} s")
    return process.returncode, stdout, stderr


def problems(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if PROBLEM.search(line)]


def dom_check(dom: str) -> dict:
    match = re.search(r'data-check="([^"]*)"', dom)
    assert match, "the check script did not run"
    return json.loads(html.unescape(match.group(1)))


def test_log_check_catches_console_errors_and_script_exceptions(chromium, tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><p id='x'>x</p><script>console.error('boom');"
                    "notDefined();</script></body></html>")
    code, dom, stderr = run_chromium(chromium, page, tmp_path / "profile", "--dump-dom")
    assert code == 0 and 'id="x"' in dom
    found = problems(stderr)
    assert any("boom" in line for line in found)
    assert any("Uncaught ReferenceError" in line for line in found)


def test_report_loads_without_errors_and_shows_every_section(chromium, report, tmp_path):
    path, _ = report
    code, dom, stderr = run_chromium(chromium, path, tmp_path / "profile", "--dump-dom", "--window-size=1280,900")
    assert code == 0, stderr[-2000:]
    assert problems(stderr) == []
    for section in SECTION_IDS:
        assert f'id="{section}"' in dom, section
    for element in ("table1-table", "group-comparison-table", "associations-table", "relapse-table",
                    "fig-groups", "fig-associations", "fig-roc", "fig-km"):
        assert f'id="{element}"' in dom, element
    assert "<title>qsmiron study report</title>" in dom


def test_every_image_decodes_and_the_page_fits_the_window(chromium, report, tmp_path):
    # Control: a broken data URI is seen as an image of width 0.
    broken = tmp_path / "broken_image.html"
    broken.write_text("<!DOCTYPE html><html><body><img alt='bad' src='data:image/png;base64,AAAA'>"
                      f"{CHECK_SCRIPT}</body></html>")
    _, dom, _ = run_chromium(chromium, broken, tmp_path / "profile", "--dump-dom")
    assert dom_check(dom)["images"] == [["bad", 0, 0]]

    path, text = report
    copy = tmp_path / "report_checked.html"
    copy.write_text(text.replace("</body>", CHECK_SCRIPT + "</body>"), encoding="utf-8")
    code, dom, stderr = run_chromium(chromium, copy, tmp_path / "profile", "--dump-dom", "--window-size=1280,900")
    assert code == 0 and problems(stderr) == []
    check = dom_check(dom)
    assert len(check["images"]) == 7  # 4 figures, the QC strip plots, 2 QC images
    for alt, width, height in check["images"]:
        assert width > 0 and height > 0, alt
    # Wide tables scroll inside their own box; the page itself never scrolls sideways.
    assert check["scrollWidth"] <= check["innerWidth"]
    heights = dict(check["sections"])
    assert all(heights[section] > 20 for section in SECTION_IDS)


def test_screenshot_shows_a_rendered_page(chromium, report, tmp_path):
    path, _ = report
    shot = tmp_path / "report.png"
    code, _, stderr = run_chromium(chromium, path, tmp_path / "profile", f"--screenshot={shot}",
                                   "--window-size=1280,1600", "--hide-scrollbars")
    assert code == 0 and shot.exists(), stderr[-2000:]
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (1600, 1280)
    grey = pixels[..., :3].mean(axis=2)
    # Text and tables on a white page: mostly white, a real share of dark ink.
    assert 0.6 < float(np.mean(grey > 0.95)) < 0.995
    assert float(np.mean(grey < 0.5)) > 0.005


PRINT_WIDTH_PX = 703
"""A4 (210 mm) less the report's 12 mm print margins, in CSS pixels (96 per inch)."""

PRINT_CHECK_SCRIPT = """<script>
window.addEventListener('load', function () {
  var limit = document.documentElement.clientWidth;
  var wide = Array.from(document.querySelectorAll('table')).filter(function (t) {
    return t.getBoundingClientRect().right > limit + 1 || t.scrollWidth > t.parentElement.clientWidth + 1;
  }).map(function (t) { return t.id || t.className || 'table'; });
  var images = Array.from(document.images).map(function (i) {
    var figure = i.closest('figure');
    var caption = figure ? figure.querySelector('figcaption') : null;
    return [i.alt, caption ? caption.textContent.trim().length : 0, i.naturalWidth];
  });
  document.body.setAttribute('data-check', JSON.stringify({wide: wide, images: images,
    scrollWidth: document.documentElement.scrollWidth, width: limit}));
});
</script>"""
"""Measures, in the print layout, every table against the page's text width and every image's
alt text and caption."""


def print_layout(text: str) -> str:
    """The page as it prints: the print rules applied to the screen (the window is the A4 text width)."""
    return text.replace("@media print", "@media all").replace("</body>", PRINT_CHECK_SCRIPT + "</body>")


def test_no_table_is_wider_than_the_printed_page_and_every_image_has_alt_text_and_a_caption(
        chromium, study_report, tmp_path):
    # Control: a table of unbreakable cells overflows and an image without caption is caught.
    control = tmp_path / "control.html"
    cells = "".join(f"<td>{'x' * 60}</td>" for _ in range(6))
    control.write_text("<!DOCTYPE html><html><head><style>td { white-space: nowrap }</style></head><body>"
                       f"<table id='wide'><tr>{cells}</tr></table><img alt='' src='data:image/png;base64,AAAA'>"
                       f"{PRINT_CHECK_SCRIPT}</body></html>")
    _, dom, _ = run_chromium(chromium, control, tmp_path / "profile", "--dump-dom",
                             f"--window-size={PRINT_WIDTH_PX},1000")
    check = dom_check(dom)
    assert check["wide"] == ["wide"] and check["images"] == [["", 0, 0]]

    _, text, _ = study_report
    page = tmp_path / "print_layout.html"
    page.write_text(print_layout(text), encoding="utf-8")
    code, dom, stderr = run_chromium(chromium, page, tmp_path / "profile", "--dump-dom",
                                     f"--window-size={PRINT_WIDTH_PX},1000")
    assert code == 0 and problems(stderr) == []
    check = dom_check(dom)
    assert check["width"] <= PRINT_WIDTH_PX
    assert check["wide"] == [], f"tables wider than the printed page: {check['wide']}"
    assert check["scrollWidth"] <= check["width"]
    assert len(check["images"]) >= 8
    for alt, caption_length, width in check["images"]:
        assert alt.strip() and caption_length > 20 and width > 0, alt


def test_report_prints_to_pdf_and_renders_to_png(chromium, study_report, tmp_path):
    path, _, _ = study_report
    pdf, png = tmp_path / "report.pdf", tmp_path / "report.png"
    code, _, stderr = run_chromium(chromium, path, tmp_path / "profile", "--no-pdf-header-footer",
                                   f"--print-to-pdf={pdf}")
    assert code == 0 and pdf.exists(), stderr[-2000:]
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and len(re.findall(rb"/Type\s*/Page[^s]", data)) >= 5
    code, _, stderr = run_chromium(chromium, path, tmp_path / "profile", f"--screenshot={png}",
                                   "--window-size=1280,1000", "--hide-scrollbars")
    assert code == 0 and png.exists() and png.stat().st_size > 10_000, stderr[-2000:]
