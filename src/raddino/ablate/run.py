"""``raddino ablate``: one of the paper's ablations on the user's data, point by point.

``OUT/`` holds ``data/pool.csv`` (the pre-training images less the evaluation's held-out subjects,
:mod:`raddino.ablate.subsets`), ``data/data-size-*.csv`` (nested subsets), ``points/<point>/`` (one
``raddino pretrain`` run folder per value and seed, :mod:`raddino.ablate.point`), ``feature_cache/``, and
at the end ``points.csv`` (one row per point), ``ablation.{csv,md,json,png}`` (per value) and
``compare/`` (``compare``'s table layout, a row per point). A rerun skips finished points and resumes the
unfinished one; ``OUT/.ablate.lock`` keeps a second sweep out of the folder meanwhile.

>>> from raddino.ablate import AblateRun, run_ablation
>>> run_ablation(AblateRun(sweep="resolution", values=["224", "518"], evaluation="labels.csv",
...                        out="abl"))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raddino.ablate.config import AblateRun, point_config
from raddino.ablate.figure import sweep_figure
from raddino.ablate.point import Evaluation, PointJob, finished
from raddino.ablate.queue import default_parallel, run_queue
from raddino.ablate.results import by_value, parse_groups, point_metrics, write_tables
from raddino.ablate.subsets import held_out_subjects, write_pool, write_subset
from raddino.ablate.sweep import Point, make_points
from raddino.io.lock import OutputLock

logger = logging.getLogger(__name__)


@dataclass
class AblationResult:
    """What a sweep did: points run now and skipped, the per-value table and the files written."""

    out: Path
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    table: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Path] = field(default_factory=dict)

    def __str__(self) -> str:
        return (
            f"{len(self.ran)} point(s) run, {len(self.skipped)} finished before; "
            f"figure {self.outputs.get('figure')}, table {self.outputs.get('markdown')}"
        )


def _check(settings: AblateRun) -> None:
    if not settings.sweep:
        raise ValueError("no sweep given: resolution, data-size, init, objective or a dotted key")
    if not settings.train.dataset_path:
        raise ValueError("train.dataset_path: no pre-training data; pass --data")
    if not settings.evaluation:
        raise ValueError("evaluation: no labelled manifest to probe on; pass --eval")


def _evaluation(settings: AblateRun, out: Path) -> Evaluation:
    return Evaluation(
        manifest=settings.evaluation,
        cache_dir=str(out / "feature_cache"),
        labels=list(settings.labels),
        probe_seeds=list(settings.probe_seeds),
        probe_epochs=settings.probe_epochs,
        probe_lrs=list(settings.probe_lrs),
        split_ratios=list(settings.split_ratios),
        split_seed=settings.split_seed,
        segment=list(settings.segment),
        device=settings.compute.device,
        progress=settings.progress,
    )


def plan_jobs(settings: AblateRun) -> list[PointJob]:
    """The sweep's points as jobs: the pool and subsets written, every point's config checked.

    Raises:
        SweepError: an unknown sweep or a value it cannot take.
        ConfigError: a point's pre-training config is invalid (naming the key).
        ValueError: no pre-training image is left once the evaluation's subjects are held out.
    """
    out = Path(settings.out)
    tree = settings.pretrain_tree()
    if tree["validation"]["every"] is not None and not tree["validation"]["labels_path"]:
        # the pool holds no validation subject: the validation probe reads the evaluation's val split
        tree["validation"]["labels_path"] = settings.evaluation
    flat = {f"crops.{key}": value for key, value in tree["crops"].items()}
    flat["student.arch_overrides"] = tree["student"]["arch_overrides"]
    points = make_points(settings.sweep, list(settings.values), list(settings.seeds), flat)
    held_out = held_out_subjects(settings.evaluation, settings.split_ratios, settings.split_seed)
    pool, images, left_out = write_pool(
        settings.train.dataset_path, out / "data" / "pool.csv", held_out, settings.train.split
    )
    logger.info("pre-training pool: %d images (%d left out: evaluation subjects)", images, left_out)
    evaluation = _evaluation(settings, out)
    jobs = []
    for point in points:
        data, count = _point_data(point, pool, images, out, settings.subset_seed)
        point_config(tree, {**point.overrides, "train.dataset_path": str(data), "train.split": None})
        jobs.append(PointJob(point, str(out / "points" / point.name), tree, str(data), count, evaluation))
    return jobs


def _point_data(point: Point, pool: Path, images: int, out: Path, seed: int) -> tuple[Path, int]:
    if point.data_size is None:
        return pool, images
    return write_subset(pool, out / "data" / f"data-size-{point.value}.csv", point.data_size, seed)


def _summarise(settings: AblateRun, records: list[dict[str, Any]], result: AblationResult) -> None:
    from raddino.evaluate.compare import CompareConfig, run_compare

    out = Path(settings.out)
    groups = parse_groups(settings.groups, settings.groups_file, settings.groups_column)
    rows = [{**record, "metrics": point_metrics(record, groups)} for record in records]
    result.table = by_value(rows)
    result.outputs.update(write_tables(out, settings.sweep, rows, result.table))
    findings = [name.split("/", 1)[1] for name in rows[0]["metrics"] if name.startswith("auprc/")]
    result.outputs["figure"] = sweep_figure(
        out / "ablation.png", settings.sweep, result.table, groups, findings
    )
    several = len(settings.seeds) > 1
    names = [f"{r['value']} (seed {r['seed']})" if several else r["value"] for r in records]
    tasks = [task for task in ("probe", "segment") if task in records[0]["results"]]
    compare = run_compare(
        CompareConfig(
            results=[r["results"][task] for task in tasks for r in records],
            out=str(out / "compare"),
            names=[f"{settings.sweep}={name}" for _ in tasks for name in names],
        )
    )
    result.outputs["compare"] = compare.outputs["markdown"]


def run_ablation(settings: AblateRun) -> AblationResult:
    """Run a sweep into ``settings.out`` (finished points skipped) and write its figure and tables.

    Raises:
        ValueError: no sweep, data or evaluation manifest; and what :func:`plan_jobs` raises.
        LockError: another sweep is writing into the same folder.
    """
    _check(settings)
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    with OutputLock(out / ".ablate.lock", f"ablation folder {out}").acquire():
        jobs = plan_jobs(settings)
        if settings.overwrite:
            for job in jobs:
                shutil.rmtree(job.folder, ignore_errors=True)
        result = AblationResult(out)
        for job in jobs:
            (result.skipped if finished(job) else result.ran).append(job.point.name)
        parallel = default_parallel(settings.parallel)
        logger.info("%d point(s), %d finished before; %d at once", len(jobs), len(result.skipped), parallel)
        records = run_queue(jobs, parallel)
        _summarise(settings, records, result)
    return result


__all__ = ["AblationResult", "plan_jobs", "run_ablation"]
