"""Subjects: sex, age, height, weight and BMI, drawn like an adult chest X-ray population.

The numbers are plausible adult ranges (heights and BMI as in population surveys; ages skewed old, as in
hospital radiography); the paper's metadata task bins age, weight and BMI into five intervals, so the
spread matters more than the exact means.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Sex = Literal["F", "M"]


@dataclass(frozen=True)
class Subject:
    """One person; every image of a subject shares this body.

    Attributes:
        subject_id: Identifier, e.g. ``s00012``.
        sex: ``F`` or ``M``.
        age: Years at the first study.
        height_cm: Standing height.
        weight_kg: Body weight.
        bmi: Body-mass index, kg / m².
    """

    subject_id: str
    sex: Sex
    age: int
    height_cm: float
    weight_kg: float
    bmi: float


def sample_subject(rng: np.random.Generator, subject_id: str) -> Subject:
    """Draw one subject's metadata."""
    sex: Sex = "F" if rng.random() < 0.5 else "M"
    age = int(np.clip(round(rng.normal(58.0, 17.0)), 18, 95))
    height = float(rng.normal(176.0, 7.0) if sex == "M" else rng.normal(163.0, 6.5))
    height = float(np.clip(height, 145.0, 205.0))
    bmi = float(np.clip(26.5 * np.exp(rng.normal(0.0, 0.18)), 16.0, 48.0))
    height = round(height, 1)
    weight = round(bmi * (height / 100.0) ** 2, 1)
    # BMI from the rounded height and weight, so the three columns agree.
    return Subject(subject_id, sex, age, height, weight, round(weight / (height / 100.0) ** 2, 1))
