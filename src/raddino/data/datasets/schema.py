"""The harmonised manifest every dataset adapter produces, and the vocabulary it speaks.

Every public chest X-ray dataset names the same things differently (``View Position`` / ``ViewPosition`` /
``Projection``; ``Effusion`` / ``Pleural Effusion`` / ``pleural effusion``). Adapters translate their
files into one set of columns so that manifests of different sources can be merged and compared:

``path, id, subject_id, study_id, view, frontal, split, source, sex, age``, then one column per finding
(snake_case), then dataset-specific extras (boxes, masks).

Label values (the CheXpert convention, kept for every source): ``1`` positive, ``0`` negative, ``-1``
uncertain (kept distinct, never folded into 0 or 1), empty when the source says nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

HARMONISED_COLUMNS = (
    "path",
    "id",
    "subject_id",
    "study_id",
    "view",
    "frontal",
    "split",
    "source",
    "sex",
    "age",
)
SPLITS = ("train", "val", "test")

POSITIVE, NEGATIVE, UNCERTAIN, MISSING = "1", "0", "-1", ""

# View names as the sources write them (upper-cased) -> one vocabulary. PadChest's "AP_horizontal" is an AP
# film of a patient lying in bed (Bustos et al. 2020), hence AP_SUPINE; "L" is its lateral.
_VIEW_SYNONYMS = {
    "POSTEROANTERIOR": "PA",
    "PA": "PA",
    "ANTEROPOSTERIOR": "AP",
    "AP": "AP",
    "AP_HORIZONTAL": "AP_SUPINE",
    "AP SUPINE": "AP_SUPINE",
    "AP_SUPINE": "AP_SUPINE",
    "L": "LATERAL",
    "LAT": "LATERAL",
    "LATERAL": "LATERAL",
    "LL": "LL",
    "RL": "RL",
    "EXCLUDE": "",
    "UNK": "",
    "UNKNOWN": "",
    "GENERICA": "",
}
FRONTAL_VIEWS = frozenset({"PA", "AP", "AP_SUPINE"})
LATERAL_VIEWS = frozenset({"LATERAL", "LL", "RL", "XTABLE_LATERAL"})


class DatasetError(ValueError):
    """A dataset's files are missing, malformed or inconsistent; the message names the file and the reason."""


def canonical_view(raw: str | None) -> str:
    """One view name for the many spellings: ``PA``, ``AP``, ``AP_SUPINE``, ``LATERAL``, ``LL``, ``RL`` ...

    Names without a synonym are upper-cased with spaces as underscores (MIMIC-CXR's ``AP AXIAL`` becomes
    ``AP_AXIAL``); unknown or "exclude" markers become the empty string.
    """
    text = (raw or "").strip().upper()
    if text in _VIEW_SYNONYMS:
        return _VIEW_SYNONYMS[text]
    return re.sub(r"[\s\-]+", "_", text)


def frontal_flag(view: str) -> str:
    """``"1"`` for a frontal view (PA, AP, AP supine), ``"0"`` for any other known view, ``""`` if unknown."""
    if not view:
        return ""
    return "1" if view in FRONTAL_VIEWS else "0"


def canonical_sex(raw: str | None) -> str:
    """``M``, ``F`` or ``O`` (other, as BRAX and PadChest write it); empty when unknown."""
    text = (raw or "").strip().upper()
    return {"M": "M", "MALE": "M", "F": "F", "FEMALE": "F", "O": "O", "OTHER": "O"}.get(text, "")


def canonical_age(raw: str | float | int | None) -> str:
    """Whole years as text; empty when missing or outside 0-120 (RSNA's headers hold ages up to 155)."""
    if raw is None:
        return ""
    text = str(raw).strip().upper().removesuffix("Y")
    if text.endswith(" OR MORE"):  # BRAX writes its top age group as "85 or more"
        text = text.removesuffix(" OR MORE")
    try:
        years = float(text)
    except ValueError:
        return ""
    return str(int(years)) if 0 <= years <= 120 else ""


def snake_case(name: str) -> str:
    """``"Pleural Effusion"`` -> ``pleural_effusion``; ``"Nodule/Mass"`` -> ``nodule_mass``."""
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


_CHEXPERT_CELLS = {"1.0": "1", "0.0": "0", "-1.0": "-1", "1": "1", "0": "0", "-1": "-1", "": ""}


def chexpert_value(raw: str, file: str | Path, line: int, column: str) -> str:
    """A CheXpert-style cell (``1.0``, ``0.0``, ``-1.0``, empty) as ``1``/``0``/``-1``/empty.

    Raises:
        DatasetError: naming the file, line and column when the cell holds anything else.
    """
    known = _CHEXPERT_CELLS.get(raw)
    if known is not None:  # the common case, kept cheap: CheXpert alone has 3 million cells
        return known
    text = raw.strip()
    if not text:
        return MISSING
    try:
        number: float | None = float(text)
    except ValueError:
        number = None
    if number is not None and number in (1.0, 0.0, -1.0):
        return str(int(number))
    raise DatasetError(f"{file}: line {line}, column {column!r}: {raw!r} is not 1, 0, -1 or empty")


@dataclass
class Problem:
    """One row that could not be used as is: written to the errors CSV (``path, stage, reason``)."""

    path: str
    stage: str
    reason: str


@dataclass
class DatasetManifest:
    """What an adapter returns: harmonised rows plus what went wrong, before anything is written.

    Attributes:
        source: The dataset's name (``nih-cxr``); also the ``source`` column and the id prefix.
        rows: One dict per image. ``path`` is absolute. Rows of a multi-hot source (NIH, PadChest) carry
            their positive findings as ``findings`` (``|``-joined) and get 0/1 per finding column when
            expanded; a row without ``findings`` is unlabelled and gets empty label cells.
        finding_columns: Harmonised finding columns, in output order.
        extra_columns: Dataset-specific columns after the findings (boxes, masks, ...).
        problems: Rows missing on disk, unreadable metadata rows, inconsistencies.
        notes: Facts worth printing in the summary (which files were read, caveats).
        multi_hot: Whether label cells are derived from ``findings`` (see ``rows``).
    """

    source: str
    rows: list[dict[str, str]]
    finding_columns: list[str]
    extra_columns: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    multi_hot: bool = False

    @property
    def columns(self) -> list[str]:
        """All output columns: harmonised, findings, then extras."""
        extras = [column for column in self.extra_columns if column not in self.finding_columns]
        if self.multi_hot and "findings" not in extras:
            extras.insert(0, "findings")
        return [*HARMONISED_COLUMNS, *self.finding_columns, *extras]

    def expanded_rows(self) -> Iterator[dict[str, str]]:
        """Rows with every column filled (label cells of multi-hot sources derived from ``findings``)."""
        columns = self.columns
        for row in self.rows:
            full = {column: row.get(column, "") for column in columns}
            if self.multi_hot:
                joined = row.get("findings")
                positives = set(joined.split("|")) if joined else set()
                for column in self.finding_columns:
                    if joined is None:
                        full[column] = MISSING
                    else:
                        full[column] = POSITIVE if column in positives else NEGATIVE
            yield full


def image_row(
    *,
    source: str,
    native_id: str,
    path: str | Path,
    subject_id: str,
    study_id: str = "",
    view: str = "",
    split: str = "",
    sex: str = "",
    age: str = "",
    frontal: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """A harmonised row; ``id`` is ``SOURCE/NATIVE_ID`` so ids stay unique when sources are merged."""
    row = {
        "path": str(path),
        "id": f"{source}/{native_id}",
        "subject_id": subject_id,
        "study_id": study_id,
        "view": view,
        "frontal": frontal_flag(view) if frontal is None else frontal,
        "split": split,
        "source": source,
        "sex": sex,
        "age": age,
    }
    if labels:
        row.update(labels)
    return row
