"""``raddino demo --quick``: every step runs end to end on built-in data, the page holds every section,
and a re-run resumes instead of redoing the work."""

from __future__ import annotations

import base64
import io
import json
import re
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from raddino.cli import app
from raddino.config import load_config
from raddino.demo import DEMO_CPU, full_plan, quick_plan
from raddino.pretrain.config import PretrainConfig, load_pretrain_config
from raddino.viz.page import parse_markdown_tables

SECTIONS = [
    "overview",
    "pre-training-loss-curves",
    "comparison",
    "reports",
    "attention",
    "correspondences",
    "pca",
    "segmentation",
]


@pytest.mark.slow
def test_quick_demo_writes_every_section_and_a_rerun_resumes(tmp_path):
    out = tmp_path / "demo"
    first = CliRunner().invoke(app, ["demo", "--out", str(out), "--quick", "--seed", "1"])
    assert first.exit_code == 0, first.output
    assert "25 step(s) run, 0 already done" in first.output

    page = (out / "report.html").read_text(encoding="utf-8")
    assert re.findall(r'<section id="([^"]+)"', page) == SECTIONS
    # figures are embedded and decode to real images: loss curves (SVG), attention, correspondences,
    # PCA, and two segmentation overlays per encoder (pre-trained, random init, iBOT off)
    sources = re.findall(r'<img src="data:([^;]+);base64,([^"]+)"', page)
    assert [mime for mime, _ in sources] == ["image/svg+xml"] + ["image/png"] * 9
    for _, payload in sources[1:]:
        width, height = Image.open(io.BytesIO(base64.b64decode(payload))).size
        assert width >= 56
        assert height >= 56
    # matplotlib's loss curves: one 1.6-wide data line per panel (total, DINO, iBOT, KoLeo)
    assert base64.b64decode(sources[0][1]).count(b"stroke-width: 1.6") == 4

    markdown = (out / "report.md").read_text(encoding="utf-8")
    tables = parse_markdown_tables(markdown)
    captions = re.findall(r"^\*(.+)\*$", markdown, re.M)
    assert any("Linear probing" in c for c in captions)
    assert any("Table 5" in c for c in captions)
    # 4 task tables (3 encoders + the Δ row), the margins table, the report-generation table and the
    # generated reports of each encoder
    comparison = [t for t in tables if t.header[0] == "encoder"]
    assert len(comparison) == 4
    assert all(len(t.rows) == 4 for t in comparison)
    assert [row[0] for row in comparison[0].rows] == [
        "pre-trained",
        "random init",
        "iBOT off",
        "Δ best − runner-up",
    ]
    assert comparison[0].header[1:3] == ["macro_auprc", "macro_auroc"]
    pairs = [t for t in tables if t.header == ["study", "reference", "generated"]]
    assert len(pairs) == 3
    assert all(len(t.rows) == 3 and t.rows[0][1].startswith("FINDINGS") for t in pairs)
    for figure in re.findall(r"\]\(([^)]+)\)", markdown):
        assert (out / figure).is_file(), figure

    summary = json.loads((out / "demo.json").read_text(encoding="utf-8"))
    assert set(summary["margins"]) == {"probe", "knn", "metadata", "segment"}
    assert set(summary["report_generation"]) == {"pre-trained", "random init", "iBOT off"}
    assert summary["plan"]["images"] == quick_plan().images
    loss_records = (out / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(loss_records) == 4  # quick plan: 2 epochs × 2 iterations, logged every iteration
    # the ablation is the same recipe with the iBOT loss off
    assert yaml.safe_load((out / "run_ibot_off" / "config.yaml").read_text())["ibot"]["loss_weight"] == 0
    assert yaml.safe_load((out / "run" / "config.yaml").read_text())["ibot"]["loss_weight"] == 1
    report_mtime = (out / "report.html").stat().st_mtime_ns

    second = CliRunner().invoke(app, ["demo", "--out", str(out), "--quick", "--seed", "1"])
    assert second.exit_code == 0, second.output
    assert "0 step(s) run, 25 already done" in second.output
    assert (out / "report.html").stat().st_mtime_ns == report_mtime
    assert json.loads((out / "demo.json").read_text())["margins"] == summary["margins"]

    # a lost step output is redone once its record is removed; the others stay skipped
    state = json.loads((out / "demo_state.json").read_text())
    del state["page"]
    (out / "demo_state.json").write_text(json.dumps(state))
    (out / "report.html").unlink()
    third = CliRunner().invoke(app, ["demo", "--out", str(out), "--quick", "--seed", "1"])
    assert third.exit_code == 0, third.output
    assert "1 step(s) run, 24 already done" in third.output
    assert (out / "report.html").read_text(encoding="utf-8") == page


def test_built_in_recipe_is_configs_demo_cpu_yaml() -> None:
    """``raddino demo`` runs from an installed package without the repo's configs/, so it carries the
    recipe in code; it must stay the one ``configs/demo_cpu.yaml`` documents and the benchmarks measure."""
    yaml_path = Path(__file__).resolve().parent.parent / "configs" / "demo_cpu.yaml"
    from_yaml = load_pretrain_config(yaml_path, ["train.dataset_path=x"])
    built_in = load_config(PretrainConfig, values={**DEMO_CPU, "train.dataset_path": "x"})
    assert asdict(built_in) == asdict(from_yaml)
    assert full_plan().pretrain == DEMO_CPU
    assert from_yaml.optim.epochs * from_yaml.train.OFFICIAL_EPOCH_LENGTH == 900
