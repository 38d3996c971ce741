"""Per-subject anatomy and per-image positioning and exposure, as numbers (drawn in ``thorax``, ``bones``).

Units are body units (see ``canvas``: one unit = 175 mm). The body follows the metadata, as the paper's
metadata task needs (RAD-DINO §2.5, Fig. 5): fat thickness, body width and diaphragm height follow BMI;
breast shadows appear for most women; bone density falls and the aortic knob unfolds with age; men have
wider chests and denser bones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raddino.data.phantoms.subjects import Subject


@dataclass(frozen=True)
class Anatomy:
    """A subject's thorax.

    Attributes:
        thorax_half_width: Half the widest inner width of the rib cage (the lungs' outer borders).
        apex_y: Height of the lung apices.
        base_y: Height of the costophrenic angles, (right, left); the right dome sits higher.
        dome_rise: How far each diaphragm dome rises above its costophrenic angle, (right, left).
        apex_u: Distance of each apex from the midline.
        mediastinum: Half-width of the upper mediastinum.
        knob_radius: Radius of the aortic knob (grows with age as the aorta unfolds).
        ctr: Cardiothoracic ratio (heart width / thoracic width); > 0.5 is cardiomegaly.
        heart_right_share: Share of the heart's width to the right of the midline (image left).
        heart_aspect: Height of the heart relative to average (× 0.785).
        heart_angle: Tilt of the left ventricle in radians (apex down and to the patient's left).
        fat: Thickness of subcutaneous fat at the chest wall.
        muscle: Thickness of the chest-wall muscle.
        body_depth: Front-to-back thickness relative to an average adult (scales soft-tissue density).
        bone_density: Relative mineral density of ribs, clavicles and spine.
        breast_radius: Radius of each breast shadow; 0 for none.
        rib_spacing: Vertical spacing of the posterior ribs relative to average (age crowds them).
        rib_width: Height of a rib band.
        clavicle_y: Height of the clavicles' medial ends.
        aortic_calcification: Strength of a calcified rim on the aortic knob (0: none).
        cartilage_calcification: Strength of costal cartilage calcification (0: none).
        volume_loss: Fraction of lung height lost (fibrosis shrinks the lungs).
    """

    thorax_half_width: float
    apex_y: float
    base_y: tuple[float, float]
    dome_rise: tuple[float, float]
    apex_u: float
    mediastinum: float
    knob_radius: float
    ctr: float
    heart_right_share: float
    heart_aspect: float
    heart_angle: float
    fat: float
    muscle: float
    body_depth: float
    bone_density: float
    breast_radius: float
    rib_spacing: float
    rib_width: float
    clavicle_y: float
    aortic_calcification: float
    cartilage_calcification: float
    volume_loss: float = 0.0


@dataclass(frozen=True)
class Positioning:
    """How one image was taken.

    Attributes:
        scale: Magnification of the body in the frame.
        shift_x: Horizontal offset of the body's midline.
        shift_y: Vertical offset of the body.
        inspiration: Downward shift of the diaphragm (positive: deeper breath).
        rotation: Sideways offset of the mediastinum and spine relative to the rib cage (patient rotation).
        contrast: Slope of the exposure curve (density → brightness).
        noise: Standard deviation of quantum noise on the [0, 1] image.
        blur: Detector blur in pixels at 518 px.
        heel: Top-to-bottom brightness gradient (anode heel effect).
        marker_corner: 0 for top-right, 1 for top-left.
    """

    scale: float
    shift_x: float
    shift_y: float
    inspiration: float
    rotation: float
    contrast: float
    noise: float
    blur: float
    heel: float
    marker_corner: int


def sample_anatomy(subject: Subject, rng: np.random.Generator, ctr: float) -> Anatomy:
    """Draw a thorax that fits ``subject``; ``ctr`` comes from the cardiomegaly label."""
    male = subject.sex == "M"
    bmi_excess = subject.bmi - 25.0
    age_excess = subject.age - 40.0
    half_width = 0.74 + (0.025 if male else -0.02) + 0.002 * bmi_excess + rng.normal(0.0, 0.02)
    base_right = 0.43 - 0.004 * bmi_excess + rng.normal(0.0, 0.035)
    density = (1.0 + (0.08 if male else 0.0) - 0.006 * max(age_excess, -10.0)) * rng.normal(1.0, 0.06)
    breast = 0.0
    if not male and rng.random() < 0.9:
        breast = 0.21 + 0.007 * bmi_excess + rng.normal(0.0, 0.025)
    return Anatomy(
        thorax_half_width=float(np.clip(half_width, 0.64, 0.84)),
        apex_y=float(-0.70 + rng.normal(0.0, 0.03)),
        base_y=(float(base_right), float(base_right + 0.035 + rng.normal(0.0, 0.012))),
        dome_rise=(float(0.2 + rng.normal(0.0, 0.025)), float(0.18 + rng.normal(0.0, 0.025))),
        apex_u=float(0.3 + rng.normal(0.0, 0.02)),
        mediastinum=float(0.1 + rng.normal(0.0, 0.008)),
        knob_radius=float(np.clip(0.04 + 0.0006 * age_excess + rng.normal(0.0, 0.006), 0.025, 0.08)),
        ctr=float(ctr),
        heart_right_share=float(np.clip(rng.normal(0.33, 0.04), 0.24, 0.42)),
        heart_aspect=float(rng.uniform(0.72, 0.85)),
        heart_angle=float(np.deg2rad(rng.uniform(22.0, 38.0))),
        fat=float(np.clip(0.035 + 0.012 * bmi_excess + rng.normal(0.0, 0.01), 0.012, 0.3)),
        muscle=float((0.06 if male else 0.045) + rng.normal(0.0, 0.006)),
        body_depth=float(np.clip(1.0 + 0.02 * bmi_excess + rng.normal(0.0, 0.04), 0.75, 1.6)),
        bone_density=float(np.clip(density, 0.4, 1.3)),
        breast_radius=float(np.clip(breast, 0.0, 0.38)),
        rib_spacing=float(np.clip(1.0 - 0.0018 * age_excess + rng.normal(0.0, 0.03), 0.85, 1.1)),
        rib_width=float(0.042 + (0.004 if male else 0.0) + rng.normal(0.0, 0.003)),
        clavicle_y=float(-0.56 + rng.normal(0.0, 0.025)),
        aortic_calcification=float(rng.uniform(0.4, 1.0)) if subject.age > 60 and rng.random() < 0.5 else 0.0,
        cartilage_calcification=(
            float(rng.uniform(0.3, 1.0))
            if subject.age > 50 and rng.random() < 0.02 * (subject.age - 50)
            else 0.0
        ),
    )


def sample_positioning(rng: np.random.Generator, view: str) -> Positioning:
    """Draw positioning and exposure for one image; AP (portable) films are shallower, noisier, blurrier."""
    portable = view == "AP"
    return Positioning(
        scale=float(rng.uniform(0.93, 1.03) + (0.04 if portable else 0.0)),
        shift_x=float(rng.normal(0.0, 0.025)),
        shift_y=float(rng.normal(0.02, 0.03)),
        inspiration=float(rng.normal(-0.05 if portable else 0.0, 0.025)),
        rotation=float(rng.normal(0.0, 0.02 if portable else 0.01)),
        contrast=float(rng.uniform(1.5, 2.3)),
        noise=float(rng.uniform(0.004, 0.016) * (1.3 if portable else 1.0)),
        blur=float(rng.uniform(0.5, 1.4) * (1.3 if portable else 1.0)),
        heel=float(rng.normal(0.0, 0.04)),
        marker_corner=int(rng.random() < 0.25),
    )
