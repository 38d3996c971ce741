"""``render_phantom``: a spec → image, masks, labels, metadata and report, in memory.

Rendering is additive in density (path length through tissue), then one exposure curve, quantum noise,
one detector blur and a min-max scale. The exposure curve ``1 - exp(-k · density)`` compresses the
dense abdomen and mediastinum as film and detectors do, so bones show through the lungs better than
through the heart. Every image has a lead side marker, the brightest thing on it.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from raddino.data.phantoms import airways, bones, devices, pathology, thorax
from raddino.data.phantoms.canvas import Canvas
from raddino.data.phantoms.lateral import render_lateral
from raddino.data.phantoms.settings import STRUCTURES
from raddino.data.phantoms.spec import Phantom, PhantomSpec

# Lung air removes this much density at the thickest part of a lung (tissue through the chest ≈ 1).
LUNG_AIR = 1.0
MARKER_DENSITY = 4.0
# 5 × 7 bitmaps of the lead letters (rows top to bottom).
GLYPHS = {
    "L": ("10000", "10000", "10000", "10000", "10000", "10000", "11111"),
    "R": ("11110", "10001", "10001", "11110", "10100", "10010", "10001"),
}


def render_phantom(spec: PhantomSpec, size: int = 518) -> Phantom:
    """Render one phantom at ``size`` × ``size`` pixels.

    The same spec at another size shows the same body and findings (geometry is resolution independent);
    noise is per pixel.
    """
    rng = spec.render_rng()
    positioning = spec.positioning
    canvas = Canvas(size, positioning.scale, positioning.shift_x, positioning.shift_y)
    if spec.view == "LATERAL":
        density, masks = render_lateral(rng, canvas, spec)
    else:
        density, masks = render_frontal(rng, canvas, spec)
    draw_marker(canvas, density, "L" if positioning.marker_corner == 0 else "R", positioning.marker_corner)
    image = expose(rng, canvas, density, spec)
    for name in STRUCTURES:
        masks.setdefault(name, np.zeros((size, size), dtype=bool))
    return Phantom(
        image=image,
        masks={name: masks[name] for name in STRUCTURES},
        labels=dict(spec.labels),
        metadata=spec.metadata(),
        report=spec.report,
        spec=spec,
    )


def render_frontal(
    rng: np.random.Generator, canvas: Canvas, spec: PhantomSpec
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Density (S, S) and masks of a PA or AP image."""
    anatomy, positioning, findings = spec.anatomy, spec.positioning, spec.findings
    size = canvas.size
    density = thorax.body_density(canvas, anatomy, positioning)  # (S, S)
    heart = thorax.heart_shape(anatomy, positioning)
    masks: dict[str, np.ndarray] = {}
    heart_region = canvas.full()
    masks["heart"] = heart.level(heart_region.y, heart_region.x) <= 1.0
    density += (0.06 * anatomy.body_depth * masks["heart"]).astype(np.float32)  # the heart is thick
    finding_masks = {
        name: np.zeros((size, size), dtype=bool)
        for name in ("pneumothorax", "pleural_effusion", "lung_opacity")
    }
    lungs = {}
    for side in ("right", "left"):
        lung = thorax.draw_lung(canvas, side, anatomy, positioning, heart)
        if lung is None:
            continue
        lungs[side] = lung
        masks[f"{side}_lung"] = lung.full(lung.mask, size)
        masks.update(thorax.zone_masks(lung, size))
        add = np.zeros(lung.region.shape, dtype=np.float32)  # (h, w) density added inside the lung's box
        ptx = findings.pneumothorax
        if ptx is not None and ptx.side == side:
            mask, line = pathology.apply_pneumothorax(lung, ptx.gap, canvas.pixel)
            finding_masks["pneumothorax"] |= lung.full(mask, size)
            add += line
        hilum = airways.hilum_centre(lung, anatomy, positioning)
        markings = airways.draw_vessels(rng, lung, hilum, strength=1.0)
        hidden = np.zeros(lung.region.shape, dtype=np.float32)  # (h, w) where fluid or cells hide markings
        effusion = findings.effusion
        if effusion is not None and side in effusion.sides:
            fluid, mask = pathology.apply_effusion(lung, effusion.height, effusion.density)
            finding_masks["pleural_effusion"] |= lung.full(mask, size)
            hidden = np.maximum(hidden, fluid)
        opacity = findings.opacity
        if opacity is not None and opacity.side == side:
            fraction, mask = pathology.apply_opacity(rng, lung, opacity)
            finding_masks["lung_opacity"] |= lung.full(mask, size)
            hidden = np.maximum(hidden, fraction)
        if findings.fibrosis is not None:
            add += pathology.fibrosis_density(rng, lung, findings.fibrosis)
        visible = np.clip(lung.air * 4.0, 0.0, 1.0) * lung.parenchyma * (1.0 - hidden)
        add += markings * visible
        density[lung.region.rows, lung.region.cols] += add - LUNG_AIR * lung.air
    masks.update(finding_masks)
    masks["nodule"] = np.zeros((size, size), dtype=bool)
    for nodule in findings.nodules:
        if nodule.side in lungs:
            masks["nodule"] |= pathology.draw_nodule(canvas, lungs[nodule.side], nodule, density)
    airways.draw_airways(canvas, anatomy, positioning, density)
    bones.draw_ribs(canvas, anatomy, positioning, density, masks)
    bones.draw_clavicles(canvas, anatomy, positioning, density)
    bones.draw_spine(canvas, anatomy, positioning, density)
    draw_aortic_knob_calcification(canvas, spec, density)
    draw_gastric_bubble(rng, canvas, spec, density)
    masks["chest_tube"] = np.zeros((size, size), dtype=bool)
    device = findings.device
    if device is not None and device.side in lungs:
        lung = lungs[device.side]
        sign = thorax.SIDE_SIGN[device.side]
        entry_x = sign * (anatomy.thorax_half_width + 0.02)
        entry_y = lung.apex + device.entry_v * (lung.base - lung.apex)
        tip = lung.point(device.tip_v, device.tip_u)
        body_edge = anatomy.thorax_half_width + 0.03 + anatomy.muscle + anatomy.fat
        path = devices.tube_path((entry_x, entry_y), tip, sign, body_edge)
        masks["chest_tube"] = devices.draw_tube(canvas, path, device, density)
        devices.draw_ecg_leads(rng, canvas, device.ecg_leads, density)
    return density, masks


def draw_aortic_knob_calcification(canvas: Canvas, spec: PhantomSpec, density: np.ndarray) -> None:
    """A thin calcified rim on the aortic knob of older subjects."""
    anatomy = spec.anatomy
    if anatomy.aortic_calcification <= 0:
        return
    radius = anatomy.knob_radius
    cx = spec.positioning.rotation + anatomy.mediastinum + 0.9 * radius - radius
    cy = anatomy.apex_y + 0.3
    region = canvas.region(cx - radius * 1.2, cx + radius * 1.2, cy - radius * 1.2, cy + radius * 1.2)
    if region is None:
        return
    r = np.sqrt(np.square(region.x - cx) + np.square(region.y - cy))
    rim = np.exp(-np.square((r - 0.9 * radius) / 0.005)) * (region.x > cx) * (region.y < cy + 0.3 * radius)
    density[region.rows, region.cols] += (0.15 * anatomy.aortic_calcification * rim).astype(np.float32)


def draw_gastric_bubble(
    rng: np.random.Generator, canvas: Canvas, spec: PhantomSpec, density: np.ndarray
) -> None:
    """Air in the stomach under the left dome, with a flat air-fluid level (most upright films show one)."""
    present, dx, dy, width = (
        rng.random() < 0.75,
        rng.normal(0.0, 0.04),
        rng.normal(0.0, 0.02),
        rng.uniform(0.07, 0.12),
    )
    if not present:
        return
    anatomy, positioning = spec.anatomy, spec.positioning
    base = anatomy.base_y[1] + positioning.inspiration - anatomy.volume_loss
    cx = positioning.rotation + 0.42 * anatomy.thorax_half_width + dx
    cy = base - anatomy.dome_rise[1] + 0.1 + dy
    height = 0.55 * width
    region = canvas.region(cx - width, cx + width, cy - height, cy + height)
    if region is None:
        return
    r2 = np.square((region.x - cx) / width) + np.square((region.y - cy) / height)
    air = np.sqrt(np.clip(1.0 - r2, 0.0, 1.0)) * (region.y < cy + 0.2 * height)
    density[region.rows, region.cols] -= (0.3 * anatomy.body_depth * air).astype(np.float32)


def draw_marker(canvas: Canvas, density: np.ndarray, letter: str, corner: int) -> None:
    """Stamp a lead letter near a top corner (in image coordinates, whatever the positioning)."""
    glyph = np.array([[int(c) for c in row] for row in GLYPHS[letter]], dtype=np.float32)  # (7, 5)
    cell = max(1, round(canvas.size * 0.011))
    stamp = np.kron(glyph, np.ones((cell, cell), dtype=np.float32))  # (7 cell, 5 cell)
    top = round(canvas.size * 0.045)
    height, width = stamp.shape
    left = canvas.size - top - width if corner == 0 else top
    patch = density[top : top + height, left : left + width]
    np.maximum(patch, MARKER_DENSITY * stamp[: patch.shape[0], : patch.shape[1]], out=patch)


def expose(rng: np.random.Generator, canvas: Canvas, density: np.ndarray, spec: PhantomSpec) -> np.ndarray:
    """Density → detector image in [0, 1]: exposure curve, heel effect, noise, blur, min-max scaling."""
    positioning = spec.positioning
    image = 1.0 - np.exp(-positioning.contrast * np.clip(density, 0.0, None))  # (S, S)
    rows = (np.arange(canvas.size, dtype=np.float32) + 0.5) / canvas.size - 0.5  # (S,)
    image = image * (1.0 + positioning.heel * rows[:, None])
    # Quantum noise, relatively stronger where fewer photons reach the detector (bright, dense areas), is
    # blurred by the detector like the image; electronic noise added after the blur stays white.
    noise = rng.standard_normal(image.shape, dtype=np.float32)
    # Noise is set for 518 px; a smaller image is a binned one, whose pixels average more photons.
    level = positioning.noise * min(1.0, max(0.35, canvas.size / 518.0))
    image = image + (2.0 * level) * (0.6 + 0.8 * image) * noise
    blur = positioning.blur * canvas.size / 518.0
    if blur >= 0.3:
        image = ndimage.gaussian_filter(image, blur)
    image = image + (0.4 * level) * rng.standard_normal(image.shape, dtype=np.float32)
    image = image.astype(np.float32)
    low, high = float(image.min()), float(image.max())
    return ((image - low) / (high - low)).astype(np.float32)
