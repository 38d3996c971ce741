"""VinDr-RibCXR (Nguyen et al. 2021): 245 frontal radiographs with polygons of 20 ribs (R1-R10, L1-L10).

Files: one JSON per split (``Vindr_RibCXR_{train,val}_mask.json`` in the release; any JSON under ``--root``
with an ``img`` key is read), in pandas' column layout: ``{"img": {"0": "data/train/img/...png"},
"R1": {"0": [{"x": ..., "y": ...}, ...]}, ...}``. Images: ``data/{train,val}/img/*.png`` (196 train, 49
val, the official split). No patient ids: each image is its own subject.

The ribs overlap on a radiograph (anterior and posterior arcs cross), so each rib gets its own binary mask
rather than one label map. With ``masks_dir`` the polygons are drawn into 0/255 PNGs (``mask_r1`` ...
``mask_l10`` columns, image size read from the PNG header); without it the polygons are kept as JSON
(``polygon_r1`` ...).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from PIL import Image, ImageDraw

from raddino.data.datasets.findings import RIB_NAMES
from raddino.data.datasets.images import ImageIndex, first_existing
from raddino.data.datasets.schema import SPLITS, DatasetError, DatasetManifest, Problem, image_row
from raddino.io.atomic import atomic_path
from raddino.io.progress import progress_bar

SOURCE = "vindr-ribcxr"


def _annotation_files(root: Path, metadata: Sequence[Path]) -> list[Path]:
    files = [path for path in metadata if path.suffix.lower() == ".json"]
    if not files:
        files = sorted(path for path in root.rglob("*.json") if not path.name.startswith("."))
    annotated = []
    for file in files:
        with open(file, encoding="utf-8") as handle:
            head = handle.read(4096)
        if '"img"' in head:
            annotated.append(file)
    if not annotated:
        raise DatasetError(
            f"{root}: no VinDr-RibCXR annotation JSON (with an 'img' key) found; pass it with --metadata"
        )
    return annotated


def _polygon(points: object, where: str) -> list[tuple[float, float]]:
    if points is None:
        return []
    if not isinstance(points, list) or not all(
        isinstance(p, dict) and {"x", "y"} <= p.keys() for p in points
    ):
        raise DatasetError(f"{where}: expected a list of {{'x': ..., 'y': ...}} points")
    return [(float(point["x"]), float(point["y"])) for point in points]


def _split_of(relative: PurePosixPath, file: Path) -> str:
    for part in (*relative.parts, *file.stem.lower().split("_")):
        if part in SPLITS:
            return part
    return ""


def draw_masks(
    polygons: dict[str, list[tuple[float, float]]], size: tuple[int, int], folder: Path
) -> dict[str, Path]:
    """Write one 0/255 PNG per rib polygon (an empty mask for a rib without polygon).

    Args:
        polygons: Rib name -> polygon vertices in image pixels (x, y).
        size: The image's (width, height).
        folder: Where ``R1.png`` ... ``L10.png`` go (created).

    Returns:
        Rib name -> written mask file.
    """
    written = {}
    for rib in RIB_NAMES:
        mask = Image.new("L", size, 0)
        if len(polygons.get(rib, [])) >= 3:
            ImageDraw.Draw(mask).polygon(polygons[rib], fill=255, outline=255)
        target = folder / f"{rib}.png"
        with atomic_path(target) as temporary:
            mask.save(temporary, format="PNG")
        written[rib] = target
    return written


def build(root: Path, metadata: Sequence[Path] = (), *, masks_dir: Path | None = None) -> DatasetManifest:
    """Harmonised rows of every annotated VinDr-RibCXR image, with 20 rib masks or polygons.

    Args:
        root: The release folder (holding ``data/`` and the annotation JSON files).
        metadata: Annotation JSON files to read instead of those found under ``root``.
        masks_dir: Where to draw the rib masks; ``None`` keeps the polygons as JSON columns.
    """
    prefix = "mask" if masks_dir is not None else "polygon"
    manifest = DatasetManifest(SOURCE, [], [], [f"{prefix}_{rib.lower()}" for rib in RIB_NAMES])
    index = ImageIndex(root, (".png", ".jpg", ".jpeg"))
    for file in _annotation_files(root, metadata):
        with open(file, encoding="utf-8") as handle:
            try:
                annotation = json.load(handle)
            except json.JSONDecodeError as error:
                raise DatasetError(f"{file}: not valid JSON: {error}") from error
        missing = [rib for rib in RIB_NAMES if rib not in annotation]
        unexpected = [key for key in annotation if key != "img" and key not in RIB_NAMES]
        if missing or unexpected:
            raise DatasetError(f"{file}: missing rib keys {missing}, unexpected keys {unexpected}")
        for key, relative_text in progress_bar(
            annotation["img"].items(), desc=f"{file.name}", unit="image", disable=None
        ):
            relative = PurePosixPath(str(relative_text))
            path = first_existing([root / relative, root / PurePosixPath(*relative.parts[1:])]) or index.find(
                relative.name
            )
            split = _split_of(relative, file)
            row = image_row(
                source=SOURCE,
                native_id=f"{split}/{relative.stem}" if split else relative.stem,
                path=path or root / relative,
                subject_id=relative.stem,
                view="PA",
                split=split,
            )
            polygons = {rib: _polygon(annotation[rib].get(key), f"{file}: {rib}[{key}]") for rib in RIB_NAMES}
            if masks_dir is None:
                row.update({f"polygon_{rib.lower()}": json.dumps(polygons[rib]) for rib in RIB_NAMES})
            elif path is None:
                manifest.problems.append(
                    Problem(str(root / relative), "masks", "image missing: no size for its masks")
                )
            else:
                try:
                    with Image.open(path) as image:  # reads the header only
                        size = image.size
                except OSError as error:
                    manifest.problems.append(
                        Problem(str(path), "masks", f"cannot read the image size: {error}")
                    )
                else:
                    written = draw_masks(polygons, size, masks_dir / (split or "all") / relative.stem)
                    row.update({f"mask_{rib.lower()}": str(target) for rib, target in written.items()})
            manifest.rows.append(row)
        manifest.notes.append(f"read {file}")
    return manifest
