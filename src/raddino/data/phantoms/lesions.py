"""Findings as numbers: which ones an image has, how severe, where (drawing is in ``pathology``).

Every positive finding is either *subtle* or *obvious*. Subtle versions are what makes the task
non-trivial and resolution-dependent, as in the paper's small findings: a 5–9 mm nodule is 3–6 px at
224 px, a small apical pneumothorax is a 1-px pleural line a few pixels from the chest wall, a small-bore
tube is 2–3 px wide. Positions are fractions of the lung (``v``: 0 at the apex, 1 at the costophrenic
angle; ``u``: 0 at the medial border, 1 at the lateral border) so that they fit any body and view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from raddino.data.phantoms.settings import CHRONIC_FINDINGS, FINDINGS

Severity = Literal["subtle", "obvious"]
Side = Literal["right", "left"]


@dataclass(frozen=True)
class Effusion:
    """Pleural fluid at the base(s); ``height``: the meniscus' medial height as a fraction of lung height."""

    sides: tuple[Side, ...]
    height: float
    density: float
    severity: Severity


@dataclass(frozen=True)
class Opacity:
    """A patch of airspace opacity (consolidation) in one lung."""

    side: Side
    v: float
    u: float
    radius: float
    strength: float
    severity: Severity


@dataclass(frozen=True)
class Nodule:
    """A round solid opacity of ``diameter_mm``."""

    side: Side
    v: float
    u: float
    diameter_mm: float
    density: float
    severity: Severity


@dataclass(frozen=True)
class Pneumothorax:
    """Air between lung and chest wall; ``gap`` is the lung's shrinkage toward its hilum (0.03 = a rim)."""

    side: Side
    gap: float
    severity: Severity


@dataclass(frozen=True)
class Device:
    """A chest tube (always: the ``chest_tube`` mask is non-empty iff ``support_device``), maybe ECG leads."""

    side: Side
    entry_v: float
    tip_u: float
    tip_v: float
    radius_mm: float
    stripe: bool
    ecg_leads: int
    severity: Severity


@dataclass(frozen=True)
class Fibrosis:
    """Reticular (net-like) opacities from the bases up to ``extent`` of lung height, subpleural."""

    extent: float
    strength: float
    cells_per_unit: float
    severity: Severity


@dataclass(frozen=True)
class Findings:
    """Everything abnormal in one study (cardiomegaly lives in ``Anatomy.ctr``).

    Attributes:
        labels: 0/1 per name in ``FINDINGS`` plus ``no_finding``.
        severities: ``subtle`` / ``obvious`` per positive finding.
    """

    labels: dict[str, int]
    severities: dict[str, Severity]
    effusion: Effusion | None = None
    opacity: Opacity | None = None
    nodules: tuple[Nodule, ...] = ()
    pneumothorax: Pneumothorax | None = None
    device: Device | None = None
    fibrosis: Fibrosis | None = None


def _side(rng: np.random.Generator) -> Side:
    return "right" if rng.random() < 0.5 else "left"


def draw_labels(
    rng: np.random.Generator, prevalence: dict[str, float], subtle_fraction: float, names: tuple[str, ...]
) -> tuple[dict[str, int], dict[str, Severity]]:
    """Draw presence and severity of the findings ``names``, independently, at their prevalences."""
    labels: dict[str, int] = {}
    severities: dict[str, Severity] = {}
    for name in names:
        present = rng.random() < prevalence[name]
        subtle = rng.random() < subtle_fraction
        labels[name] = int(present)
        if present:
            severities[name] = "subtle" if subtle else "obvious"
    return labels, severities


def sample_ctr(rng: np.random.Generator, severity: Severity | None) -> float:
    """Cardiothoracic ratio: normal hearts stay below 0.485 and enlarged ones above 0.515, so the label is
    unambiguous on the masks (the clinical threshold is 0.5)."""
    if severity is None:
        return float(np.clip(rng.normal(0.44, 0.028), 0.36, 0.485))
    if severity == "subtle":
        return float(rng.uniform(0.515, 0.55))
    return float(rng.uniform(0.56, 0.65))


def sample_chronic(
    rng: np.random.Generator, prevalence: dict[str, float], subtle_fraction: float
) -> tuple[dict[str, int], dict[str, Severity], tuple[Nodule, ...], Fibrosis | None]:
    """The findings a subject keeps across studies: cardiomegaly, nodules, fibrosis."""
    labels, severities = draw_labels(rng, prevalence, subtle_fraction, CHRONIC_FINDINGS)
    nodules: tuple[Nodule, ...] = ()
    if labels["nodule"]:
        subtle = severities["nodule"] == "subtle"
        count = 1 if subtle else int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2]))
        nodules = tuple(
            Nodule(
                side=_side(rng),
                v=float(rng.uniform(0.15, 0.8)),
                u=float(rng.uniform(0.3, 0.85)),
                diameter_mm=float(rng.uniform(5.0, 9.0) if subtle else rng.uniform(14.0, 32.0)),
                density=float(rng.uniform(0.5, 0.8) if subtle else rng.uniform(0.9, 1.2)),
                severity=severities["nodule"],
            )
            for _ in range(count)
        )
    fibrosis = None
    if labels["fibrosis"]:
        subtle = severities["fibrosis"] == "subtle"
        fibrosis = Fibrosis(
            extent=float(rng.uniform(0.25, 0.4) if subtle else rng.uniform(0.5, 0.8)),
            strength=float(rng.uniform(0.35, 0.55) if subtle else rng.uniform(0.7, 1.0)),
            cells_per_unit=float(rng.uniform(20.0, 26.0) if subtle else rng.uniform(13.0, 19.0)),
            severity=severities["fibrosis"],
        )
    return labels, severities, nodules, fibrosis


def sample_acute(
    rng: np.random.Generator, prevalence: dict[str, float], subtle_fraction: float
) -> tuple[dict[str, int], dict[str, Severity], dict[str, object]]:
    """The findings of one study: effusion, opacity, pneumothorax, support device (with their geometry)."""
    names = tuple(name for name in FINDINGS if name not in CHRONIC_FINDINGS)
    labels, severities = draw_labels(rng, prevalence, subtle_fraction, names)
    parts: dict[str, object] = {}
    if labels["pleural_effusion"]:
        subtle = severities["pleural_effusion"] == "subtle"
        roll = rng.random()
        sides: tuple[Side, ...] = (
            ("right", "left") if roll < 0.35 else (("right",) if roll < 0.7 else ("left",))
        )
        parts["effusion"] = Effusion(
            sides=sides,
            height=float(rng.uniform(0.03, 0.09) if subtle else rng.uniform(0.18, 0.45)),
            density=float(rng.uniform(0.6, 0.8) if subtle else rng.uniform(0.85, 1.0)),
            severity=severities["pleural_effusion"],
        )
    if labels["lung_opacity"]:
        subtle = severities["lung_opacity"] == "subtle"
        parts["opacity"] = Opacity(
            side=_side(rng),
            v=float(rng.uniform(0.3, 0.85)),
            u=float(rng.uniform(0.3, 0.75)),
            radius=float(rng.uniform(0.07, 0.11) if subtle else rng.uniform(0.13, 0.22)),
            strength=float(rng.uniform(0.3, 0.45) if subtle else rng.uniform(0.6, 0.85)),
            severity=severities["lung_opacity"],
        )
    if labels["pneumothorax"]:
        subtle = severities["pneumothorax"] == "subtle"
        parts["pneumothorax"] = Pneumothorax(
            side=_side(rng),
            gap=float(rng.uniform(0.03, 0.06) if subtle else rng.uniform(0.12, 0.3)),
            severity=severities["pneumothorax"],
        )
    if labels["support_device"]:
        subtle = severities["support_device"] == "subtle"
        # A tube goes where the air or fluid is, when there is some.
        ptx = parts.get("pneumothorax")
        effusion = parts.get("effusion")
        side: Side = (
            ptx.side
            if isinstance(ptx, Pneumothorax)
            else effusion.sides[0]
            if isinstance(effusion, Effusion)
            else _side(rng)
        )
        parts["device"] = Device(
            side=side,
            entry_v=float(rng.uniform(0.55, 0.8)),
            tip_u=float(rng.uniform(0.3, 0.6)),
            tip_v=float(rng.uniform(0.08, 0.3)),
            radius_mm=float(rng.uniform(1.4, 2.0) if subtle else rng.uniform(3.5, 5.0)),
            stripe=not subtle or rng.random() < 0.3,
            ecg_leads=int(rng.integers(0, 4)) if subtle else int(rng.integers(2, 6)),
            severity=severities["support_device"],
        )
    return labels, severities, parts


def combine(
    chronic: tuple[dict[str, int], dict[str, Severity], tuple[Nodule, ...], Fibrosis | None],
    acute: tuple[dict[str, int], dict[str, Severity], dict[str, object]],
) -> Findings:
    """One study's findings from its subject's chronic ones and its own acute ones."""
    chronic_labels, chronic_severities, nodules, fibrosis = chronic
    acute_labels, acute_severities, parts = acute
    labels = {name: 0 for name in FINDINGS} | chronic_labels | acute_labels
    labels["no_finding"] = int(not any(labels[name] for name in FINDINGS if name != "support_device"))
    effusion = parts.get("effusion")
    opacity = parts.get("opacity")
    pneumothorax = parts.get("pneumothorax")
    device = parts.get("device")
    return Findings(
        labels=labels,
        severities={**chronic_severities, **acute_severities},
        effusion=effusion if isinstance(effusion, Effusion) else None,
        opacity=opacity if isinstance(opacity, Opacity) else None,
        nodules=nodules,
        pneumothorax=pneumothorax if isinstance(pneumothorax, Pneumothorax) else None,
        device=device if isinstance(device, Device) else None,
        fibrosis=fibrosis,
    )
