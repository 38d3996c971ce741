"""The demo's page and its figures: what ``raddino demo`` shows once every step has run.

``figure_steps`` draws the paper's qualitative figures with the pre-trained encoder (attention maps as
Figure A.2, correspondences as Figures 3 / A.3, a PCA map as in the DINOv2 paper); ``build_page``
gathers them with the loss curves, the comparison tables, segmentation overlays and generated radiology
reports into ``report.html`` (self-contained) and ``report.md`` (the file names are the demo's outputs).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raddino.demo.robust import SeedMargin, headline, seed_margins
from raddino.io.atomic import atomic_write_text
from raddino.viz.page import (
    Figure,
    ReportPairs,
    Section,
    Table,
    Text,
    parse_markdown_tables,
    write_page,
)

if TYPE_CHECKING:
    from raddino.demo.plan import DemoPlan

TASK_TITLES = {
    "probe": "Linear probing of the findings (Table 2's layout)",
    "knn": "kNN classification (frozen CLS tokens)",
    "metadata": "Metadata prediction from frozen CLS tokens (Table 4's layout)",
    "segment": "Segmentation with a linear head on frozen patch tokens (Table 3's layout)",
}
# The summary metric of each task (the margins table of the page and demo.json's ``headline``).
HEADLINE = ("macro_auprc", "macro_auroc", "precision_at_k", "accuracy/sex", "accuracy/age", "dice/linear")
# Query points as fractions of the image side: right lung, heart, left lung of a frontal phantom
# (the patient's right is on the image's left).
_POINTS = ((0.30, 0.45), (0.55, 0.62), (0.72, 0.40))


def frontal_test_images(manifest: Path, count: int) -> list[Path]:
    """The first ``count`` frontal test-split images of a phantom manifest, as absolute paths."""
    with open(manifest, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    chosen = [r for r in rows if r.get("split") == "test" and r.get("view", "PA").upper() != "LATERAL"]
    if len(chosen) < count:
        chosen = [r for r in rows if r.get("view", "PA").upper() != "LATERAL"]
    if len(chosen) < count:
        raise ValueError(f"{manifest}: {len(chosen)} frontal images, the demo's figures need {count}")
    return [(manifest.parent / r["path"]).resolve() for r in chosen[:count]]


def figure_steps(out: Path, manifest: Path, model: Path, size: int) -> dict[str, Callable[[], Any]]:
    """Steps drawing the pre-trained encoder's figures into ``out/figures`` (name → action)."""
    from raddino.viz import run_attention, run_correspond, run_pca

    figures = out / "figures"

    def attention() -> None:
        run_attention(frontal_test_images(manifest, 1)[0], str(model), figures / "attention.png")

    def correspondences() -> None:
        query, target = frontal_test_images(manifest, 2)
        points = [(fx * size, fy * size) for fx, fy in _POINTS]
        run_correspond(
            query, target, points, str(model), figures / "correspond.png", [figures / "correspond.csv"]
        )

    def pca() -> None:
        run_pca(frontal_test_images(manifest, 4), str(model), figures / "pca.png")

    return {"attention maps": attention, "correspondences": correspondences, "PCA map": pca}


def _loss_section(out: Path) -> Section:
    from raddino.training import read_metrics
    from raddino.viz.loss_curves import PRETRAINING_LOSSES, write_loss_curves

    records = read_metrics(out / "run")
    svg = write_loss_curves(records, out / "figures" / "loss_curves.svg")
    last = records[-1] if records else {}
    text = (
        f"{len(records)} logged records up to iteration {int(last.get('iteration', 0))} of the pre-trained "
        "encoder's run (`run/metrics.jsonl`); last "
        + ", ".join(f"{k.split('/')[-1]} {last[k]:.3f}" for k in PRETRAINING_LOSSES if k in last)
        + "."
    )
    return Section(
        "Pre-training loss curves", [Text(text), Figure(svg, "Total, DINO, iBOT and KoLeo losses")]
    )


def _margins_table(margins: dict[str, dict[str, SeedMargin]], seeds: int) -> Table:
    """The headline metrics' margins over the pre-training seeds, with the verdict of :mod:`robust`."""
    rows = [
        [
            task,
            column,
            f"{m.mean:+.3f}",
            " / ".join(f"{v:+.3f}" for v in m.values),
            "—" if m.spread is None else f"{m.spread:.3f}",
            m.verdict,
        ]
        for task, columns in margins.items()
        for column, m in columns.items()
        if column in HEADLINE
    ]
    header = ["task", "metric", "pre-trained − random init (mean)", "per seed", "spread (max − min)", ""]
    return Table(header, rows, f"Headline metrics: {headline(margins, HEADLINE, seeds)}")


def _table_sections(out: Path, margins: dict[str, dict[str, SeedMargin]], seeds: int) -> list[Section]:
    tables = json.loads((out / "compare" / "compare.json").read_text(encoding="utf-8"))["tables"]
    seed_text = (
        f" The tables show the first of {seeds} pre-training seeds; the margins table gives each seed's "
        "margin (each against its own random initialisation) and says which margins hold over the seeds."
        if seeds > 1
        else " One pre-training seed: a margin here is one draw (`--seeds 3` measures which hold)."
    )
    blocks: list[Any] = [
        Text(
            "Frozen encoders on the phantoms' held-out splits: mean ± std over seeds or folds; best value "
            "per column in bold, Δ its margin over the runner-up. Every metric is higher-is-better."
            + seed_text
        )
    ]
    for task, table in tables.items():
        header = ["encoder", *table["columns"]]
        blocks.append(Table(header, [*table["rows"], table["delta_row"]], TASK_TITLES.get(task, task)))
    blocks.append(_margins_table(margins, seeds))
    return [Section("Comparison with random init", blocks, anchor="comparison")]


def _report_section(folders: dict[str, Path], out: Path) -> Section:
    from raddino.reportgen import markdown_table, score_reports

    scores = [
        score_reports(folder / "reports.csv", name=name, samples=200, seed=0, optional=False)
        for name, folder in folders.items()
    ]
    atomic_write_text(
        out / "report_scores.json",
        json.dumps({s.name: {m: e.median for m, e in s.metrics.items()} for s in scores}, indent=2) + "\n",
    )
    table = parse_markdown_tables(markdown_table(scores))[0]
    table.caption = "Report generation on the test split (Table 5's layout): ROUGE-L, BLEU-4 ×100"
    blocks: list[Any] = [table]
    for name, folder in folders.items():
        with open(folder / "reports.csv", newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))[:3]
        pairs = [(r["id"], r["reference"], r["generated"]) for r in rows]
        blocks.append(ReportPairs(pairs, f"Generated with the {name} encoder"))
    return Section("Generated reports", blocks, anchor="reports")


def _overlay_section(folders: dict[str, Path]) -> Section:
    blocks: list[Any] = [Text("Predicted right lung, left lung and heart of the linear head on test images.")]
    for name, folder in folders.items():
        for path in sorted((folder / "segment" / "overlays" / "linear").glob("*.png"))[:2]:
            blocks.append(Figure(path, f"{name}: {path.stem}"))
    return Section("Segmentation overlays", blocks, anchor="segmentation")


def margins_from_results(folders: dict[str, Path]) -> dict[str, dict[str, float]]:
    """Pre-trained minus random-init mean per task and summary column of the result JSONs."""
    margins: dict[str, dict[str, float]] = {}
    for task in ("probe", "knn", "metadata", "segment"):
        ours, base = (
            json.loads((folders[n] / task / f"{task}.json").read_text(encoding="utf-8"))["summary"]
            for n in ("pre-trained", "random init")
        )
        margins[task] = {}
        for column, value in ours.items():
            theirs = (base.get(column) or {}).get("mean")
            if value.get("mean") is None or theirs is None:
                continue
            margin = float(value["mean"]) - float(theirs)
            if math.isfinite(margin):  # a finding absent from a split has no AUPRC
                margins[task][column] = round(margin, 4)
    return margins


def build_page(
    out: Path,
    plan: DemoPlan,
    encoders: Sequence[str],
    folders: dict[str, Path],
    further: Sequence[dict[str, Path]] = (),
) -> None:
    """Write ``out/report.html`` and ``out/report.md`` from the finished steps' outputs.

    Args:
        out: The demo's folder.
        plan: Its sizes.
        encoders: The encoders' names, in the tables' order.
        folders: The first seed's evaluation folder per encoder.
        further: Each further pre-training seed's folders (``pre-trained``, ``random init``).
    """
    figures = out / "figures"
    margins = seed_margins([margins_from_results(f) for f in (folders, *further)])
    ablation = (
        "The iBOT-off ablation ran (third row of each table)."
        if plan.ablation
        else "The iBOT-off ablation (a second pre-training run) was not run (`--no-ablation`)."
    )
    overview = Section(
        "Overview",
        [
            Text(
                f"{plan.images} synthetic chest X-rays at {plan.size} px (phantoms with findings, metadata, "
                f"masks and reports; subject-wise train/validation/test splits). Encoders compared: "
                f"{', '.join(encoders)} — the same architecture, the random-init one being the pre-trained "
                f"run's starting point. {ablation}"
            )
        ],
    )
    sections = [
        overview,
        _loss_section(out),
        *_table_sections(out, margins, 1 + len(further)),
        _report_section(folders, out),
        Section(
            "Attention maps",
            [
                Figure(
                    figures / "attention.png", "Last-layer CLS attention per head and their mean (Figure A.2)"
                )
            ],
            anchor="attention",
        ),
        Section(
            "Patch correspondences",
            [
                Figure(
                    figures / "correspond.png",
                    "Cosine similarity of query patches (right lung, heart, left lung) to every patch of "
                    "another subject's image (Figures 3, A.3)",
                )
            ],
            anchor="correspondences",
        ),
        Section(
            "PCA of patch tokens",
            [Figure(figures / "pca.png", "First three principal components as RGB, background masked")],
            anchor="pca",
        ),
        _overlay_section(folders),
    ]
    write_page(
        "raddino demo: pre-training on synthetic chest X-rays",
        sections,
        html_path=out / "report.html",
        markdown_path=out / "report.md",
    )
