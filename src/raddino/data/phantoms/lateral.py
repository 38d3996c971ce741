"""The lateral view, simpler than the frontal one: the patient faces the image's left.

``x`` runs from anterior (-) to posterior (+). Both lungs superimpose into one field bounded by the
retrosternal line, the posterior chest wall, the apex and the diaphragm, which slopes down to the
posterior costophrenic sulcus (the deepest point, where small effusions collect first). The heart sits
anteriorly on the diaphragm with a clear retrosternal space above it; the vertebral bodies are seen
through the posterior lung. Findings use the same drawing code as the frontal view. In a lateral view the
lung, zone and rib masks stay empty (no lung or rib can be told apart); heart and finding masks are drawn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from raddino.data.phantoms import airways, devices, pathology
from raddino.data.phantoms.canvas import Canvas, ramp, smoothstep
from raddino.data.phantoms.thorax import LungSide

if TYPE_CHECKING:
    from raddino.data.phantoms.spec import PhantomSpec

LUNG_AIR = 0.62  # both lungs superimposed, but the lateral path through tissue is longer too


def render_lateral(
    rng: np.random.Generator, canvas: Canvas, spec: PhantomSpec
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Density (S, S) and masks of a lateral image."""
    anatomy, positioning, findings = spec.anatomy, spec.positioning, spec.findings
    size = canvas.size
    full = canvas.full()
    x, y = full.x, full.y  # (1, S), (S, 1)
    centre = 0.03
    half_depth = 0.62 + 0.3 * (anatomy.body_depth - 1.0) + 0.8 * anatomy.fat
    belly = 0.6 * anatomy.fat * smoothstep(0.1, 0.9, y)  # the abdomen bulges forward with weight
    neck = smoothstep(anatomy.apex_y + 0.15, -1.0, y)  # (S, 1) the neck is narrower than the chest
    front = centre - half_depth * (1.0 + 0.05 * y) - belly + 0.3 * neck  # (S, 1)
    back = centre + half_depth * (1.0 - 0.03 * y) - 0.12 * neck  # (S, 1)
    middle, half = 0.5 * (front + back), 0.5 * (back - front)
    tissue = np.sqrt(np.clip(1.0 - np.square((x - middle) / half), 0.0, 1.0))
    density = 1.1 * anatomy.body_depth * tissue * ramp(y + 1.05, 0.03)
    arms = np.exp(-np.square((x - centre + 0.1) / 0.45) - np.square((y + 0.95) / 0.3))  # raised arms
    density = (density + 0.25 * arms * tissue).astype(np.float32)
    base = 0.5 * (anatomy.base_y[0] + anatomy.base_y[1]) + positioning.inspiration - anatomy.volume_loss
    apex = anatomy.apex_y - 0.02
    sulcus = base + 0.1
    anterior_dome = base - 0.5 * (anatomy.dome_rise[0] + anatomy.dome_rise[1]) + 0.02
    lung_front = centre - half_depth + 0.09  # retrosternal line
    lung_back = centre + half_depth - 0.1
    lung_middle, lung_half = 0.5 * (lung_front + lung_back), 0.5 * (lung_back - lung_front)

    region = canvas.region(lung_front, lung_back, apex - 0.01, sulcus + 0.01)
    masks: dict[str, np.ndarray] = {}
    if region is None:
        return density, masks
    lx, ly = region.x, region.y

    def outline(u: np.ndarray, v: np.ndarray, shrink: float) -> np.ndarray:
        # A squarish superellipse (the lung fills the chest front to back), rounded at the apex. A
        # pneumothorax shrinks it toward the posterior sulcus, so the gap opens at the apex and in front.
        if shrink:
            u = lung_back + (u - lung_back) / (1.0 - shrink)
            v = sulcus + (v - sulcus) / (1.0 - shrink)
        across = np.square(np.square((u - lung_middle) / lung_half))
        return across + np.square(np.maximum(sulcus - v, 0.0) / (sulcus - apex))

    level = outline(lx, ly, 0.0)  # (h, w)
    t = np.clip((lx - lung_front) / (lung_back - lung_front), 0.0, 1.0)  # (1, w) front to back
    dome = anterior_dome + (sulcus - anterior_dome) * t**1.8 - 0.05 * np.sin(np.pi * t)  # (1, w)
    second_dome = dome - 0.04  # the right dome sits a little higher
    edge = 1.2 * canvas.pixel
    mask = (level <= 1.0) & (ly <= dome)
    air = np.sqrt(np.clip(1.0 - level, 0.0, 1.0)) * ramp(dome - ly, edge)
    air = air * (1.0 - 0.45 * ramp(ly - second_dome, edge))

    ctr_scale = anatomy.ctr / 0.44
    heart_a, heart_b = 0.27 * ctr_scale, 0.24 * ctr_scale**0.3
    heart_x = lung_front + 0.03 + 0.85 * heart_a
    heart_y = anterior_dome + 0.05 - heart_b
    heart_level = np.square((x - heart_x) / heart_a) + np.square((y - heart_y) / heart_b)  # (S, S)
    masks["heart"] = heart_level <= 1.0
    heart_region_level = heart_level[region.rows, region.cols]
    air = air * (1.0 - 0.7 * ramp((1.0 - np.sqrt(heart_region_level)) * heart_b, edge))
    density += (0.05 * masks["heart"]).astype(np.float32)

    lung = LungSide(
        side="both",
        region=region,
        u=lx,
        v=ly,
        level=level,
        mask=mask & (heart_region_level > 1.0),
        air=air.astype(np.float32),
        parenchyma=mask.astype(np.float32),
        apex=apex,
        base=sulcus,
        outline=outline,
    )
    add = np.zeros(region.shape, dtype=np.float32)  # (h, w)
    hidden = np.zeros(region.shape, dtype=np.float32)
    for name in ("pneumothorax", "pleural_effusion", "lung_opacity", "nodule", "chest_tube"):
        masks[name] = np.zeros((size, size), dtype=bool)
    if findings.pneumothorax is not None:
        ptx_mask, line = pathology.apply_pneumothorax(lung, findings.pneumothorax.gap, canvas.pixel)
        masks["pneumothorax"] = lung.full(ptx_mask, size)
        add += line
    markings = airways.draw_vessels(
        rng, lung, (centre - 0.02, apex + 0.5), 0.8, angles=(-180.0, 150.0), trunks=9
    )
    if findings.effusion is not None:
        fluid, fluid_mask = pathology.apply_effusion(
            lung, findings.effusion.height, findings.effusion.density
        )
        masks["pleural_effusion"] = lung.full(fluid_mask, size)
        hidden = np.maximum(hidden, fluid)
    if findings.opacity is not None:
        fraction, opacity_mask = pathology.apply_opacity(rng, lung, findings.opacity)
        masks["lung_opacity"] = lung.full(opacity_mask, size)
        hidden = np.maximum(hidden, fraction)
    if findings.fibrosis is not None:
        add += pathology.fibrosis_density(rng, lung, findings.fibrosis)
    add += markings * np.clip(lung.air * 4.0, 0.0, 1.0) * lung.parenchyma * (1.0 - hidden)
    density[region.rows, region.cols] += add - LUNG_AIR * lung.air
    for nodule in findings.nodules:
        masks["nodule"] |= pathology.draw_nodule(canvas, lung, nodule, density)
    draw_lateral_bones(canvas, spec, density, front, back)
    trachea_x = centre - 0.1 + 0.1 * smoothstep(-1.0, apex + 0.45, y)  # (S, 1) slopes back to the carina
    trachea = np.sqrt(np.clip(1.0 - np.square((x - trachea_x) / 0.028), 0.0, 1.0)) * smoothstep(
        apex + 0.47, apex + 0.43, y
    )
    density -= (0.12 * trachea).astype(np.float32)
    if findings.device is not None:
        entry = (centre + 0.2, sulcus - 0.3)
        tip = lung.point(findings.device.tip_v, 0.45)
        path = np.concatenate(
            [[[entry[0] + 0.1, entry[1] + 0.6]], devices.tube_path(entry, tip, 0.0, 1.0)[1:]]
        )
        masks["chest_tube"] = devices.draw_tube(canvas, path, findings.device, density)
        devices.draw_ecg_leads(rng, canvas, findings.device.ecg_leads, density)
    return density, masks


def draw_lateral_bones(
    canvas: Canvas, spec: PhantomSpec, density: np.ndarray, front: np.ndarray, back: np.ndarray
) -> None:
    """Vertebral bodies with disc spaces, posterior elements, the sternum, and faint posterior ribs."""
    anatomy = spec.anatomy
    bone = 0.16 * anatomy.bone_density
    spine_x = float(back.mean()) - 0.42  # vertebral bodies lie ~7 cm in front of the skin of the back
    region = canvas.region(spine_x - 0.5, float(back.max()), -1.2, 1.2)
    if region is not None:
        x, y = region.x, region.y
        period = 0.105 * anatomy.rib_spacing
        phase = np.mod(y - anatomy.apex_y, period) / period  # (h, 1) position within a vertebral level
        offset = np.abs(x - spine_x)
        block = smoothstep(0.085, 0.07, offset) * smoothstep(0.05, 0.14, phase) * smoothstep(0.98, 0.9, phase)
        cortex = np.exp(-np.square((offset - 0.075) / 0.008)) * (phase > 0.06)
        posterior = np.exp(-np.square((x - spine_x - 0.17) / 0.04)) * (0.6 + 0.4 * np.cos(2 * np.pi * phase))
        ribs = np.zeros(region.shape, dtype=np.float32)
        for number in range(9):
            start = anatomy.apex_y + 0.05 + number * 0.12 * anatomy.rib_spacing
            centre = start + 0.3 * (spine_x - x)  # (1, w) ribs slope down toward the front
            ribs += np.exp(-np.square((y - centre) / 0.016))
        ribs *= smoothstep(spine_x - 0.5, spine_x - 0.2, x) * (x < spine_x + 0.05)
        bones = 0.55 * block + 0.35 * cortex + 0.3 * posterior + 0.25 * ribs
        density[region.rows, region.cols] += (bone * bones).astype(np.float32)
    sternum_x = float(front.mean()) + 0.035
    region = canvas.region(sternum_x - 0.06, sternum_x + 0.06, -0.65, 0.35)
    if region is not None:
        sternum = np.exp(-np.square((region.x - sternum_x) / 0.018))
        sternum = sternum * smoothstep(-0.62, -0.55, region.y) * smoothstep(0.3, 0.2, region.y)
        density[region.rows, region.cols] += (1.2 * bone * sternum).astype(np.float32)
