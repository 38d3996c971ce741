"""``write_shards``: a folder or manifest of X-rays → WebDataset-style tar shards of the release's PNGs.

Each image goes through ``raddino prepare``'s per-image transform (:func:`~raddino.data.prepare.
release_training_pixels`: B-spline resize of the shorter side, min-max to [0, 1]) and is stored as the PNG
``prepare`` would write, byte for byte, so pre-training on the shards sees the pixels it sees on the
prepared folder. Shard ``k`` covers input rows ``[k·n, (k+1)·n)`` with ``n = images_per_shard``, in input
order; a row that fails is listed in ``OUT/errors.csv`` and left out, and the run goes on.

Resumable: a finished shard (tar file plus its index, see :mod:`raddino.data.shards.layout`) is kept; a shard
whose index is missing or names another size was cut short and is written again from its rows. Tar files are
written to a temporary file and renamed, so no reader ever sees a half-written shard. Member headers carry
no time stamps or owners, so a rerun writes the same bytes.

Why Python's ``tarfile`` and not ``webdataset.ShardWriter``: the writer must know each member's data offset
for the index, and must place rows into fixed shards so that an interrupted run can keep what is done;
``ShardWriter`` rolls shards over by size or count as it goes and records neither.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image
from tqdm import tqdm

from raddino.config import ConfigError, config_to_dict, load_config, save_config
from raddino.data.prepare import RELEASE_SIZE, available_cores, release_training_pixels
from raddino.data.shards.layout import (
    SETTINGS_NAME,
    WIDS_INDEX_NAME,
    ShardIndex,
    index_path,
    read_finished_index,
    sample_key,
    shard_path,
)
from raddino.data.workers import run_parallel, worker_pool
from raddino.io.atomic import atomic_path, atomic_write_text
from raddino.io.dicom import VoiMode
from raddino.io.errors import ImageReadError
from raddino.io.failures import FailureLog
from raddino.io.images import read_image
from raddino.io.manifest import Manifest, load_inputs
from raddino.io.png import to_integer
from raddino.io.progress import progress_bar


@dataclass
class ShardSettings:
    """What fixes a shard folder's contents; saved as ``OUT/shard.yaml`` and checked on resume.

    Attributes:
        images_per_shard: Input rows per shard (WebDataset advises shards of 100 MB–1 GB: about
            1,000 release PNGs of 518 px).
        size: Shorter side of the stored images (518, the release's); ``None`` keeps each image's size.
        bits: 8 (the release's PNGs) or 16.
        voi: DICOM VOI LUT / windowing, as ``raddino prepare``'s ``--voi``.
        max_pixels: Decompression-bomb limit in pixels; ``None`` for the reader's default, 0 for none.
    """

    images_per_shard: int = 1000
    size: int | None = RELEASE_SIZE
    bits: Literal[8, 16] = 8
    voi: bool | Literal["auto"] = "auto"
    max_pixels: int | None = None

    def __post_init__(self) -> None:
        if self.images_per_shard < 1:
            raise ValueError(f"images_per_shard must be at least 1, got {self.images_per_shard}")
        if self.size is not None and self.size < 1:
            raise ValueError(f"size must be a positive number of pixels or null, got {self.size}")
        if self.bits not in (8, 16):
            raise ValueError(f"bits must be 8 or 16, got {self.bits}")


@dataclass
class ShardRun(ShardSettings):
    """What ``raddino shard`` is given: the settings and what they apply to."""

    input: str = ""
    """Folder of images (searched recursively) or a manifest CSV."""
    out: str = ""
    """Output folder for the shards, their indexes, shardindex.json and errors.csv."""
    workers: int | None = None
    """Worker processes; default every CPU core, 1 works in this process."""
    overwrite: bool = False
    """Remove the folder's shards first and write every one again."""
    strict: bool = False
    """Exit 1 if any image failed (by default only when none was stored)."""
    quiet: bool = False
    """No progress bar."""


@dataclass(frozen=True)
class ShardSummary:
    """What a ``write_shards`` run did.

    Attributes:
        total: Images in the input.
        shards: Shards in the folder now.
        written: Images stored by this run.
        kept: Images in shards that an earlier run finished (kept as they were).
        failed: Inputs that could not be prepared (rows in ``errors_path``).
        out_dir: The shard folder.
        errors_path: ``OUT/errors.csv`` (absent when nothing failed).
        seconds: Wall time.
    """

    total: int
    shards: int
    written: int
    kept: int
    failed: int
    out_dir: Path
    errors_path: Path
    seconds: float

    def line(self) -> str:
        """One human-readable summary line."""
        rate = self.written / self.seconds if self.seconds > 0 else 0.0
        text = (
            f"sharded {self.written} image(s), {self.kept} in finished shards kept, {self.failed} failed, "
            f"of {self.total} into {self.shards} shard(s) in {self.seconds:.1f} s ({rate:.2f} images/s) "
            f"→ {self.out_dir}"
        )
        return text + (f"; reasons in {self.errors_path}" if self.failed else "")


@dataclass(frozen=True)
class _Task:
    row: int
    source: str
    size: int | None
    bits: Literal[8, 16]
    voi: VoiMode
    max_pixels: int | None


_Result = tuple[int, str | None, str, bytes]  # (row, failed stage or None, reason, PNG bytes)
_DIED = "worker process died while preparing this file (a decoder crash or out of memory)"


def encode_release_png(pixels: np.ndarray, bits: Literal[8, 16]) -> bytes:
    """The bytes :func:`raddino.io.png.write_png` writes for these [0, 1] pixels (same Pillow call)."""
    buffer = io.BytesIO()
    Image.fromarray(to_integer(pixels, bits)).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def _encode_one(task: _Task) -> _Result:
    """Worker body: read, transform and PNG-encode one input; never raises."""
    try:
        image = read_image(task.source, voi=task.voi, max_pixels=task.max_pixels)
    except ImageReadError as error:
        return task.row, "read", error.reason, b""
    except Exception as error:  # a decoder bug must not end the run
        return task.row, "read", f"{type(error).__name__}: {error}", b""
    try:
        return (
            task.row,
            None,
            "",
            encode_release_png(release_training_pixels(image.pixels, task.size), task.bits),
        )
    except Exception as error:  # a uniform image, out of memory...
        return task.row, "prepare", f"{type(error).__name__}: {error}", b""


def _died(task: _Task) -> _Result:
    return task.row, "read", _DIED, b""


def _pool(workers: int) -> ProcessPoolExecutor:
    return worker_pool(workers, preload=[__name__])


def _in_row_order(results: Iterator[_Result], rows: list[int]) -> Iterator[_Result]:
    """Results (which workers finish in any order) in the order of ``rows``; holds only the early ones."""
    early: dict[int, _Result] = {}
    for row in rows:
        while row not in early:
            result = next(results)
            early[result[0]] = result
        yield early.pop(row)


def _check_settings(settings: ShardSettings, out: Path) -> None:
    """Refuse to add to shards written with other settings (their rows and pixels would not match).

    Raises:
        ValueError: a setting differs; names ``OUT/shard.yaml`` and the key.
    """
    saved_path = out / SETTINGS_NAME
    if not saved_path.is_file():
        return
    try:
        saved = config_to_dict(load_config(ShardSettings, saved_path))
    except (ConfigError, ValueError) as error:
        raise ValueError(
            f"{saved_path}: unreadable settings ({error}); pass --overwrite to start afresh"
        ) from error
    for key, value in config_to_dict(settings).items():
        if saved.get(key) != value:
            raise ValueError(
                f"{saved_path}: these shards were written with {key}={saved.get(key)}, not {value}; "
                "pass --overwrite to rewrite them, or choose another folder"
            )


def _clear(out: Path, overwrite: bool) -> None:
    """Remove temporaries a killed run left (and, with ``overwrite``, every shard and index)."""
    for stale in out.glob(".shard-*.tmp"):
        stale.unlink(missing_ok=True)
    if overwrite:
        for path in [*out.glob("shard-*.tar"), *out.glob("shard-*.index.json"), out / WIDS_INDEX_NAME]:
            path.unlink(missing_ok=True)


def _member(tar: tarfile.TarFile, name: str, payload: bytes) -> int:
    """Append one member with fixed metadata (a rerun writes the same bytes); returns its data offset."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(payload), 0o444, 0
    start = tar.offset
    tar.addfile(info, io.BytesIO(payload))
    padded = -(-len(payload) // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
    return start + (tar.offset - start - padded)  # past the header block(s)


def _write_shard(
    target: Path,
    rows: range,
    results: Iterator[_Result],
    manifest: Manifest,
    failures: FailureLog,
    progress: tqdm,
) -> ShardIndex:
    """Write one shard from the results of its rows (in row order), then its index; both atomically."""
    index = ShardIndex(0, rows.start, rows.stop)
    carried = [column for column in manifest.columns if column not in ("path", "id")]
    with atomic_path(target) as temporary, open(temporary, "wb") as handle:
        with tarfile.open(fileobj=handle, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for row in rows:
                _, stage, reason, png = next(results)
                progress.update(1)
                source = manifest.rows[row]
                if stage is not None:
                    failures.record(manifest.resolve(source), reason, stage=stage)
                    index.failures.append((str(manifest.resolve(source)), stage, " ".join(reason.split())))
                    continue
                key = sample_key(row)
                meta = {"row": row, "id": source["id"], "source": source["path"]}
                meta.update({column: source.get(column, "") for column in carried})
                index.offsets.append(_member(tar, f"{key}.png", png))
                index.keys.append(key)
                index.sizes.append(len(png))
                _member(tar, f"{key}.json", json.dumps(meta, sort_keys=True).encode("utf-8"))
        handle.flush()
        os.fsync(handle.fileno())
    index.tar_bytes = target.stat().st_size
    atomic_write_text(index_path(target), index.to_json())
    return index


def _write_wids_index(out: Path, counts: list[int]) -> None:
    """``shardindex.json`` in WIDS's format, so ``wids.ShardListDataset`` can open the folder too."""
    shardlist = [{"url": shard_path(out, k).name, "nsamples": n} for k, n in enumerate(counts)]
    payload = {"__kind__": "wids-shard-index-v1", "wids_version": 1, "shardlist": shardlist}
    atomic_write_text(out / WIDS_INDEX_NAME, json.dumps(payload, indent=1) + "\n")


def write_shards(
    source: str | Path,
    out_dir: str | Path,
    settings: ShardSettings | None = None,
    *,
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> ShardSummary:
    """Prepare a folder or manifest of X-rays into tar shards; an interrupted run resumes.

    Args:
        source: A folder (searched recursively) or a manifest CSV; DICOM, PNG, JPEG and TIFF.
        out_dir: Shard folder: ``shard-XXXXXX.tar`` with ``shard-XXXXXX.index.json``, ``shardindex.json``,
            ``shard.yaml`` (the settings) and ``errors.csv`` (when something failed).
        settings: Rows per shard, size, bits, VOI and pixel limit (defaults: 1000 rows, 518 px, 8 bits).
        workers: Worker processes; ``None`` uses every core, 1 works in this process.
        overwrite: Rewrite every shard; by default finished shards are kept.
        progress: Show a progress bar (rate and time left).

    Returns:
        Counts of stored, kept and failed images.

    Raises:
        raddino.io.manifest.ManifestError: ``source`` is neither a folder nor a readable manifest.
        ValueError: the folder's shards were written with other settings (names the key).
        OSError: a shard could not be written (the error names it); shards finished before it are kept.
    """
    started = time.perf_counter()
    settings = settings or ShardSettings()
    manifest = load_inputs(source)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not overwrite:
        _check_settings(settings, out)
    _clear(out, overwrite)
    save_config(settings, out / SETTINGS_NAME)
    failures = FailureLog(out / "errors.csv")
    failures.reset()  # kept shards' failures are copied back from their indexes, the rest are retried
    n = settings.images_per_shard
    groups = [range(start, min(start + n, len(manifest))) for start in range(0, len(manifest), n)]
    finished: dict[int, ShardIndex] = {}
    for number, rows in enumerate(groups):
        index = read_finished_index(shard_path(out, number))
        if index is not None and (index.first_row, index.end_row) == (rows.start, rows.stop):
            finished[number] = index
            for path, stage, reason in index.failures:
                failures.record(path, reason, stage=stage)
    voi: VoiMode = settings.voi
    tasks = [
        _Task(
            row,
            str(manifest.resolve(manifest.rows[row])),
            settings.size,
            settings.bits,
            voi,
            settings.max_pixels,
        )
        for number, rows in enumerate(groups)
        if number not in finished
        for row in rows
    ]
    worker_count = min(workers or available_cores(), max(1, len(tasks)))
    results = (
        map(_encode_one, tasks)
        if worker_count == 1
        else run_parallel(tasks, worker_count, _encode_one, _died, pool=_pool)
    )
    ordered = _in_row_order(iter(results), [task.row for task in tasks])
    counts: list[int] = []
    written = 0
    bar = progress_bar(total=len(tasks), unit="img", desc="shard", disable=not progress, dynamic_ncols=True)
    try:
        for number, rows in enumerate(groups):
            index = finished.get(number) or _write_shard(
                shard_path(out, number), rows, ordered, manifest, failures, bar
            )
            written += 0 if number in finished else len(index.keys)
            counts.append(len(index.keys))
    finally:
        bar.close()
        close = getattr(results, "close", None)  # a pool's stream: stop the workers now on an error
        if close is not None:
            close()
    _write_wids_index(out, counts)
    return ShardSummary(
        total=len(manifest),
        shards=len(groups),
        written=written,
        kept=sum(len(index.keys) for index in finished.values()),
        failed=failures.count,
        out_dir=out,
        errors_path=failures.path,
        seconds=time.perf_counter() - started,
    )
