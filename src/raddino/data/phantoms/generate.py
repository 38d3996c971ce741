"""``generate_phantoms``: a folder of phantom images, masks and one manifest CSV, in parallel, resumable.

Worker processes render from specs (see ``plan``), so the output is a function of the seed alone. A rerun
into the same folder with the same settings skips every phantom whose files are all there; different
settings are refused unless ``overwrite=True``. A phantom that fails is written to ``errors.csv`` and left
out of the manifest; the others go on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import yaml
from threadpoolctl import threadpool_limits

from raddino.config import config_to_dict, save_config
from raddino.data.phantoms.plan import plan_phantoms
from raddino.data.phantoms.render import render_phantom
from raddino.data.phantoms.settings import OutputFormat, PhantomsConfig, PhantomSettings
from raddino.data.phantoms.spec import PhantomSpec
from raddino.data.phantoms.writer import (
    image_path,
    is_complete,
    manifest_columns,
    manifest_row,
    write_phantom,
)
from raddino.data.workers import exit_with_parent
from raddino.io.failures import FailureLog
from raddino.io.manifest import write_manifest
from raddino.io.progress import progress_bar

logger = logging.getLogger(__name__)

CONFIG_FILE = "phantoms.yaml"
MANIFEST_FILE = "manifest.csv"
ERRORS_FILE = "errors.csv"


class PhantomsError(ValueError):
    """The output folder cannot be used as asked; the message names the folder and the reason."""


def generate_phantoms(
    out_dir: str | Path,
    n: int,
    size: int = 518,
    seed: int = 0,
    workers: int | None = None,
    formats: Sequence[OutputFormat] = ("png8",),
    *,
    masks: bool = True,
    settings: PhantomSettings | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Render ``n`` phantoms into ``out_dir`` and write their manifest.

    Args:
        out_dir: Output folder (created).
        n: Number of images.
        size: Side of the square images in pixels.
        seed: Root seed; the same seed gives the same files whatever ``workers`` is.
        workers: Processes; ``None`` uses every core, 1 renders in this process.
        formats: Any of ``png8``, ``png16``, ``dicom``; the first is the manifest's ``path`` column, the
            others go to ``path_png16`` / ``path_dicom`` / ``path_png8``.
        masks: Write the mask PNGs and ``mask_*`` columns.
        settings: Prevalences, views, repeats, splits (see ``PhantomSettings``).
        overwrite: Re-render everything, even into a folder made with other settings.
        progress: Show a progress bar.

    Returns:
        The manifest CSV (``out_dir/manifest.csv``).

    Raises:
        PhantomsError: ``out_dir`` holds phantoms made with other settings and ``overwrite`` is False.
        ValueError: invalid settings (the message names the setting).
    """
    config = PhantomsConfig(
        n=n, size=size, seed=seed, formats=list(formats), masks=masks, settings=settings or PhantomSettings()
    )
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    _check_previous_run(root, config, overwrite)
    save_config(config, root / CONFIG_FILE)
    specs = plan_phantoms(config.n, config.seed, config.settings)
    todo = [spec for spec in specs if overwrite or not is_complete(root, spec, config.formats, config.masks)]
    failures = FailureLog(root / ERRORS_FILE)
    failures.reset()
    if len(todo) < len(specs):
        logger.info("resuming: %d of %d phantoms already in %s", len(specs) - len(todo), len(specs), root)
    failed = _render_all(root, todo, config, workers, failures, progress, done=len(specs) - len(todo))
    rows = [manifest_row(spec, config.formats, config.masks) for spec in specs if spec.image_id not in failed]
    manifest = write_manifest(rows, root / MANIFEST_FILE, manifest_columns(config.formats, config.masks))
    if failed:
        logger.warning("%d of %d phantoms failed; see %s", len(failed), len(specs), failures.path)
    logger.info("%d phantoms at %d px in %s", len(rows), config.size, manifest)
    return manifest


def _check_previous_run(root: Path, config: PhantomsConfig, overwrite: bool) -> None:
    previous_file = root / CONFIG_FILE
    if overwrite or not previous_file.exists():
        return
    try:
        previous = yaml.safe_load(previous_file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise PhantomsError(
            f"{previous_file}: cannot read the settings of the earlier run: {error}"
        ) from error
    differences = _differences(previous or {}, config_to_dict(config))
    if differences:
        key, (old, new) = next(iter(differences.items()))
        raise PhantomsError(
            f"{root}: holds phantoms made with other settings ({key}: {old!r} there, {new!r} now); "
            "pass overwrite=True (--overwrite) or choose another folder"
        )


def _differences(old: object, new: object, prefix: str = "") -> dict[str, tuple[object, object]]:
    if isinstance(old, dict) and isinstance(new, dict):
        found: dict[str, tuple[object, object]] = {}
        for key in sorted(set(old) | set(new)):
            found.update(_differences(old.get(key), new.get(key), f"{prefix}{key}."))
        return found
    if isinstance(old, list) and isinstance(new, list | tuple):
        new = list(new)
    return {} if old == new else {prefix.rstrip("."): (old, new)}


def _render_all(
    root: Path,
    specs: list[PhantomSpec],
    config: PhantomsConfig,
    workers: int | None,
    failures: FailureLog,
    progress: bool,
    done: int,
) -> set[str]:
    """Render and write ``specs``; returns the ids that failed (recorded in ``failures``)."""
    workers = max(1, workers if workers is not None else os.cpu_count() or 1)
    failed: set[str] = set()
    total = done + len(specs)
    bar = progress_bar(total=total, initial=done, unit="img", desc="phantoms", disable=not progress)

    def record(results: Iterable[tuple[str, str, str]]) -> None:
        for image_id, path, reason in results:
            failed.add(image_id)
            failures.record(path, reason, stage="phantom")

    with bar:
        if workers == 1 or len(specs) <= 2:
            with threadpool_limits(limits=1):
                for spec in specs:
                    record(_render_chunk(root, [spec], config))
                    bar.update(1)
            return failed
        chunk = max(1, min(16, len(specs) // (workers * 8)))
        chunks = [specs[start : start + chunk] for start in range(0, len(specs), chunk)]
        with ProcessPoolExecutor(
            max_workers=workers, initializer=_start_worker, initargs=(os.getpid(),)
        ) as pool:
            futures = {pool.submit(_render_chunk, root, part, config): len(part) for part in chunks}
            for future in as_completed(futures):
                record(future.result())
                bar.update(futures[future])
    return failed


def _start_worker(command_pid: int) -> None:
    exit_with_parent(command_pid)  # a killed command leaves no worker behind
    # One BLAS thread per worker: the texture matrix products are tiny, and oversubscribed BLAS threads
    # on a few cores make them a hundred times slower.
    threadpool_limits(limits=1)


def _render_chunk(root: Path, specs: list[PhantomSpec], config: PhantomsConfig) -> list[tuple[str, str, str]]:
    """Render and write some phantoms; failures are returned as ``(id, path, reason)``, never raised."""
    failed = []
    for spec in specs:
        try:
            phantom = render_phantom(spec, config.size)
            write_phantom(root, phantom, config.formats, config.masks)
        except Exception as error:  # one bad phantom (a full disk, say) must not stop the run
            failed.append(
                (spec.image_id, image_path(spec, config.formats[0]), f"{type(error).__name__}: {error}")
            )
    return failed
