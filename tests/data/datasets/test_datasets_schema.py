"""The harmonised vocabulary (the subject-split draw: tests/data/test_splits.py)."""

from __future__ import annotations

import pytest

from raddino.data.datasets import DatasetError
from raddino.data.datasets.findings import (
    NIH_LABEL_COLUMNS,
    VINDR_LABEL_COLUMNS,
    VINDR_PAPER_FINDINGS,
    padchest_column,
)
from raddino.data.datasets.schema import (
    canonical_age,
    canonical_sex,
    canonical_view,
    chexpert_value,
    frontal_flag,
    snake_case,
)


@pytest.mark.parametrize(
    ("raw", "view", "frontal"),
    [
        ("POSTEROANTERIOR", "PA", "1"),
        ("pa", "PA", "1"),
        ("ANTEROPOSTERIOR", "AP", "1"),
        ("AP_horizontal", "AP_SUPINE", "1"),
        ("L", "LATERAL", "0"),
        ("LL", "LL", "0"),
        ("AP AXIAL", "AP_AXIAL", "0"),
        ("XTABLE LATERAL", "XTABLE_LATERAL", "0"),
        ("EXCLUDE", "", ""),
        ("", "", ""),
    ],
)
def test_views_and_frontal_flag(raw: str, view: str, frontal: str) -> None:
    assert canonical_view(raw) == view
    assert frontal_flag(view) == frontal


def test_sex_age_and_names() -> None:
    assert [canonical_sex(s) for s in ("Male", "female", "O", "Unknown", None)] == ["M", "F", "O", "", ""]
    assert [canonical_age(a) for a in ("68", "051Y", "85 or more", 62.0, "155", "", "nan")] == [
        "68",
        "51",
        "85",
        "62",
        "",
        "",
        "",
    ]
    assert [snake_case(n) for n in ("Pleural Effusion", "Nodule/Mass", "COPD signs", " Enlarged PA ")] == [
        "pleural_effusion",
        "nodule_mass",
        "copd_signs",
        "enlarged_pa",
    ]
    assert [padchest_column(t) for t in ("normal", "infiltrates", "pulmonary edema", "NSG tube")] == [
        "no_finding",
        "infiltration",
        "edema",
        "nsg_tube",
    ]
    assert set(VINDR_PAPER_FINDINGS) <= set(VINDR_LABEL_COLUMNS)
    assert len(NIH_LABEL_COLUMNS) == 15  # 14 findings and no_finding


def test_chexpert_cells() -> None:
    assert [chexpert_value(v, "f.csv", 2, "Edema") for v in ("1.0", "0.0", "-1.0", "", " 1 ", "-1")] == [
        "1",
        "0",
        "-1",
        "",
        "1",
        "-1",
    ]
    with pytest.raises(DatasetError, match=r"f\.csv: line 7, column 'Edema': 'yes' is not 1, 0, -1 or empty"):
        chexpert_value("yes", "f.csv", 7, "Edema")
