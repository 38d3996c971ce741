"""The harmonised vocabulary and the subject-split draw."""

from __future__ import annotations

import pytest

from raddino.data.datasets import DatasetError, assign_subject_splits, parse_fractions
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


def test_split_fractions_are_parsed_and_checked() -> None:
    assert parse_fractions("70/15/15") == pytest.approx((0.7, 0.15, 0.15))
    assert parse_fractions("0.8,0.1,0.1") == pytest.approx((0.8, 0.1, 0.1))
    for bad in ("70/30", "a/b/c", "-1/1/1", "0/0/0"):
        with pytest.raises(DatasetError, match="split fractions"):
            parse_fractions(bad)


def _rows(subjects: range, source: str = "padchest") -> list[dict[str, str]]:
    return [
        {"id": f"{source}/{s}-{i}", "subject_id": str(s), "source": source, "split": ""}
        for s in subjects
        for i in range(2)
    ]


def test_subject_split_draw_is_stable_and_seeded() -> None:
    rows = _rows(range(2000))
    assign_subject_splits(rows, (0.7, 0.15, 0.15), seed=0)
    split_of = {row["subject_id"]: row["split"] for row in rows}
    more = _rows(range(3000))  # more subjects arrive later: the first 2000 keep their split
    assign_subject_splits(more, (0.7, 0.15, 0.15), seed=0)
    assert all(split_of[row["subject_id"]] == row["split"] for row in more if row["subject_id"] in split_of)
    reseeded = _rows(range(2000))
    assign_subject_splits(reseeded, (0.7, 0.15, 0.15), seed=1)
    changed = sum(split_of[row["subject_id"]] != row["split"] for row in reseeded) / len(reseeded)
    assert 0.3 < changed < 0.6  # 1 - (0.7^2 + 2 * 0.15^2) = 0.465 expected for independent draws


def test_official_splits_are_kept_unless_asked() -> None:
    rows = _rows(range(10))
    rows[0]["split"] = "test"
    assigned = assign_subject_splits(rows, (1.0, 0.0, 0.0))
    assert assigned == 19
    assert rows[0]["split"] == "test"
    assert {row["split"] for row in rows[1:]} == {"train"}
    assign_subject_splits(rows, (0.0, 0.0, 1.0), only_empty=False)
    assert {row["split"] for row in rows} == {"test"}
