"""What a phantom data set is made of: finding and structure names, and the typed settings of a run.

The finding names follow CheXpert / MIMIC-CXR label names in snake case, so a probe written for those data
sets runs on phantoms unchanged. ``no_finding`` follows the CheXpert labeller's rule: it is set when none of
the pathologies is present, and a support device alone does not clear it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

FINDINGS = (
    "cardiomegaly",
    "pleural_effusion",
    "lung_opacity",
    "nodule",
    "pneumothorax",
    "support_device",
    "fibrosis",
)
LABELS = (*FINDINGS, "no_finding")
# Findings of the lung or heart that persist between visits are drawn once per subject; the rest once
# per study (a study's frontal and lateral images share their findings, as they do in MIMIC-CXR).
CHRONIC_FINDINGS = ("cardiomegaly", "nodule", "fibrosis")

SIDES = ("right", "left")
ZONES = ("upper", "mid", "lower")
RIB_NAMES = tuple(f"{side}{number}" for side in ("L", "R") for number in range(1, 11))
ANATOMY_STRUCTURES = (
    "left_lung",
    "right_lung",
    "heart",
    *(f"{side}_{zone}_zone" for side in SIDES for zone in ZONES),
    *(f"rib_{name}" for name in RIB_NAMES),
)
FINDING_STRUCTURES = ("pneumothorax", "chest_tube", "pleural_effusion", "lung_opacity", "nodule")
STRUCTURES = (*ANATOMY_STRUCTURES, *FINDING_STRUCTURES)
# In a lateral view both lungs overlap and no rib can be told from its neighbours: these masks stay empty.
FRONTAL_ONLY_STRUCTURES = tuple(name for name in ANATOMY_STRUCTURES if name != "heart")

OutputFormat = Literal["png8", "png16", "dicom"]
OUTPUT_FORMATS: tuple[OutputFormat, ...] = ("png8", "png16", "dicom")


@dataclass
class Prevalence:
    """Probability of each finding per image (chronic ones are drawn per subject, see ``CHRONIC_FINDINGS``).

    Defaults are close to the frequencies of these labels in MIMIC-CXR / CheXpert, raised for the rare
    ones so that a few hundred phantoms hold enough positives to measure an AUPRC.
    """

    cardiomegaly: float = 0.2
    pleural_effusion: float = 0.2
    lung_opacity: float = 0.2
    nodule: float = 0.15
    pneumothorax: float = 0.12
    support_device: float = 0.15
    fibrosis: float = 0.12

    def __post_init__(self) -> None:
        for name in FINDINGS:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"prevalence.{name} must lie in [0, 1], got {value}")

    def as_dict(self) -> dict[str, float]:
        """``{finding: probability}`` in ``FINDINGS`` order."""
        return {name: float(getattr(self, name)) for name in FINDINGS}


@dataclass
class PhantomSettings:
    """How subjects, studies, views, findings and splits are drawn.

    Attributes:
        prevalence: Probability of each finding.
        subtle_fraction: Share of positive findings drawn in their subtle version (small, faint); the
            rest are obvious. Subtle nodules, pneumothoraces and tubes are a few pixels wide at 224 px.
        ap_fraction: Share of frontal images taken AP (portable) rather than PA.
        lateral_fraction: Share of all images that are laterals; each lateral belongs to a study with a
            frontal image and shares its findings and report.
        repeat_fraction: Share of subjects with more than one study (so splits by subject matter).
        max_studies: Most studies per subject.
        split: Fractions of subjects in train, val and test.
    """

    prevalence: Prevalence = field(default_factory=Prevalence)
    subtle_fraction: float = 0.5
    ap_fraction: float = 0.3
    lateral_fraction: float = 0.15
    repeat_fraction: float = 0.35
    max_studies: int = 4
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)

    def __post_init__(self) -> None:
        for name in ("subtle_fraction", "ap_fraction", "repeat_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        if not 0.0 <= self.lateral_fraction <= 0.5:
            # Each lateral belongs to a study with a frontal image, so at most half the images are laterals.
            raise ValueError(f"lateral_fraction must lie in [0, 0.5], got {self.lateral_fraction}")
        if self.max_studies < 1:
            raise ValueError(f"max_studies must be at least 1, got {self.max_studies}")
        self.split = tuple(float(value) for value in self.split)  # type: ignore[assignment]
        if len(self.split) != 3 or min(self.split) < 0 or abs(sum(self.split) - 1.0) > 1e-6:
            raise ValueError(f"split must be three non-negative fractions summing to 1, got {self.split}")


@dataclass
class PhantomsConfig:
    """Settings of ``raddino phantoms``; saved as ``phantoms.yaml`` next to the outputs.

    Attributes:
        n: Number of images.
        size: Side of the square images in pixels (518 is the encoder's input size).
        seed: Everything is a function of this seed (not of the number of worker processes).
        formats: Any of ``png8`` (the default), ``png16`` and ``dicom``; the first is the manifest's ``path``.
        masks: Write the mask PNGs (``mask_*`` columns).
        settings: Subjects, views, findings and splits.
    """

    n: int = 100
    size: int = 518
    seed: int = 0
    formats: list[OutputFormat] = field(default_factory=lambda: ["png8"])
    masks: bool = True
    settings: PhantomSettings = field(default_factory=PhantomSettings)

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be at least 1, got {self.n}")
        if self.size < 64:  # below that, the masks of subtle findings can vanish
            raise ValueError(f"size must be at least 64 pixels, got {self.size}")
        self.formats = list(self.formats)
        if not self.formats:
            raise ValueError("formats must name at least one of png8, png16, dicom")
        for name in self.formats:
            if name not in OUTPUT_FORMATS:
                raise ValueError(
                    f"formats: unknown format {name!r} (choose from {', '.join(OUTPUT_FORMATS)})"
                )
        if len(set(self.formats)) != len(self.formats):
            raise ValueError(f"formats lists a format twice: {self.formats}")


@dataclass
class PhantomsRun(PhantomsConfig):
    """What ``raddino phantoms`` is given: the settings saved as ``phantoms.yaml``, and where they go."""

    out: str = ""
    """Output folder (created; rerun to resume)."""
    workers: int | None = None
    """Processes; default: every core (1: no pool). The images do not depend on it."""
    overwrite: bool = False
    """Re-render everything, even over phantoms made with other settings."""
    contact_sheet: str = ""
    """Also write a PNG of the first 16 phantoms with their masks outlined."""


def replace_prevalence(settings: PhantomSettings, **prevalence: float) -> PhantomSettings:
    """A copy of ``settings`` with some prevalences changed, e.g. ``replace_prevalence(s, nodule=0.5)``."""
    unknown = sorted(set(prevalence) - set(FINDINGS))
    if unknown:
        raise ValueError(f"unknown finding(s) {unknown}; findings are {list(FINDINGS)}")
    return dataclasses.replace(settings, prevalence=dataclasses.replace(settings.prevalence, **prevalence))
