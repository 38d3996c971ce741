"""Finding a dataset's images on disk without opening them: existence checks and a by-name index.

Adapters never decode images (a manifest of 377k MIMIC-CXR images must be built in seconds); they only
ask whether a file is where the dataset's documented layout puts it. Datasets whose archives unpack into
varying folder trees (NIH-CXR's ``images_001/images/``, CANDID-PTX) are looked up by file name instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from raddino.data.datasets.schema import DatasetManifest, Problem
from raddino.io.progress import progress_bar


class ImageIndex:
    """Every file under a root, by name and by name without extension (built on first use).

    Args:
        root: The folder to index.
        extensions: Lower-case suffixes to keep (``(".png",)``); empty keeps every file.
    """

    def __init__(self, root: Path, extensions: Sequence[str] = ()) -> None:
        self.root = root
        self.extensions = tuple(extensions)
        self._by_name: dict[str, Path] | None = None
        self._by_stem: dict[str, Path] = {}

    def _build(self) -> dict[str, Path]:
        by_name: dict[str, Path] = {}
        for folder, subfolders, files in os.walk(self.root):
            subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
            for name in files:
                if self.extensions and not name.lower().endswith(self.extensions):
                    continue
                path = Path(folder) / name
                by_name.setdefault(name, path)
                self._by_stem.setdefault(name.rsplit(".", 1)[0] if "." in name else name, path)
        return by_name

    def find(self, name: str) -> Path | None:
        """The file called ``name`` (or, failing that, whose name without extension is ``name``)."""
        if self._by_name is None:
            self._by_name = self._build()
        return self._by_name.get(name) or self._by_stem.get(name)


def first_existing(candidates: Iterable[Path]) -> Path | None:
    """The first candidate that is a file, or ``None``."""
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None


def pick_layout(samples: Sequence[Sequence[str | Path]], sample_size: int = 200) -> int:
    """Which of several documented layouts the images on disk follow.

    Args:
        samples: Per row, the row's image path under each candidate layout (same order for every row).
        sample_size: Rows probed, spread evenly over ``samples``, so a partial download still decides.

    Returns:
        The index of the layout under which most probed images exist; 0 (the first, documented one)
        when none of them exists.
    """
    if not samples:
        return 0
    hits = [0] * len(samples[0])
    step = max(1, len(samples) // sample_size)
    # Evenly spread rows first; if none of them is on disk, the first rows in order (a download that
    # stopped early holds the first archives only).
    for probe in (samples[::step], samples[: sample_size * 10]):
        for candidates in probe:
            for index, candidate in enumerate(candidates):
                if os.path.isfile(candidate):
                    hits[index] += 1
        if any(hits):
            break
    return max(range(len(hits)), key=lambda index: (hits[index], -index))


def drop_missing(manifest: DatasetManifest, *, keep_missing: bool = False) -> int:
    """Check every row's image exists; record the missing ones as problems and (by default) drop them.

    Rows are reported, never silently dropped: each missing image becomes a ``missing`` problem, which the
    command writes to its errors CSV and counts in its summary.

    Args:
        manifest: Rows with absolute ``path`` values; modified in place.
        keep_missing: Keep rows whose image is missing (still reported).

    Returns:
        The number of missing images.
    """
    kept: list[dict[str, str]] = []
    missing = 0
    checking = f"{manifest.source}: checking images"
    for row in progress_bar(manifest.rows, desc=checking, unit="image", disable=None):
        if os.path.isfile(row["path"]):
            kept.append(row)
            continue
        missing += 1
        manifest.problems.append(Problem(row["path"], "missing", f"image of {row['id']} not found on disk"))
        if keep_missing:
            kept.append(row)
    manifest.rows = kept
    return missing


def relative_to_folder(path_text: str, folder: Path) -> str:
    """``path_text`` relative to ``folder`` (POSIX style) when it lies inside it, else unchanged.

    Manifests store such paths relative to their own folder so that a dataset folder holding its manifest
    can be moved as a whole.
    """
    if not path_text:
        return path_text
    try:
        return Path(path_text).relative_to(folder).as_posix()
    except ValueError:
        return path_text
