"""``prepare_images``: raw DICOMs (or PNG/JPEG/TIFF) → the release's training PNGs, in parallel, resumable.

The RAD-DINO release prepared its pre-training data this way (paper, Methods): every image resized with
B-spline interpolation so that its shorter side is 518 px, min-max scaled to [0, 255], saved as 8-bit
PNG. Here the resampling is ``scipy.ndimage.zoom(order=3)``: an interpolating cubic B-spline (the image
is spline-prefiltered, so a constant stays constant and a smooth ramp is reproduced), aligned on pixel
extents (``grid_mode=True``, as SimpleITK and Pillow resample) with half-sample symmetric borders. Like
the release, no anti-alias blur is added before down-sampling. The spline overshoots near sharp edges,
which is why the min-max scaling comes after the resize.

Outputs keep the input's relative folder layout (``OUT/<relative path>.png``), are written atomically
(so an existing output is complete and a rerun skips it), failures go to ``OUT/errors.csv`` and the run
goes on, and ``OUT/manifest.csv`` lists what is there (output path, id, the input manifest's other
columns). No DICOM header value is written anywhere: PNGs carry pixels only.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
from scipy import ndimage

from raddino.config import save_config

# output_names is part of prepare's interface (where each input goes); re-exported from its module
from raddino.data.prepare_names import BATCH_ROWS, output_name_array
from raddino.data.prepare_names import output_names as output_names
from raddino.data.workers import run_parallel, worker_pool
from raddino.io.atomic import naming_os_errors
from raddino.io.dicom import VoiMode
from raddino.io.errors import ImageReadError
from raddino.io.failures import FailureLog
from raddino.io.images import read_image
from raddino.io.manifest import Manifest, load_inputs, write_manifest
from raddino.io.png import write_png
from raddino.io.progress import progress_bar

RELEASE_SIZE = 518  # shorter side of the release's training PNGs and of the encoder's input
# Write errors that no other input would escape: the run stops instead of failing every file after it.
_STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
_STOP = "stop"  # the stage of a result that ends the run


class OutputStorageError(OSError):
    """The output folder takes no more files (disk full, quota exceeded, read-only); the run stopped.

    The message names the file that could not be written; outputs written before it are complete, so a
    rerun after freeing space resumes.
    """


@dataclass
class PrepareConfig:
    """Settings of ``raddino prepare``; saved as ``OUT/prepare.yaml``.

    Attributes:
        size: Shorter side of the outputs in pixels (518, the release's); ``None`` keeps the size.
        bits: 8 (the release's PNGs) or 16 (keeps more of a DICOM's depth).
        workers: Worker processes; ``None`` uses every CPU core, 1 runs in this process.
        overwrite: Rewrite outputs that exist instead of skipping them.
        voi: DICOM VOI LUT / windowing: ``"auto"`` (when present), ``true`` (required), ``false`` (never).
        max_pixels: Decompression-bomb limit in pixels; ``None`` for the reader's default, 0 for none.
    """

    size: int | None = RELEASE_SIZE
    bits: Literal[8, 16] = 8
    workers: int | None = None
    overwrite: bool = False
    voi: bool | Literal["auto"] = "auto"
    max_pixels: int | None = None

    def __post_init__(self) -> None:
        if self.size is not None and self.size < 1:
            raise ValueError(f"size must be a positive number of pixels or null, got {self.size}")
        if self.bits not in (8, 16):
            raise ValueError(f"bits must be 8 or 16, got {self.bits}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}")


@dataclass
class PrepareRun(PrepareConfig):
    """What ``raddino prepare`` is given: the settings saved as ``prepare.yaml``, and what they apply to."""

    input: str = ""
    """Folder of images (searched recursively) or a manifest CSV."""
    out: str = ""
    """Output folder for the PNGs, manifest.csv and errors.csv."""
    strict: bool = False
    """Exit 1 if any image failed (by default only when none was prepared)."""
    quiet: bool = False
    """No progress bar."""


@dataclass(frozen=True)
class PrepareSummary:
    """What a ``prepare_images`` run did.

    Attributes:
        total: Images in the input.
        written: Outputs written by this run.
        skipped: Outputs that already existed and were kept (a resumed run).
        failed: Inputs that could not be prepared; listed with reasons in ``errors_path``.
        out_dir: The output folder.
        manifest_path: ``OUT/manifest.csv``, the outputs that exist (written + skipped).
        errors_path: ``OUT/errors.csv`` (the header only when nothing failed).
        seconds: Wall time of the run.
    """

    total: int
    written: int
    skipped: int
    failed: int
    out_dir: Path
    manifest_path: Path
    errors_path: Path
    seconds: float

    @property
    def succeeded(self) -> int:
        """Inputs whose output exists now."""
        return self.written + self.skipped

    def line(self) -> str:
        """One human-readable summary line."""
        rate = self.written / self.seconds if self.seconds > 0 else 0.0
        text = (
            f"prepared {self.written} image(s), {self.skipped} already done, {self.failed} failed, "
            f"of {self.total} in {self.seconds:.1f} s ({rate:.2f} images/s) → {self.out_dir}"
        )
        return text + (f"; reasons in {self.errors_path}" if self.failed else "")


def available_cores() -> int:
    """CPU cores this process may run on (the affinity mask, which containers and ``taskset`` narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def resize_shorter_side(pixels: np.ndarray, size: int) -> np.ndarray:
    """Resize so the shorter side is exactly ``size``, with cubic B-spline interpolation.

    Args:
        pixels: (H, W) floats.
        size: Target length of the shorter side; the longer side keeps the aspect ratio (rounded).

    Returns:
        (h, w) float32 with ``min(h, w) == size``; values may overshoot the input's range slightly.
    """
    height, width = pixels.shape
    scale = size / min(height, width)
    out_height = size if height <= width else max(size, round(height * scale))
    out_width = size if width < height else max(size, round(width * scale))
    if (out_height, out_width) == (height, width):
        return pixels.astype(np.float32, copy=False)
    # zoom's output shape is round(input * factor): factors of out/in give exactly (out_height, out_width).
    resized = ndimage.zoom(
        pixels.astype(np.float32, copy=False),
        (out_height / height, out_width / width),
        order=3,
        mode="reflect",
        grid_mode=True,
    )  # (out_height, out_width)
    assert resized.shape == (out_height, out_width), (resized.shape, out_height, out_width)
    return resized


def release_training_pixels(pixels: np.ndarray, size: int | None = RELEASE_SIZE) -> np.ndarray:
    """The release's training-image transform on a float image: resize (B-spline), then min-max to [0, 1].

    Args:
        pixels: (H, W) floats, e.g. ``read_image(path).pixels``.
        size: Shorter side of the result; ``None`` keeps the size.

    Returns:
        (h, w) float32 whose minimum is exactly 0 and maximum exactly 1.
    """
    resized = pixels.astype(np.float32, copy=False) if size is None else resize_shorter_side(pixels, size)
    low, high = float(resized.min()), float(resized.max())
    if high <= low:
        raise ValueError("image is uniform after resizing")
    return (resized - np.float32(low)) / np.float32(high - low)


@dataclass(frozen=True)
class _Task:
    index: int
    source: str
    target: str
    size: int | None
    bits: Literal[8, 16]
    voi: VoiMode
    max_pixels: int | None


def _prepare_one(task: _Task) -> tuple[int, str | None, str]:
    """Worker body: returns ``(index, stage, reason)``, stage ``None`` on success; never raises."""
    try:
        image = read_image(task.source, voi=task.voi, max_pixels=task.max_pixels)
    except ImageReadError as error:
        return task.index, "read", error.reason
    except Exception as error:  # a decoder bug must not end the run
        return task.index, "read", f"{type(error).__name__}: {error}"
    try:
        write_png(task.target, release_training_pixels(image.pixels, task.size), bits=task.bits)
    except OSError as error:
        if error.errno in _STORAGE_ERRNOS:  # the error names the target (io.atomic)
            return task.index, _STOP, str(error)
        return task.index, "write", f"{type(error).__name__}: {error}"
    except Exception as error:  # a uniform image, out of memory...
        return task.index, "write", f"{type(error).__name__}: {error}"
    return task.index, None, ""


Result = tuple[int, str | None, str]
_DIED = "worker process died while preparing this file (a decoder crash or out of memory)"


def _pool(workers: int) -> ProcessPoolExecutor:
    """Workers that start with this module loaded and exit when this process dies."""
    return worker_pool(workers, preload=[__name__])


def _died(task: _Task) -> Result:
    return task.index, "read", _DIED


def prepare_images(
    source: str | Path,
    out_dir: str | Path,
    *,
    size: int | None = RELEASE_SIZE,
    bits: Literal[8, 16] = 8,
    workers: int | None = None,
    overwrite: bool = False,
    voi: VoiMode = "auto",
    max_pixels: int | None = None,
    progress: bool = True,
) -> PrepareSummary:
    """Turn a folder or manifest of X-rays into the release's training PNGs.

    Args:
        source: A folder (searched recursively) or a manifest CSV (see ``raddino.io.manifest``).
        out_dir: Output folder; PNGs keep the input's relative layout, plus ``manifest.csv``,
            ``errors.csv`` (when something failed) and ``prepare.yaml`` (the settings).
        size: Shorter side of the outputs (518 as in the release); ``None`` keeps each image's size.
        bits: 8 (the release) or 16 bits per pixel.
        workers: Worker processes; ``None`` uses all CPU cores, 1 works in this process.
        overwrite: Rewrite existing outputs; by default they are kept, so an interrupted run resumes.
        voi: DICOM VOI LUT / window rule, as in ``read_image``.
        max_pixels: Decompression-bomb limit, as in ``read_image``.
        progress: Show a progress bar (rate and ETA).

    Returns:
        Counts of written, skipped and failed images, and where the manifest and errors are.

    Raises:
        raddino.io.manifest.ManifestError: ``source`` is neither a folder nor a readable manifest.
        ValueError: invalid settings, or two inputs would be written to the same output.
        OutputStorageError: the disk is full (or over quota, or read-only); names the file that could
            not be written. Outputs written before it are complete and listed in the manifest.
        OSError: another output could not be written (the error names it).
    """
    started = time.perf_counter()
    config = PrepareConfig(
        size=size, bits=bits, workers=workers, overwrite=overwrite, voi=voi, max_pixels=max_pixels
    )
    manifest = load_inputs(source)
    out = Path(out_dir)
    names = output_name_array(manifest)
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out / "prepare.yaml")
    failures = FailureLog(out / "errors.csv")
    failures.reset()  # every failed input is retried below, so old reasons would only be stale copies
    done = np.zeros(len(names), bool)  # one byte per entry: which outputs exist in OUT now
    if not overwrite:
        for start in range(0, len(names), BATCH_ROWS):
            batch = names.slice(start, BATCH_ROWS).to_pylist()
            done[start : start + len(batch)] = [(out / name).is_file() for name in batch]
    skipped = int(done.sum())
    paths = manifest.column_array("path")
    todo = np.flatnonzero(~done)
    tasks = (  # made as the workers take them: no list of tasks
        _Task(
            int(index),
            str(manifest.resolve_text(paths[index].as_py())),
            str(out / names[index].as_py()),
            size,
            bits,
            voi,
            max_pixels,
        )
        for index in todo
    )
    worker_count = min(config.workers or available_cores(), max(1, len(todo)))
    results = (
        map(_prepare_one, tasks)
        if worker_count == 1
        else run_parallel(tasks, worker_count, _prepare_one, _died, pool=_pool)
    )
    written = 0
    bar = progress_bar(total=len(todo), unit="img", desc="prepare", disable=not progress, dynamic_ncols=True)
    try:
        for index, stage, reason in results:
            if stage is None:
                done[index] = True
                written += 1
            elif stage == _STOP:
                raise OutputStorageError(f"{reason}; outputs so far are complete: free space and rerun")
            else:
                with naming_os_errors(failures.path):
                    failures.record(str(manifest.resolve_text(paths[index].as_py())), reason, stage=stage)
            bar.update(1)
    except BaseException:  # an interrupt, or a full disk: list what is there, then stop the workers
        bar.close()
        with contextlib.suppress(OSError):  # on a full disk, keep the error that says so
            _write_output_manifest(manifest, names, done, out / "manifest.csv")
        _close(results)
        raise
    bar.close()
    _write_output_manifest(manifest, names, done, out / "manifest.csv")
    return PrepareSummary(
        total=len(names),
        written=written,
        skipped=skipped,
        failed=failures.count,
        out_dir=out,
        manifest_path=out / "manifest.csv",
        errors_path=failures.path,
        seconds=time.perf_counter() - started,
    )


def _close(results: object) -> None:
    """Stop a pool's result stream now (workers finish what they run), not when it is garbage-collected."""
    close = getattr(results, "close", None)
    if close is not None:
        close()


def _write_output_manifest(manifest: Manifest, names: pa.Array, done: np.ndarray, path: Path) -> None:
    """Rows for the outputs that exist, in input order, input columns carried over (even on interrupt)."""
    carried = [column for column in manifest.columns if column not in ("path", "id")]
    kept = np.flatnonzero(done)
    kept_names = names.take(pa.array(kept))

    def rows() -> Iterator[dict[str, str]]:  # streamed: one batch of dicts at a time
        for row, name in zip(manifest.iter_rows(kept), _strings(kept_names), strict=True):
            yield {"path": name, "id": row["id"], **{column: row.get(column, "") for column in carried}}

    write_manifest(rows(), path, columns=["path", "id", *carried])


def _strings(values: pa.Array) -> Iterator[str]:
    for start in range(0, len(values), BATCH_ROWS):
        yield from values.slice(start, BATCH_ROWS).to_pylist()
