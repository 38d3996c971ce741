"""Planning a data set: subjects → studies → images, each image a ``PhantomSpec``, splits by subject.

Randomness is keyed, not sequential: subject ``k`` draws from ``SeedSequence(seed, spawn_key=(k,))``, its
study ``s`` from ``(k, s)`` and image ``j`` of that study from ``(k, s, j)``. So a subject's body and
findings do not depend on ``n``, and no image depends on how many processes render the set.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from raddino.data.phantoms.anatomy import sample_anatomy, sample_positioning
from raddino.data.phantoms.lesions import combine, sample_acute, sample_chronic, sample_ctr
from raddino.data.phantoms.reports import write_report
from raddino.data.phantoms.settings import PhantomSettings
from raddino.data.phantoms.spec import PhantomSpec
from raddino.data.phantoms.subjects import sample_subject

SPLITS = ("train", "val", "test")


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=key))


def plan_phantoms(n: int, seed: int = 0, settings: PhantomSettings | None = None) -> list[PhantomSpec]:
    """Specs of ``n`` images (the last subject may lose some of its studies to reach exactly ``n``).

    Args:
        n: Number of images.
        seed: Root seed.
        settings: Prevalences, views, repeats and split fractions (defaults: ``PhantomSettings()``).

    Returns:
        Specs in order: subject by subject, study by study, frontal before lateral.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    settings = settings or PhantomSettings()
    prevalence = settings.prevalence.as_dict()
    lateral_odds = min(1.0, settings.lateral_fraction / (1.0 - settings.lateral_fraction))
    specs: list[PhantomSpec] = []
    subject_of: list[int] = []
    subject_index = 0
    while len(specs) < n:
        subject_rng = _rng(seed, subject_index)
        subject = sample_subject(subject_rng, f"s{subject_index:05d}")
        repeat = subject_rng.random() < settings.repeat_fraction and settings.max_studies > 1
        n_studies = int(subject_rng.integers(2, settings.max_studies + 1)) if repeat else 1
        chronic = sample_chronic(subject_rng, prevalence, settings.subtle_fraction)
        anatomy = sample_anatomy(
            subject, subject_rng, sample_ctr(subject_rng, chronic[1].get("cardiomegaly"))
        )
        if chronic[3] is not None:  # fibrosis shrinks the lungs
            loss = 0.02 if chronic[3].severity == "subtle" else 0.06
            anatomy = dataclasses.replace(anatomy, volume_loss=loss)
        age = subject.age
        for study in range(n_studies):
            study_rng = _rng(seed, subject_index, study)
            if study:
                age += int(study_rng.integers(0, 3))
            findings = combine(chronic, sample_acute(study_rng, prevalence, settings.subtle_fraction))
            frontal = "AP" if study_rng.random() < settings.ap_fraction else "PA"
            views = (frontal, "LATERAL") if study_rng.random() < lateral_odds else (frontal,)
            report = write_report(study_rng, findings, views)
            study_id = f"{subject.subject_id}_st{study}"
            for number, view in enumerate(views):
                if len(specs) == n:
                    break
                image_rng = _rng(seed, subject_index, study, number)
                specs.append(
                    PhantomSpec(
                        index=len(specs),
                        image_id=f"{study_id}_{view.lower()}",
                        study_id=study_id,
                        subject=subject,
                        age=int(min(age, 99)),
                        view=view,
                        split="",
                        anatomy=anatomy,
                        positioning=sample_positioning(image_rng, view),
                        findings=findings,
                        report=report,
                        photometric="MONOCHROME1" if image_rng.random() < 0.5 else "MONOCHROME2",
                        seed=seed,
                        seed_key=(subject_index, study, number),
                    )
                )
                subject_of.append(subject_index)
        subject_index += 1
    splits = assign_splits(subject_index, seed, settings.split)
    return [
        dataclasses.replace(spec, split=splits[owner]) for spec, owner in zip(specs, subject_of, strict=True)
    ]


def assign_splits(n_subjects: int, seed: int, fractions: tuple[float, float, float]) -> list[str]:
    """Split subjects train/val/test in the given fractions (rounded), in a seeded random order."""
    order = np.random.default_rng(np.random.SeedSequence(entropy=seed)).permutation(n_subjects)
    train_end = round(fractions[0] * n_subjects)
    val_end = round((fractions[0] + fractions[1]) * n_subjects)
    splits = [""] * n_subjects
    for rank, subject in enumerate(order):
        splits[subject] = SPLITS[0] if rank < train_end else SPLITS[1] if rank < val_end else SPLITS[2]
    return splits


def sample_spec(
    seed: int = 0, view: str | None = None, settings: PhantomSettings | None = None
) -> PhantomSpec:
    """The first image of the data set of ``seed``, optionally re-taken in another ``view``."""
    spec = plan_phantoms(1, seed, settings)[0]
    if view is None or view == spec.view:
        return spec
    if view not in ("PA", "AP", "LATERAL"):
        raise ValueError(f"view must be PA, AP or LATERAL, got {view!r}")
    positioning = sample_positioning(_rng(seed, *spec.seed_key, 7), view)
    return dataclasses.replace(
        spec, view=view, positioning=positioning, image_id=f"{spec.study_id}_{view.lower()}"
    )
