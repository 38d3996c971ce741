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


def _outline(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask)


def overlay(phantom: Phantom) -> np.ndarray:
    """The phantom as RGB uint8 (H, W, 3) with mask outlines drawn on it."""
    grey = np.round(phantom.image * 255).astype(np.uint8)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    masks = dict(phantom.masks)
    masks["ribs"] = np.logical_or.reduce([masks[f"rib_{name}"] for name in RIB_NAMES])
    for name, colour in COLOURS.items():
        edge = _outline(masks[name])
        rgb[edge] = colour
    return rgb


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
    """Write a grid of ``phantoms`` (outlined, captioned) as a PNG, atomically."""
    rows = -(-len(phantoms) // columns)
    band = 18
    sheet = Image.new("RGB", (columns * tile, rows * (tile + band)), (0, 0, 0))
    draw = ImageDraw.Draw(sheet)
    for number, phantom in enumerate(phantoms):
        row, column = divmod(number, columns)
        picture = Image.fromarray(overlay(phantom)).resize((tile, tile), Image.Resampling.LANCZOS)
        left, top = column * tile, row * (tile + band)
        sheet.paste(picture, (left, top))
        draw.text((left + 4, top + tile + 3), caption(phantom), fill=(255, 255, 255))
    with atomic_path(path) as temporary:
        sheet.save(temporary, format="PNG")
    return Path(path)
