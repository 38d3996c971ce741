"""Studies for report generation: manifest rows with a report, and their frozen image tokens.

The image tokens are extracted once into the shared feature cache (:mod:`raddino.features.cache`, i.e.
``raddino embed`` with ``layers=[layer]``) and read back per study; training, generation and every later
run over the same manifest and encoder reuse them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from safetensors import safe_open

from raddino.features.cache import FeatureConfig, extract_features
from raddino.io.failures import FailureLog
from raddino.io.manifest import ManifestError, read_manifest
from raddino.reportgen.data import ReportDataset, TokenStore

logger = logging.getLogger(__name__)


@dataclass
class StudySelection:
    """Which manifest rows to use and where their reports are."""

    report_column: str = "report"
    split_column: str = "split"
    """Column holding the split; rows are kept when it equals ``split`` (all rows when ``split`` is empty)."""
    split: str = ""
    """Split of the studies to use (``''``: every row)."""


def tokens_name(store_path: Path, layer: int) -> str:
    """The token tensor of ``layer`` in an embeddings run: ``layer{layer}_patch_tokens``, or for layer -1
    the last layer's ``patch_tokens`` (``raddino embed --patch-tokens``) when no layer was stored."""
    wanted = f"layer{layer}_patch_tokens"
    shards = store_path.with_name(store_path.stem + "_shards")
    files = sorted(shards.glob("tokens-*.safetensors"))
    if not files:
        return wanted
    with safe_open(str(files[0]), framework="pt") as handle:
        keys = set(handle.keys())
    if wanted in keys:
        return wanted
    if layer == -1 and "patch_tokens" in keys:
        return "patch_tokens"
    raise ValueError(f"{store_path}: no '{wanted}' tokens stored (found {sorted(keys)}); embed that layer")


def load_studies(
    manifest_path: str | Path,
    selection: StudySelection,
    features: FeatureConfig,
    layer: int,
    failures: FailureLog | None = None,
) -> ReportDataset:
    """The selected studies with a report and image tokens, extracting the tokens first when needed.

    Rows whose image could not be embedded, or whose report is empty, are left out and recorded in
    ``failures`` (stage ``report-data``); the run goes on with the others.

    Raises:
        ManifestError: The manifest lacks the report or split column, or no row is left.
    """
    manifest = read_manifest(manifest_path)
    if selection.report_column not in manifest.columns:
        raise ManifestError(
            f"{manifest.source}: no '{selection.report_column}' column (columns: {manifest.columns})"
        )
    rows = manifest.rows
    if selection.split:
        if selection.split_column not in manifest.columns:
            raise ManifestError(f"{manifest.source}: no '{selection.split_column}' column to select splits")
        rows = [row for row in rows if row[selection.split_column] == selection.split]
    store_path, _ = extract_features(
        manifest_path, FeatureConfig(**{**features.__dict__, "layers": [layer]}), ("cls",)
    )
    tokens = TokenStore(store_path, tokens_name(store_path, layer))
    ids, reports = [], []
    for row in rows:
        report = row[selection.report_column].strip()
        reason = "image was not embedded" if row["id"] not in tokens else "empty report" if not report else ""
        if reason:
            if failures is not None:
                failures.record(row["path"], reason, stage="report-data")
            continue
        ids.append(row["id"])
        reports.append(report)
    if not ids:
        where = f" in split '{selection.split}'" if selection.split else ""
        raise ManifestError(f"{manifest.source}: no study with an embedded image and a report{where}")
    logger.info(
        "%s: %d studies%s", manifest.source, len(ids), f" ({selection.split})" if selection.split else ""
    )
    return ReportDataset(ids, reports, tokens)
