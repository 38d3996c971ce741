"""Support devices: a chest tube (with its mask) and ECG electrodes with leads.

A chest tube is a plastic cylinder: projected, a hollow cylinder gives the "tram-track" look (denser walls,
lighter lumen), and large-bore tubes carry a radio-opaque stripe. Its course: from outside the body, through
the lateral chest wall, then up and medially toward the apex, where tubes for air are aimed.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy import ndimage

from raddino.data.phantoms.canvas import MM_PER_UNIT, Canvas, bezier, polyline_distance
from raddino.data.phantoms.lesions import Device


def tube_path(
    entry: tuple[float, float], tip: tuple[float, float], outward: float, body_edge: float
) -> np.ndarray:
    """Control points of the tube: outside the body → entry → curving up → tip, as an (n, 2) polyline."""
    ex, ey = entry
    tx, ty = tip
    outside = np.array([[ex + outward * (body_edge - abs(ex) + 0.3), ey + 0.35], [ex, ey]])
    inside = bezier(np.array([[ex, ey], [ex - outward * 0.05, ty + 0.25 * (ey - ty)], [tx, ty]]), 64)
    return np.concatenate([outside, inside])


def densify(polyline: np.ndarray, spacing: float) -> np.ndarray:
    """Resample a polyline (n, 2) with points at most ``spacing`` apart."""
    pieces = []
    for start, stop in itertools.pairwise(polyline):
        count = max(2, int(np.ceil(np.hypot(*(stop - start)) / spacing)) + 1)
        pieces.append(start + np.linspace(0.0, 1.0, count)[:, None] * (stop - start))
    return np.concatenate(pieces)


def draw_tube(canvas: Canvas, path: np.ndarray, device: Device, density: np.ndarray) -> np.ndarray:
    """Add a chest tube along ``path`` (n, 2 body coordinates); returns its full-size mask."""
    radius = device.radius_mm / MM_PER_UNIT
    points = densify(path, 0.4 * canvas.pixel)
    mask = np.zeros((canvas.size, canvas.size), dtype=bool)
    found = polyline_distance(canvas, points[:, 0], points[:, 1], margin=radius + 3 * canvas.pixel)
    if found is None:
        return mask
    region, distance = found
    inner = 0.7 * radius
    # Path length through a hollow cylinder at distance d from its axis (the walls are densest at the edge).
    outer_chord = np.sqrt(np.clip(radius**2 - np.square(distance), 0.0, None))
    inner_chord = np.sqrt(np.clip(inner**2 - np.square(distance), 0.0, None))
    wall = 2.0 * (outer_chord - inner_chord) / radius
    tube = 0.14 * wall
    if device.stripe:
        tube = tube + 0.3 * np.exp(-np.square(distance / max(0.18 * radius, 0.5 * canvas.pixel)))
    density[region.rows, region.cols] += tube.astype(np.float32)
    mask[region.rows, region.cols] = distance <= max(radius, 0.5 * canvas.pixel)
    return mask


def draw_ecg_leads(rng: np.random.Generator, canvas: Canvas, count: int, density: np.ndarray) -> None:
    """Add ``count`` ECG electrodes (a disc with a metal snap) and their wires running off the image."""
    if count <= 0:
        return
    wires = np.zeros((canvas.size, canvas.size), dtype=np.float32)
    for _ in range(count):
        cx, cy = rng.uniform(-0.75, 0.75), rng.uniform(-0.75, -0.1)
        radius = 0.03
        region = canvas.region(cx - radius, cx + radius, cy - radius, cy + radius)
        if region is not None:
            r = np.sqrt(np.square(region.x - cx) + np.square(region.y - cy))
            pad = 0.05 * (r <= radius)
            snap = 0.9 * np.exp(-np.square(r / 0.008))
            density[region.rows, region.cols] += (pad + snap).astype(np.float32)
        end = np.array([np.sign(cx) * rng.uniform(1.1, 1.4), rng.uniform(-1.3, 0.6)])
        bend = np.array([cx, cy]) + rng.normal(0.0, 0.25, 2)
        points = densify(bezier(np.array([[cx, cy], bend, end]), 48), 0.5 * canvas.pixel)
        rows, cols = canvas.to_pixels(points[:, 0], points[:, 1])
        rows, cols = np.rint(rows).astype(np.int64), np.rint(cols).astype(np.int64)
        keep = (rows >= 0) & (rows < canvas.size) & (cols >= 0) & (cols < canvas.size)
        wires[rows[keep], cols[keep]] = 1.0
    # A wire is about 1.5 mm thick: blur the one-pixel trace to that width.
    sigma = max(0.5, 0.004 / canvas.pixel)
    density += (0.5 * sigma * ndimage.gaussian_filter(wires, sigma)).astype(np.float32)
