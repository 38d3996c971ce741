"""The static page renders in a real browser: every figure has pixels, every table its rows.

Chromium (Debian's ``chromium``) is driven headless with ``--dump-dom`` after a small script, added to a
copy of the page, writes each image's natural size and each table's row count into the DOM. Without
Chromium the test is skipped, except under CI (``CI`` set), where a missing browser is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from raddino.io.png import write_png
from raddino.viz.loss_curves import write_loss_curves
from raddino.viz.page import (
    Figure,
    ReportPairs,
    Section,
    Table,
    Text,
    parse_markdown_tables,
    render_markdown,
    write_page,
)

_PROBE = """
<script>
window.addEventListener("load", () => {
  const out = document.createElement("pre");
  out.id = "probe";
  const lines = [];
  document.querySelectorAll("img").forEach((img, i) => {
    lines.push(`img ${i} ${img.naturalWidth} ${img.naturalHeight} ${img.complete}`);
  });
  document.querySelectorAll("table").forEach((table, i) => {
    lines.push(`table ${i} ${table.tBodies[0].rows.length} ${table.tHead.rows[0].cells.length}`);
  });
  out.textContent = lines.join("\\n");
  document.body.appendChild(out);
});
</script>
"""


def chromium_or_skip() -> str:
    """The browser's path; skipped locally without one, a failure under CI."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed but CI is set (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return browser


def rendered_sizes(page: Path, workdir: Path) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Natural (width, height) of each image and (body rows, columns) of each table as Chromium shows
    ``page``."""
    browser = chromium_or_skip()
    probed = workdir / "probed.html"
    probed.write_text(page.read_text(encoding="utf-8").replace("</body>", _PROBE + "</body>"), "utf-8")
    completed = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={workdir / 'profile'}",
            "--dump-dom",
            probed.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    match = re.search(r'<pre id="probe">(.*?)</pre>', completed.stdout, re.S)
    assert match, f"no probe output; chromium said: {completed.stderr[-2000:]}"
    images, tables = [], []
    for line in match.group(1).splitlines():
        kind, _, first, second, *_ = line.split()
        (images if kind == "img" else tables).append((int(first), int(second)))
    return images, tables


@pytest.fixture
def page_folder(tmp_path: Path) -> Path:
    grey = np.tile(np.linspace(0, 1, 48, dtype=np.float32), (32, 1))  # (32, 48) ramp
    png = write_png(tmp_path / "figures" / "ramp.png", grey)
    records = [{"iteration": i, "loss": 10 - i, "dino": 5 - i / 2, "ibot": 3.0} for i in range(1, 6)]
    svg = write_loss_curves(records, tmp_path / "figures" / "loss.svg")
    sections = [
        Section("Overview", [Text("A **bold** claim & <escaped> text.")]),
        Section("Curves", [Figure(svg, "losses")]),
        Section(
            "Tables",
            [
                Table(["encoder", "AUPRC"], [["a", "**0.9**"], ["b", "0.5"]], "probe"),
                Table(["encoder", "Dice", "HD"], [["a", "0.8", "3"]]),
            ],
        ),
        Section("Figures", [Figure(png, "ramp")]),
        Section("Reports", [ReportPairs([("s1", "Heart size is normal.", "Heart | normal.")], "gen")]),
    ]
    write_page("Test page", sections, tmp_path / "page.html", tmp_path / "page.md")
    return tmp_path


def test_every_figure_and_table_renders_in_chromium(page_folder: Path, tmp_path: Path) -> None:
    images, tables = rendered_sizes(page_folder / "page.html", tmp_path)
    # the SVG keeps its declared size: 3 panels of 2.8 x 2.3 in (96 CSS px per in); the PNG its pixels
    assert images == [(806, 221), (48, 32)]
    assert tables == [(2, 2), (1, 3), (1, 3)]


def test_page_is_self_contained_and_escapes_text(page_folder: Path) -> None:
    page = (page_folder / "page.html").read_text(encoding="utf-8")
    assert 'src="data:image/png;base64,' in page
    assert 'src="data:image/svg+xml;base64,' in page
    assert "figures/" not in page  # nothing is loaded from beside the page
    assert "<strong>bold</strong>" in page
    assert "&lt;escaped&gt;" in page
    assert [a for a in re.findall(r'<section id="([^"]+)"', page)] == [
        "overview",
        "curves",
        "tables",
        "figures",
        "reports",
    ]


def test_markdown_twin_links_figures_and_round_trips_tables(page_folder: Path) -> None:
    text = (page_folder / "page.md").read_text(encoding="utf-8")
    assert "![ramp](figures/ramp.png)" in text
    assert "![losses](figures/loss.svg)" in text
    tables = parse_markdown_tables(text)
    assert [t.header for t in tables] == [
        ["encoder", "AUPRC"],
        ["encoder", "Dice", "HD"],
        ["study", "reference", "generated"],
    ]
    assert tables[0].rows == [["a", "**0.9**"], ["b", "0.5"]]
    assert tables[2].rows == [["s1", "Heart size is normal.", "Heart | normal."]]  # escaped and restored


def test_missing_figure_type_and_empty_metrics_are_named_errors(tmp_path: Path) -> None:
    odd = tmp_path / "figure.gif"
    odd.write_bytes(b"GIF89a")
    with pytest.raises(ValueError, match=r"figure\.gif: not an image"):
        write_page("x", [Section("s", [Figure(odd, "gif")])], tmp_path / "r.html", tmp_path / "r.md")
    with pytest.raises(ValueError, match="no loss values"):
        write_loss_curves([{"iteration": 1, "lr": 0.1}], tmp_path / "loss.svg")
    assert "s" in render_markdown("x", [Section("s")], tmp_path)


@pytest.mark.slow
def test_quick_demo_page_renders_every_figure_and_table_in_chromium(tmp_path: Path) -> None:
    from raddino.demo import quick_plan, run_demo

    result = run_demo(tmp_path / "demo", quick_plan(), seed=2)
    images, tables = rendered_sizes(result.page, tmp_path)
    # loss curves, attention, correspondences, PCA, 2 segmentation overlays × 3 encoders
    assert len(images) == 10
    assert all(width >= 56 and height >= 56 for width, height in images)
    # 4 comparison tables (3 encoders + Δ), the margins, report scores, generated reports × 3 encoders
    assert len(tables) == 9
    assert [rows for rows, _ in tables[:4]] == [4, 4, 4, 4]
    assert tables[5] == (3, 4)  # report scores: 3 encoders; encoder, studies, ROUGE-L, BLEU-4
    assert [rows for rows, _ in tables[6:]] == [3, 3, 3]
