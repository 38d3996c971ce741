"""The frontal thorax: soft tissue, lungs, heart, mediastinum, diaphragm, as densities and masks.

Densities are path lengths through tissue in arbitrary units (soft tissue ≈ 1 through the chest); lungs
*remove* density where air replaces tissue, so everything outside the lungs (mediastinum, abdomen below the
domes) stays bright without being drawn. In a PA film the patient's right is on the image left, so the
right lung has ``x < 0``. Each lung is described in its own coordinates: ``u`` is the distance from the
mediastinal midline (positive outward) and ``v = y``.

Lung outline: above the costophrenic level, an ellipse quadrant laterally (apex to the widest point) and
a squarer superellipse medially; below it, a short elliptic recess that the diaphragm dome cuts at an acute
angle, which is how the costophrenic angle looks. The heart is a sheared ellipse (apex down and to the
patient's left) whose width is set by the cardiothoracic ratio.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from raddino.data.phantoms.anatomy import Anatomy, Positioning
from raddino.data.phantoms.canvas import Canvas, Region, ramp, smoothstep

SIDE_SIGN = {"right": -1.0, "left": 1.0, "both": 1.0}
RECESS = 0.06  # depth of the costophrenic recess below the angle's level
SMOOTH_UNION = 0.12  # softness of the union of the heart's parts, in level units


@dataclass(frozen=True)
class Ellipse:
    """A sheared ellipse: inside where ``((x - cx - shear (y - cy)) / a)^2 + ((y - cy) / b)^2 <= 1``."""

    cx: float
    cy: float
    a: float
    b: float
    shear: float = 0.0

    def level(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """The ellipse function (< 1 inside)."""
        dy = y - self.cy
        return np.square((x - self.cx - self.shear * dy) / self.a) + np.square(dy / self.b)

    @property
    def half_width(self) -> float:
        """Half the horizontal extent (a sheared ellipse is wider than ``2a``)."""
        return float(np.hypot(self.a, self.shear * self.b))


@dataclass(frozen=True)
class HeartShape:
    """The cardiac silhouette as a union of ellipses: right atrium, ventricles, and the mass between.

    The right atrium makes the convex right heart border; the left ventricle, tilted, makes the left
    border and the apex pointing down and to the patient's left. ``b`` is the vertical half-height.
    """

    parts: tuple[Ellipse, ...]
    b: float

    def level(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """The union's level function (< 1 inside): a smooth minimum over the parts.

        The smooth minimum ``-k log Σ exp(-level / k)`` fills the notches where the parts meet, as the
        real silhouette has none; far from the other parts it equals the nearest part's level, so the
        heart's extreme left and right points (its width, hence the CTR) are those of the parts.
        """
        levels = np.stack([part.level(y, x) for part in self.parts])  # (parts, h, w)
        lowest = levels.min(axis=0)
        union = lowest - SMOOTH_UNION * np.log(np.exp(-(levels - lowest) / SMOOTH_UNION).sum(axis=0))
        return np.maximum(union, 0.0)


@dataclass
class LungSide:
    """One lung field drawn on the canvas (in a lateral view, both lungs superimposed as one field).

    Attributes:
        side: ``right``, ``left`` or ``both`` (lateral view).
        region: The lung's bounding box.
        u: Distance from the midline, positive outward (lateral view: anterior to posterior), (1, w).
        v: Height, (h, 1).
        level: Outline function (< 1 inside the outline before the cuts), (h, w).
        mask: The lung field (pleural space projection), (h, w) bool.
        air: Air path length, 0..1, (h, w); findings reduce it.
        parenchyma: Where lung tissue is (the field minus any pneumothorax), (h, w) float.
        apex: Height of the apex; ``base``: height of the lowest recess.
        outline: ``outline(u, v, shrink)``: the outline function, optionally for the lung shrunk by the
            fraction ``shrink`` toward its hilum (a pneumothorax).
    """

    side: str
    region: Region
    u: np.ndarray
    v: np.ndarray
    level: np.ndarray
    mask: np.ndarray
    air: np.ndarray
    parenchyma: np.ndarray
    apex: float
    base: float
    outline: Callable[[np.ndarray, np.ndarray, float], np.ndarray]

    def level_at(self, shrink: float = 0.0) -> np.ndarray:
        """The outline function over the region, for the lung shrunk by ``shrink``: (h, w)."""
        return self.outline(self.u, self.v, shrink)

    def full(self, values: np.ndarray, size: int) -> np.ndarray:
        """A full-size copy of a region-sized array (zeros elsewhere)."""
        canvas = np.zeros((size, size), dtype=values.dtype)
        canvas[self.region.rows, self.region.cols] = values
        return canvas

    def point(self, v_fraction: float, u_fraction: float) -> tuple[float, float]:
        """Body (x, y) of a point given as fractions of the lung's height and of its width on that row.

        Only lung tissue counts: after a pneumothorax the point lies in the collapsed lung.
        """
        tissue = self.mask & (self.parenchyma > 0.5)
        inside = tissue if tissue.any() else self.mask
        rows = np.flatnonzero(inside.any(axis=1))
        if rows.size == 0:
            return float(self.region.x.mean()), float(0.5 * (self.apex + self.base))
        row = int(rows[min(rows.size - 1, int(v_fraction * rows.size))])
        cols = np.flatnonzero(inside[row])
        medial_to_lateral = cols[np.argsort(self.u[0, cols])]
        u = float(self.u[0, medial_to_lateral[min(cols.size - 1, int(u_fraction * cols.size))]])
        return float(SIDE_SIGN[self.side] * u), float(self.v[row, 0])


def outline_level(
    u: np.ndarray, v: np.ndarray, apex: float, base: float, width: float, apex_u: float
) -> np.ndarray:
    """Lung outline function: < 1 inside the apex-to-recess shape (before mediastinum, heart and dome).

    Two ellipse quadrants meeting at the apex: a wide one laterally (apex down to the widest point at the
    costophrenic level) and a narrow one medially, whose border meets the mediastinum about a third of the
    way down, so the apex is a dome rather than a flat roof. Both share the vertical term, so the function
    is continuous (no seam in the air path).
    """
    height = base - apex
    lateral = np.square(np.maximum(u - apex_u, 0.0) / (width - apex_u))
    medial = np.square(np.maximum(apex_u - u, 0.0) / (0.9 * apex_u))
    across = np.where(v <= base, (base - v) / height, (v - base) / RECESS)
    return lateral + medial + np.square(across)


def heart_shape(anatomy: Anatomy, positioning: Positioning) -> HeartShape:
    """The heart, whose horizontal extent is ``ctr`` × the thoracic width (the lungs' outer extent)."""
    width = 2.0 * anatomy.ctr * anatomy.thorax_half_width
    right_edge = positioning.rotation - anatomy.heart_right_share * width
    left_edge = right_edge + width
    # Half-height: grows more slowly than the width (enlarged hearts are globular), varies per subject.
    height = (
        0.23 * (anatomy.ctr / 0.44) ** 0.3 * (anatomy.thorax_half_width / 0.74) * anatomy.heart_aspect / 0.785
    )
    left_base = anatomy.base_y[1] + positioning.inspiration - anatomy.volume_loss
    bottom = left_base - anatomy.dome_rise[1] + 0.08
    atrium_a, atrium_b = 0.2 * width, 0.85 * height
    atrium = Ellipse(right_edge + atrium_a, bottom - 0.02 - atrium_b, atrium_a, atrium_b)
    ventricle_b = 0.9 * height
    shear = 0.55 * float(np.tan(anatomy.heart_angle))  # the apex points down and to the patient's left
    # Solve for the ventricle's half-axis so the sheared ellipse's right end lands exactly on left_edge.
    target = 0.31 * width  # half-extent: the ventricle spans the heart's left 62 %
    ventricle_a = float(np.sqrt(max(target**2 - (shear * ventricle_b) ** 2, (0.4 * target) ** 2)))
    ventricle_a_extent = float(np.hypot(ventricle_a, shear * ventricle_b))
    ventricle = Ellipse(left_edge - ventricle_a_extent, bottom - ventricle_b, ventricle_a, ventricle_b, shear)
    middle = Ellipse(right_edge + 0.45 * width, bottom - 0.85 * height, 0.35 * width, 0.85 * height)
    return HeartShape(parts=(atrium, ventricle, middle), b=float(height))


def mediastinal_border(side: str, v: np.ndarray, anatomy: Anatomy) -> np.ndarray:
    """Distance of the mediastinum's edge from the midline at height ``v``: the aortic knob bulges left."""
    widening = 0.03 * smoothstep(anatomy.apex_y + 0.1, anatomy.apex_y + 0.6, v)  # toward the hila
    border = anatomy.mediastinum * (1.05 if side == "right" else 1.0) + widening
    if side == "right":
        # The superior vena cava leads smoothly into the right atrium's border.
        border = border + 0.02 * smoothstep(anatomy.apex_y + 0.45, anatomy.apex_y + 0.75, v)
    if side == "left":
        knob_y = anatomy.apex_y + 0.3
        border = border + 0.9 * anatomy.knob_radius * np.exp(
            -np.square((v - knob_y) / (anatomy.knob_radius * 1.3))
        )
        # Pulmonary trunk and left atrial appendage fill the "waist" down to the heart's upper border.
        border = border + 0.05 * np.exp(-np.square((v - knob_y - 0.16) / 0.08))
    return border


def dome_height(u: np.ndarray, base: float, rise: float, width: float) -> np.ndarray:
    """Diaphragm dome under one lung: highest a little medial of mid-lung, reaching below the angle."""
    peak_u = 0.42 * width
    top = base - rise
    lateral = (rise + 0.7 * RECESS) / (width - peak_u) ** 2
    return top + np.where(u >= peak_u, lateral, 1.2 * lateral) * np.square(u - peak_u)


def draw_lung(
    canvas: Canvas, side: str, anatomy: Anatomy, positioning: Positioning, heart: HeartShape
) -> LungSide | None:
    """Evaluate one lung's field and air over its bounding box."""
    sign = SIDE_SIGN[side]
    index = 0 if side == "right" else 1
    midline = positioning.rotation
    width = anatomy.thorax_half_width
    base = anatomy.base_y[index] + positioning.inspiration - anatomy.volume_loss
    apex = anatomy.apex_y
    x_outer = sign * (width + 0.01)
    region = canvas.region(min(midline, x_outer), max(midline, x_outer), apex - 0.01, base + RECESS + 0.01)
    if region is None:
        return None
    u = sign * region.x  # (1, w) outward from the rib cage's midline
    u_mediastinal = sign * (region.x - midline)  # (1, w) from the (rotated) mediastinum
    v = region.y  # (h, 1)
    level = outline_level(u, v, apex, base, width, anatomy.apex_u)  # (h, w)
    dome = dome_height(u, base, anatomy.dome_rise[index], width)  # (1, w)
    border = mediastinal_border(side, v, anatomy)  # (h, 1)
    heart_level = heart.level(v, region.x)  # (h, w)
    edge = 1.2 * canvas.pixel
    field = (level <= 1.0) & (v <= dome) & (u_mediastinal >= border)
    mask = field & (heart_level > 1.0)
    apex_u = anatomy.apex_u

    def outline(u: np.ndarray, v: np.ndarray, shrink: float) -> np.ndarray:
        # A pneumothorax shrinks the lung toward its lower medial part, so the gap is widest at the apex.
        if shrink:
            anchor_u = 0.5 * apex_u
            u = anchor_u + (u - anchor_u) / (1.0 - shrink)
            v = base + (v - base) / (1.0 - shrink)
        return outline_level(u, v, apex, base, width, apex_u)

    # Air path: thickest mid-lung (sqrt of the outline's depth), sharp at the dome and mediastinum, a
    # little less at the bases where the domes curve back, and a quarter of it behind the heart.
    heart_cover = ramp((1.0 - np.sqrt(heart_level)) * heart.b, edge)
    air = np.sqrt(np.clip(1.0 - level, 0.0, 1.0))
    air = air * ramp(dome - v, edge) * ramp(u_mediastinal - border, 2.5 * edge)
    air = air * (0.72 + 0.28 * smoothstep(0.0, 0.14, dome - v)) * (1.0 - 0.8 * heart_cover)
    return LungSide(
        side=side,
        region=region,
        u=u,
        v=v,
        level=level,
        mask=mask,
        air=air.astype(np.float32),
        parenchyma=mask.astype(np.float32),
        apex=apex,
        base=base + RECESS,
        outline=outline,
    )


def zone_masks(lung: LungSide, size: int) -> dict[str, np.ndarray]:
    """Upper, mid and lower zones: the lung mask cut into thirds of its height (full-size masks)."""
    rows = np.flatnonzero(lung.mask.any(axis=1))
    masks = {}
    for number, zone in enumerate(("upper", "mid", "lower")):
        full = np.zeros((size, size), dtype=bool)
        if rows.size:
            first, span = rows[0], rows[-1] + 1 - rows[0]
            start = first + round(number * span / 3)
            stop = first + round((number + 1) * span / 3)
            band = np.zeros_like(lung.mask)
            band[start:stop] = lung.mask[start:stop]
            full[lung.region.rows, lung.region.cols] = band
        masks[f"{lung.side}_{zone}_zone"] = full
    return masks


def body_density(canvas: Canvas, anatomy: Anatomy, positioning: Positioning) -> np.ndarray:
    """Soft tissue of the trunk, neck and shoulders, plus breast shadows: (S, S) float32."""
    full = canvas.full()
    x, y = full.x, full.y  # (1, S), (S, 1)
    chest = anatomy.thorax_half_width + 0.03 + anatomy.muscle + anatomy.fat
    shoulders = 0.16 * smoothstep(anatomy.apex_y + 0.6, anatomy.apex_y - 0.1, y)  # (S, 1)
    half_width = chest * (1.0 + 0.05 * y) + shoulders
    across = np.clip(1.0 - np.square(x / half_width), 0.0, 1.0)  # (S, S)
    depth = np.sqrt(across) * anatomy.body_depth
    neck = 0.2 + 0.4 * anatomy.fat
    shoulder_top = -1.08 + 0.3 * np.clip((np.abs(x) - neck) / (1.0 - neck), 0.0, 1.0) ** 1.4  # (1, S)
    density = depth * ramp(y - shoulder_top, 0.03)
    if anatomy.breast_radius > 0:
        radius = anatomy.breast_radius
        for sign in (-1.0, 1.0):
            cx = sign * anatomy.thorax_half_width * 0.5
            cy = 0.5 * (anatomy.base_y[0] + anatomy.base_y[1]) + positioning.inspiration * 0.3 - 0.12
            region = canvas.region(cx - 1.3 * radius, cx + 1.3 * radius, cy - radius, cy + 0.8 * radius)
            if region is None:
                continue
            r2 = np.square((region.x - cx) / (1.3 * radius)) + np.square((region.y - cy) / (0.8 * radius))
            tissue = np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))
            # The inferior margin is crisp and the upper part fades into the chest wall.
            fade = smoothstep(cy - 0.8 * radius, cy + 0.3 * radius, region.y)
            density[region.rows, region.cols] += 0.22 * tissue * fade
    return density.astype(np.float32)
