"""``PhantomSpec``: everything that decides one image, drawn before any pixel is rendered.

A spec is small and picklable; worker processes render from specs alone, so the images depend only on
the seed and never on how the work was split between processes. ``Phantom`` is the rendered result.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raddino.data.phantoms.anatomy import Anatomy, Positioning
from raddino.data.phantoms.lesions import Findings
from raddino.data.phantoms.subjects import Subject


@dataclass(frozen=True)
class PhantomSpec:
    """One image, fully determined.

    Attributes:
        index: Position in the data set.
        image_id: Unique id, e.g. ``s00012_st1_pa``.
        study_id: The study the image belongs to (a frontal and maybe a lateral).
        subject: The person.
        age: Age at this study.
        view: ``PA``, ``AP`` or ``LATERAL``.
        split: ``train``, ``val`` or ``test`` (by subject).
        anatomy: The thorax.
        positioning: Positioning and exposure of this image.
        findings: The study's findings and labels.
        report: The study's findings paragraph.
        photometric: ``MONOCHROME1`` or ``MONOCHROME2``, for the DICOM copy.
        seed: Root seed of the data set.
        seed_key: Spawn key of this image under the root seed (textures and noise come from it).
    """

    index: int
    image_id: str
    study_id: str
    subject: Subject
    age: int
    view: str
    split: str
    anatomy: Anatomy
    positioning: Positioning
    findings: Findings
    report: str
    photometric: str
    seed: int
    seed_key: tuple[int, ...]

    def render_rng(self) -> np.random.Generator:
        """The generator for textures and noise of this image."""
        return np.random.default_rng(np.random.SeedSequence(entropy=self.seed, spawn_key=(*self.seed_key, 1)))

    @property
    def labels(self) -> dict[str, int]:
        return self.findings.labels

    def metadata(self) -> dict[str, object]:
        """The manifest's metadata columns for this image."""
        return {
            "subject_id": self.subject.subject_id,
            "study_id": self.study_id,
            "view": self.view,
            "split": self.split,
            "sex": self.subject.sex,
            "age": self.age,
            "weight": self.subject.weight_kg,
            "bmi": self.subject.bmi,
        }


@dataclass
class Phantom:
    """A rendered phantom.

    Attributes:
        image: float32 (H, W) in [0, 1], 0 and 1 both attained (bone and lead marker bright).
        masks: Structure name → bool (H, W) (names in ``settings.STRUCTURES``).
        labels: Finding name → 0/1 (names in ``settings.LABELS``).
        metadata: Subject, study, view, split, sex, age, weight, BMI.
        report: The findings paragraph.
        spec: What it was rendered from.
    """

    image: np.ndarray
    masks: dict[str, np.ndarray]
    labels: dict[str, int]
    metadata: dict[str, object]
    report: str
    spec: PhantomSpec
