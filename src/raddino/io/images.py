"""``read_image``: any chest X-ray file (PNG, JPEG, TIFF, DICOM) → float32 grey pixels in [0, 1] + a record.

The format is decided by the file's first bytes, not its extension: a DICOM named ``.png`` still reads,
and a text file named ``.png`` fails with a reason. Every failure is an :class:`ImageReadError` naming
the file; nothing is ever returned as a silent black image.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from raddino.io.dicom import VoiMode, read_dicom
from raddino.io.errors import ImageReadError
from raddino.io.raster import read_raster
from raddino.io.record import MIN_SIDE, ImageFormat, ReadRecord, XrayImage, resolve_max_pixels

__all__ = ["MIN_SIDE", "ImageReadError", "ReadRecord", "XrayImage", "read_image", "sniff_format"]

_SIGNATURES: tuple[tuple[bytes, ImageFormat], ...] = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),  # BigTIFF
    (b"MM\x00+", "tiff"),
)
# A DICOM file without preamble starts straight with a data element of group 0002 or 0008.
_BARE_DICOM_STARTS = (b"\x02\x00", b"\x08\x00", b"\x00\x02", b"\x00\x08")
_EXTENSION_FORMATS = {
    ".png": "png",
    ".jpg": "jpeg",
    ".jpeg": "jpeg",
    ".tif": "tiff",
    ".tiff": "tiff",
    ".dcm": "dicom",
    ".dicom": "dicom",
}


def sniff_format(head: bytes) -> ImageFormat | None:
    """The format announced by a file's first 132 bytes, or ``None`` when no known signature matches."""
    if head[128:132] == b"DICM":
        return "dicom"
    for signature, fmt in _SIGNATURES:
        if head.startswith(signature):
            return fmt
    if head[:2] in _BARE_DICOM_STARTS:
        return "dicom"
    return None


def _read_head(path: Path) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(132)
    except FileNotFoundError as error:
        raise ImageReadError(path, "no such file") from error
    except IsADirectoryError as error:
        raise ImageReadError(path, "is a folder, not an image file") from error
    except PermissionError as error:
        raise ImageReadError(path, "permission denied") from error
    except OSError as error:
        raise ImageReadError(path, f"cannot open: {error.strerror or error}") from error


def read_image(
    path: str | Path,
    *,
    voi: VoiMode = "auto",
    frame: int = 0,
    min_side: int = MIN_SIDE,
    max_pixels: int | None = None,
) -> XrayImage:
    """Read a chest X-ray into float32 grey pixels in [0, 1].

    Args:
        path: A PNG, JPEG, TIFF or DICOM file; the extension is not trusted, the content decides.
        voi: DICOM only. ``"auto"`` applies the file's VOI LUT or window centre/width when it has one,
            ``True`` requires one (an error otherwise), ``False`` skips it.
        frame: Which frame of a multi-frame DICOM or page of a multi-page TIFF (0, the first, by default).
        min_side: Smallest accepted side in pixels (16 by default; see ``raddino.io.record.MIN_SIDE``).
        max_pixels: Decompression-bomb limit in pixels per frame; ``None`` takes ``RADDINO_MAX_IMAGE_PIXELS``
            or else Pillow's limit (89,478,485); ``0`` disables the check.

    Returns:
        The image; ``image.record`` says how it was made (format, bits, scaling, inversion, VOI, frames).

    Raises:
        ImageReadError: for every failure (missing, unreadable, empty, not an image, no pixel data,
            truncated, too small, too large, uniform, missing DICOM decoder), naming the file and the reason.
    """
    path = Path(path)
    head = _read_head(path)
    if not head:
        raise ImageReadError(path, "empty file (0 bytes)")
    fmt = sniff_format(head)
    if fmt is None:
        expected = _EXTENSION_FORMATS.get(path.suffix.lower())
        named = f" although its extension says {expected.upper()}" if expected else ""
        raise ImageReadError(path, f"not an image: content is not PNG, JPEG, TIFF or DICOM{named}")
    limit = resolve_max_pixels(max_pixels)
    if fmt == "dicom":
        image = read_dicom(path, voi=voi, frame=frame, min_side=min_side, max_pixels=limit)
    else:
        image = read_raster(path, fmt, frame=frame, min_side=min_side, max_pixels=limit)
    expected = _EXTENSION_FORMATS.get(path.suffix.lower())
    if expected is not None and expected != fmt:
        # Worth knowing (a mislabelled export), not worth failing over.
        steps = (f"content:{fmt} (extension {path.suffix})", *image.record.steps)
        image = XrayImage(image.pixels, dataclasses.replace(image.record, steps=steps))
    return image
