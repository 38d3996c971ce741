"""Reading chest X-rays (PNG, JPEG, TIFF, DICOM) into one float image, writing PNGs, manifests.

The image readers are imported on first use, so modules that only need manifests or atomic writes do
not pay for importing pydicom and Pillow.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ImageReadError": "raddino.io.errors",
    "read_image": "raddino.io.images",
    "sniff_format": "raddino.io.images",
    "XrayImage": "raddino.io.record",
    "ReadRecord": "raddino.io.record",
    "MIN_SIDE": "raddino.io.record",
    "write_png": "raddino.io.png",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'raddino.io' has no attribute {name!r}")
