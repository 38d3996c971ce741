"""Planning: prevalences, views, repeat subjects, splits by subject, reports that tell the truth."""

from __future__ import annotations

import re
from collections import Counter, defaultdict

import numpy as np
import pytest

from raddino.data.phantoms import (
    FINDINGS,
    PhantomsConfig,
    PhantomSettings,
    Prevalence,
    plan_phantoms,
    replace_prevalence,
)
from raddino.data.phantoms.spec import PhantomSpec


@pytest.fixture(scope="module")
def plan() -> list[PhantomSpec]:
    return plan_phantoms(1500, seed=4)


def test_plan_has_exactly_n_images_with_unique_ids() -> None:
    for n in (1, 7, 60):
        specs = plan_phantoms(n, seed=1)
        assert len(specs) == n
        assert len({spec.image_id for spec in specs}) == n
        assert [spec.index for spec in specs] == list(range(n))


def test_subjects_do_not_depend_on_n() -> None:
    short, long = plan_phantoms(20, seed=3), plan_phantoms(60, seed=3)
    for a, b in zip(short[:15], long[:15], strict=True):
        assert a.image_id == b.image_id
        assert a.subject == b.subject
        assert a.anatomy == b.anatomy
        assert a.findings == b.findings


def test_prevalence_and_severity_are_respected(plan: list[PhantomSpec]) -> None:
    prevalence = Prevalence().as_dict()
    for name in FINDINGS:
        observed = np.mean([spec.labels[name] for spec in plan])
        # Chronic findings are drawn per subject, so the effective sample is smaller: a wide tolerance.
        assert abs(observed - prevalence[name]) < 0.05, (name, observed)
    severities = Counter(sev for spec in plan for sev in spec.findings.severities.values())
    assert 0.4 < severities["subtle"] / (severities["subtle"] + severities["obvious"]) < 0.6
    forced = plan_phantoms(
        200, seed=2, settings=replace_prevalence(PhantomSettings(), nodule=1.0, fibrosis=0.0)
    )
    assert all(spec.labels["nodule"] and not spec.labels["fibrosis"] for spec in forced)


def test_views_and_repeat_subjects(plan: list[PhantomSpec]) -> None:
    views = Counter(spec.view for spec in plan)
    assert abs(views["LATERAL"] / len(plan) - 0.15) < 0.03
    assert abs(views["AP"] / (views["AP"] + views["PA"]) - 0.3) < 0.05
    per_subject: dict[str, list[PhantomSpec]] = defaultdict(list)
    for spec in plan:
        per_subject[spec.subject.subject_id].append(spec)
    repeated = [specs for specs in per_subject.values() if len({s.study_id for s in specs}) > 1]
    assert 0.25 < len(repeated) / len(per_subject) < 0.45
    for specs in repeated:
        assert len({(s.subject.sex, s.subject.bmi) for s in specs}) == 1
        ages = [s.age for s in specs]
        assert ages == sorted(ages)
        # Chronic findings persist across a subject's studies.
        assert len({(s.labels["cardiomegaly"], s.labels["nodule"], s.labels["fibrosis"]) for s in specs}) == 1
    laterals = [spec for spec in plan if spec.view == "LATERAL"]
    frontal_of = {spec.study_id: spec for spec in plan if spec.view != "LATERAL"}
    for lateral in laterals:
        assert lateral.findings == frontal_of[lateral.study_id].findings
        assert lateral.report == frontal_of[lateral.study_id].report


def test_splits_are_by_subject_in_the_asked_fractions(plan: list[PhantomSpec]) -> None:
    split_of: dict[str, set[str]] = defaultdict(set)
    for spec in plan:
        split_of[spec.subject.subject_id].add(spec.split)
    assert all(len(splits) == 1 for splits in split_of.values())
    counts = Counter(next(iter(splits)) for splits in split_of.values())
    total = sum(counts.values())
    assert abs(counts["train"] / total - 0.7) < 0.01
    assert abs(counts["val"] / total - 0.15) < 0.01
    assert abs(counts["test"] / total - 0.15) < 0.01
    again = plan_phantoms(1500, seed=4)
    assert [s.split for s in again] == [s.split for s in plan]
    other = plan_phantoms(1500, seed=5)
    assert [s.split for s in other] != [s.split for s in plan]


def test_metadata_ranges(plan: list[PhantomSpec]) -> None:
    subjects = {spec.subject.subject_id: spec.subject for spec in plan}.values()
    assert {subject.sex for subject in subjects} == {"F", "M"}
    bmis = np.array([subject.bmi for subject in subjects])
    assert bmis.min() >= 16
    assert bmis.max() <= 48
    assert 24 < np.median(bmis) < 29
    for subject in subjects:
        assert subject.bmi == pytest.approx(subject.weight_kg / (subject.height_cm / 100) ** 2, abs=0.051)
        assert 18 <= subject.age <= 95


def _sentences_about(report: str, word: str) -> list[str]:
    return [s for s in re.split(r"(?<=\.) ", report) if word in s.lower()]


def test_reports_state_positives_with_side_and_negate_only_absent_findings(plan: list[PhantomSpec]) -> None:
    words = {"pneumothorax": "pneumothorax", "pleural_effusion": "effusion", "nodule": "nodul"}
    for spec in plan[:400]:
        report = spec.report
        assert report.startswith("FINDINGS: ")
        for label, word in words.items():
            sentences = _sentences_about(report, word)
            negative = [s for s in sentences if s.startswith(("No ", "There is no "))]
            if spec.labels[label]:
                assert sentences, (label, report)
                assert not negative, (label, report)
            else:
                assert len(negative) == len(sentences), (label, report)
        ptx = spec.findings.pneumothorax
        if ptx is not None:
            assert ptx.side in " ".join(_sentences_about(report, "pneumothorax"))
        if spec.labels["cardiomegaly"]:
            assert "enlarged" in report or "ardiomegaly" in report
        else:
            assert "normal" in report.lower()
    assert len({spec.report for spec in plan[:400]}) > 300  # phrasing varies


def test_settings_are_validated_with_the_key_named() -> None:
    with pytest.raises(ValueError, match=r"prevalence\.nodule"):
        Prevalence(nodule=1.5)
    with pytest.raises(ValueError, match="split"):
        PhantomSettings(split=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="lateral_fraction"):
        PhantomSettings(lateral_fraction=0.8)
    with pytest.raises(ValueError, match="formats"):
        PhantomsConfig(formats=["jpeg"])
    with pytest.raises(ValueError, match="unknown finding"):
        replace_prevalence(PhantomSettings(), edema=0.3)
