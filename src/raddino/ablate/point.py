"""One point of a sweep: pre-train (resuming), export the teacher, probe it (and segment with it).

``POINT/`` is a normal ``raddino pretrain`` run folder (``config.yaml``, ``checkpoints/``,
``metrics.jsonl``, ``export/teacher``) with the evaluations in ``POINT/eval/`` and ``POINT/point.json``,
written last and atomically: a point with ``point.json`` is finished and skipped by a rerun; one without
resumes from its newest checkpoint, and its probe reuses the seeds it finished. A finished point whose
settings have changed since (another config, evaluation or image count) is refused in one line rather
than reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from raddino.ablate.config import point_config
from raddino.ablate.sweep import Point
from raddino.config import config_to_dict
from raddino.io.atomic import atomic_write_text

logger = logging.getLogger(__name__)
DONE = "point.json"


@dataclass(frozen=True)
class Evaluation:
    """How every point's encoder is evaluated (the same for all points of a sweep)."""

    manifest: str
    cache_dir: str
    labels: list[str] = field(default_factory=list)
    probe_seeds: list[int] = field(default_factory=lambda: [0])
    probe_epochs: int = 100
    probe_lrs: list[float] = field(default_factory=lambda: [1e-3])
    split_ratios: list[float] = field(default_factory=lambda: [0.7, 0.15, 0.15])
    split_seed: int = 0
    segment: list[str] = field(default_factory=list)
    device: str = "auto"
    progress: bool = True


@dataclass(frozen=True)
class PointJob:
    """Everything a process needs to run one point (plain values, so it travels to a worker)."""

    point: Point
    folder: str
    pretrain: dict[str, Any]
    """The base pre-training tree; the point's overrides and data are set on it."""
    data: str
    """The point's pre-training manifest."""
    images: int
    evaluation: Evaluation


def fingerprint(job: PointJob) -> str:
    """What a finished point must have been run with to be reused: its pre-training config (less the
    data file's place), its image count and the evaluation's settings (less the progress bars)."""
    config = config_to_dict(point_config(job.pretrain, job.point.overrides))
    config["train"].pop("dataset_path", None)
    evaluation = {k: v for k, v in asdict(job.evaluation).items() if k not in ("progress", "cache_dir")}
    evaluation["manifest"] = str(Path(evaluation["manifest"]).resolve())
    text = json.dumps({"pretrain": config, "images": job.images, "evaluation": evaluation}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def finished(job: PointJob) -> dict[str, Any] | None:
    """The record of a finished point, or None.

    Raises:
        ValueError: the point finished with other settings (the sweep's config changed); names the folder.
    """
    path = Path(job.folder) / DONE
    if not path.is_file():
        return None
    record: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if record.get("fingerprint") != fingerprint(job):
        raise ValueError(
            f"{job.folder}: this point finished with other pre-training or evaluation settings; "
            "rerun with --overwrite or pick another --out"
        )
    return record


def _model(folder: Path, config: Any) -> Path:
    """The encoder to evaluate: the validation probe's best teacher when the run kept one, else the
    teacher of the last checkpoint (exported again if the run's export is missing)."""
    from raddino.pretrain.export import export_run

    best = folder / "export" / "best"
    if config.validation.every is not None and (best / "config.json").is_file():
        return best
    teacher = folder / "export" / "teacher"
    if not (teacher / "model.safetensors").is_file():
        export_run(folder, teacher, overwrite=True)
    return teacher


def _probe(job: PointJob, model: Path, out: Path) -> Path:
    from raddino.evaluate.probe import ProbeConfig, run_probe
    from raddino.evaluate.probe.heads import HeadTraining
    from raddino.features.cache import FeatureConfig

    ev = job.evaluation
    features = FeatureConfig(
        model=str(model),
        cache_dir=ev.cache_dir,
        num_workers=0,
        device=ev.device,  # type: ignore[arg-type]
    )
    result = run_probe(
        ProbeConfig(
            input=ev.manifest,
            out=str(out),
            features=features,
            labels=list(ev.labels),
            seeds=list(ev.probe_seeds),
            lrs=list(ev.probe_lrs),
            training=HeadTraining(epochs=ev.probe_epochs),
            split_ratios=list(ev.split_ratios),
            split_seed=ev.split_seed,
            progress=ev.progress,
            figure=False,
        )
    )
    return result.outputs["json"]


def _segment(job: PointJob, model: Path, out: Path) -> Path:
    from raddino.evaluate.segmentation import SegmentConfig, run_segment

    ev = job.evaluation
    result = run_segment(
        SegmentConfig(
            input=ev.manifest,
            model=str(model),
            out=str(out),
            structures=list(ev.segment),
            heads=["linear"],
            device=ev.device,  # type: ignore[arg-type]
            progress=ev.progress,
        )
    )
    return result.outputs["json"]


def run_point(job: PointJob) -> dict[str, Any]:
    """Run one point to the end (or return its record if it finished before); returns ``point.json``."""
    from raddino.pretrain.train import pretrain

    folder = Path(job.folder)
    record = finished(job)
    if record is not None:
        return record
    overrides = {**job.point.overrides, "train.dataset_path": job.data, "train.split": None}
    config = point_config(job.pretrain, overrides)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    trained = pretrain(config, folder, resume=True, progress=job.evaluation.progress)
    model = _model(folder, config)
    seconds["pretrain"] = round(time.perf_counter() - started, 2)
    started = time.perf_counter()
    results = {"probe": str(_probe(job, model, folder / "eval" / "probe"))}
    seconds["probe"] = round(time.perf_counter() - started, 2)
    if job.evaluation.segment:
        started = time.perf_counter()
        results["segment"] = str(_segment(job, model, folder / "eval" / "segment"))
        seconds["segment"] = round(time.perf_counter() - started, 2)
    record = {
        "point": job.point.name,
        **{key: value for key, value in asdict(job.point).items() if key != "overrides"},
        "overrides": {key: value for key, value in job.point.overrides.items()},
        "images": job.images,
        "iterations": trained.iterations,
        "model": str(model),
        "results": results,
        "seconds": {**seconds, "total": round(sum(seconds.values()), 2)},
        "fingerprint": fingerprint(job),
    }
    atomic_write_text(folder / DONE, json.dumps(record, indent=2) + "\n")
    logger.info("point %s finished in %.1f s", job.point.name, record["seconds"]["total"])
    return record


__all__ = ["DONE", "Evaluation", "PointJob", "finished", "run_point"]
