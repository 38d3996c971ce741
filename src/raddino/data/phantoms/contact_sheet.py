"""A contact sheet: phantoms in a grid with their masks outlined and their labels captioned (PIL only)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from raddino.data.phantoms.settings import FINDINGS, RIB_NAMES
from raddino.data.phantoms.spec import Phantom
from raddino.io.atomic import atomic_path

# Outline colours (RGB) per structure group; findings in warm colours, anatomy in cool ones.
COLOURS = {
    "right_lung": (80, 160, 255),
    "left_lung": (80, 220, 255),
    "heart": (255, 80, 200),
    "ribs": (150, 150, 255),
    "pneumothorax": (255, 60, 60),
    "chest_tube": (255, 255, 0),
    "pleural_effusion": (0, 230, 120),
    "lung_opacity": (255, 150, 0),
    "nodule": (255, 0, 0),
}
SHORT = {
    "cardiomegaly": "CM",
    "pleural_effusion": "EFF",
    "lung_opacity": "OPA",
    "nodule": "NOD",
    "pneumothorax": "PTX",
    "support_device": "TUBE",
    "fibrosis": "FIB",
}


GREYS = 256 - len(COLOURS)  # palette: GREYS grey levels, then one entry per outline colour


def _outline(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask)


def overlay(phantom: Phantom, tile: int | None = None) -> np.ndarray:
    """Palette indices (tile, tile) uint8: the X-ray in grey levels, mask outlines in their colours.

    The image is resized with Lanczos and each mask with nearest neighbour before its outline is taken,
    so outlines are one display pixel wide and keep their exact colours (see ``palette``).
    """
    size = tile or phantom.image.shape[0]
    grey = Image.fromarray(np.round(phantom.image * 255).astype(np.uint8)).resize(
        (size, size), Image.Resampling.LANCZOS
    )
    indices = np.round(np.asarray(grey, dtype=np.float32) * (GREYS - 1) / 255).astype(np.uint8)
    masks = dict(phantom.masks)
    # Ribs of the patient's right side only (image left), so the other hemithorax shows the bare X-ray.
    masks["ribs"] = np.logical_or.reduce([masks[f"rib_{name}"] for name in RIB_NAMES if name.startswith("R")])
    for number, name in enumerate(COLOURS):
        small = np.asarray(Image.fromarray(masks[name]).resize((size, size), Image.Resampling.NEAREST))
        indices[_outline(small)] = GREYS + number
    return indices


def palette() -> list[int]:
    """The flat RGB palette of ``overlay``'s indices."""
    greys = [round(level * 255 / (GREYS - 1)) for level in range(GREYS)]
    return [value for level in greys for value in (level, level, level)] + [
        c for rgb in COLOURS.values() for c in rgb
    ]


def caption(phantom: Phantom) -> str:
    """``view · sex age · labels`` with short finding names and s/o for subtle/obvious."""
    positives = [
        f"{SHORT[name]}{'s' if phantom.spec.findings.severities.get(name) == 'subtle' else 'o'}"
        for name in FINDINGS
        if phantom.labels[name]
    ]
    meta = phantom.metadata
    return f"{meta['view']} {meta['sex']}{meta['age']} " + (" ".join(positives) or "no finding")


def write_contact_sheet(
    phantoms: Sequence[Phantom], path: str | Path, columns: int = 4, tile: int = 256
) -> Path:
    """Write a grid of ``phantoms`` (outlined, captioned) as a palette PNG, atomically."""
    rows = -(-len(phantoms) // columns)
    band = 18
    sheet = Image.new("P", (columns * tile, rows * (tile + band)), 0)
    sheet.putpalette(palette())
    draw = ImageDraw.Draw(sheet)
    for number, phantom in enumerate(phantoms):
        row, column = divmod(number, columns)
        left, top = column * tile, row * (tile + band)
        sheet.paste(Image.fromarray(overlay(phantom, tile), mode="P"), (left, top))
        draw.text((left + 4, top + tile + 3), caption(phantom), fill=GREYS - 1)
    with atomic_path(path) as temporary:
        sheet.save(temporary, format="PNG", optimize=True)
    return Path(path)
