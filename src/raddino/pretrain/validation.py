"""Early stopping by a validation probe (the paper's Figure 2 protocol): every ``validation.every``
iterations the teacher of that checkpoint is scored by a quick linear probe on a validation task, and the
best one is kept as ``RUN/export/best``.

The task: the rows of ``validation.labels_path`` (default: ``train.dataset_path``) in split
``validation.split``, labelled in the ``validation.labels`` columns (``1`` positive, ``0`` negative, other
cells left out). Its subjects are divided by their draw (:func:`raddino.data.splits.subject_draw` with
``validation.seed``): ``validation.fit_fraction`` of them fit one logistic regression per label on the
teacher's standardised CLS tokens, the rest score it; the score is the macro AUPRC over the labels with
both classes on both sides. The probe is :func:`raddino.features.quick_probe.quick_probe_macro_auprc`
(scikit-learn's logistic regression, as the int8 export's gate scores), not ``raddino probe``'s heads:
pre-training sits beside the evaluations in the package's layers and does not import them, and a quick
score per checkpoint is what the protocol asks for.

``RUN/validation.jsonl`` holds one record per score (``step``, ``val/probe_auprc``, ``best_step``); a
resumed run reads it back, so the best so far and the patience count carry over. With
``validation.patience`` the run stops once that many scores in a row have not beaten the best.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raddino.io.atomic import atomic_write_text

logger = logging.getLogger(__name__)
HISTORY = "validation.jsonl"


@dataclass
class ValidationProbeConfig:
    """Early stopping by a validation probe (off unless ``every`` is set)."""

    every: int | None = None
    """Score the teacher every this many iterations and at the end (a checkpoint is written there);
    null: off."""
    labels_path: str = ""
    """Labelled manifest of the validation task; default: train.dataset_path."""
    split: str = "val"
    """Its rows of this split are the validation task."""
    labels: list[str] = field(default_factory=list)
    """Label columns the probe predicts (needed when every is set)."""
    patience: int | None = None
    """Stop after this many scores in a row without a better one; null: run to the end, keep the best."""
    fit_fraction: float = 0.5
    """Share of the validation subjects the probe is fitted on; the rest score it."""
    seed: int = 0
    """Seed of the fit / score division of the subjects."""
    batch_size: int = 32
    """Images per forward pass while embedding."""

    def __post_init__(self) -> None:
        if self.every is not None and self.every < 1:
            raise ValueError(f"validation.every: must be at least 1 (or null), got {self.every}")
        if self.every is not None and not self.labels:
            raise ValueError("validation.labels: name the label columns the validation probe predicts")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"validation.patience: must be at least 1 (or null), got {self.patience}")
        if not 0 < self.fit_fraction < 1:
            raise ValueError(f"validation.fit_fraction: must lie in (0, 1), got {self.fit_fraction}")


def validation_due(config: Any, done: int) -> bool:
    """Whether the teacher is scored after ``done`` iterations (``config`` a ``PretrainConfig``)."""
    every = config.validation.every
    return every is not None and (done % every == 0 or done == config.run_iterations)


def best_so_far(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The record with the highest score (the earliest of equal ones), or None."""
    scored = [record for record in history if math.isfinite(record["val/probe_auprc"])]
    return max(scored, key=lambda record: (record["val/probe_auprc"], -record["step"]), default=None)


def patience_spent(history: list[dict[str, Any]], patience: int | None) -> bool:
    """Whether the last ``patience`` scores all came after the best one."""
    best = best_so_far(history)
    if patience is None or best is None:
        return False
    return sum(record["step"] > best["step"] for record in history) >= patience


class ValidationProbe:
    """The engine callback that scores checkpoints and keeps the best teacher (main process only).

    Args:
        config: The run's ``PretrainConfig``.
        run: The run folder.
        is_main: Whether this process scores (the others only follow the stopping decision).
    """

    def __init__(self, config: Any, run: Path, is_main: bool = True) -> None:
        self.config, self.run, self.is_main = config, Path(run), is_main
        self.settings: ValidationProbeConfig = config.validation
        path = self.run / HISTORY
        lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
        self.history = [json.loads(line) for line in lines if line.strip()]
        self.stopped = patience_spent(self.history, self.settings.patience)
        self._task: tuple[Path, list[str], Any, Any] | None = None

    def _prepare(self) -> tuple[Path, list[str], Any, Any]:
        """The validation manifest (written once into ``RUN/validation/``), its ids, labels and fit mask."""
        import numpy as np

        from raddino.data.splits import canonical_split, subject_draw, subject_key
        from raddino.io.manifest import load_inputs, write_manifest

        source = self.settings.labels_path or self.config.train.dataset_path
        manifest = load_inputs(source)
        missing = [name for name in self.settings.labels if name not in manifest.columns]
        if missing:
            raise ValueError(f"{source}: no label column {missing[0]!r} (validation.labels)")
        split = canonical_split(self.settings.split, "validation.split")
        rows = [
            {**row, "path": str(manifest.resolve(row))}
            for row in manifest.rows
            if canonical_split(row.get("split", ""), str(source)) == split
        ]
        if len(rows) < 4:
            raise ValueError(
                f"{source}: {len(rows)} row(s) of split '{split}'; the validation probe needs more"
            )
        path = write_manifest(rows, self.run / "validation" / "manifest.csv", manifest.columns)
        values = {"1": 1.0, "1.0": 1.0, "0": 0.0, "0.0": 0.0}
        labels = np.array(
            [[values.get(row[name].strip(), np.nan) for name in self.settings.labels] for row in rows]
        )
        fit = np.array(
            [subject_draw(subject_key(row), self.settings.seed) < self.settings.fit_fraction for row in rows]
        )
        return path, [row["id"] for row in rows], labels, fit

    def export(self, done: int) -> Path:
        """The teacher of the checkpoint after ``done`` iterations, exported to ``RUN/validation/teacher``."""
        from raddino.pretrain.export import export_run

        teacher = self.run / "validation" / "teacher"
        checkpoint = self.run / "checkpoints" / f"step_{done:07d}.pt"
        export_run(self.run, teacher, checkpoint=checkpoint, overwrite=True)
        return teacher

    def probe(self, teacher: Path) -> float:
        """The validation probe's macro AUPRC of an exported teacher (NaN when no label can be scored)."""
        import numpy as np

        from raddino.features.embed import EmbedConfig, embed
        from raddino.features.quick_probe import quick_probe_macro_auprc
        from raddino.features.store import read_embeddings

        if self._task is None:
            self._task = self._prepare()
        manifest, ids, labels, fit = self._task
        embeddings = self.run / "validation" / "embeddings.parquet"
        embed(
            EmbedConfig(
                input=str(manifest),
                model=str(teacher),
                out=str(embeddings),
                batch_size=self.settings.batch_size,
                num_workers=0,
                device=self.config.compute.device,
                patch_mean=False,
                overwrite=True,
            )
        )
        found, vectors = read_embeddings(embeddings, "cls")
        where = {image: row for row, image in enumerate(found)}
        kept = np.array([image in where for image in ids])  # an unreadable image is left out
        order = np.array([where[image] for image in ids if image in where], dtype=np.int64)
        features, labels, fit = vectors[order], labels[kept], fit[kept]
        return quick_probe_macro_auprc(features[fit], labels[fit], features[~fit], labels[~fit])

    def __call__(self, done: int, record: Mapping[str, float] | None = None) -> None:
        if not validation_due(self.config, done) or self.stopped:
            return
        if self.is_main:
            teacher = self.export(done)
            value = self.probe(teacher)
            self.history = [r for r in self.history if r["step"] < done]
            self.history.append({"step": done, "val/probe_auprc": value})
            best = best_so_far(self.history)
            if best is not None and best["step"] == done:
                self._keep(teacher, self.run / "export" / "best")
            self.history[-1]["best_step"] = None if best is None else best["step"]
            text = "".join(json.dumps(r) + "\n" for r in self.history)
            atomic_write_text(self.run / HISTORY, text)
            logger.info(
                "validation probe after %d iterations: macro AUPRC %.4f (best %s)",
                done,
                value,
                self.history[-1]["best_step"],
            )
        self.stopped = self._agreed(patience_spent(self.history, self.settings.patience))

    @staticmethod
    def _keep(teacher: Path, best: Path) -> None:
        """Make ``teacher`` the best export; the previous best is moved aside first, then removed."""
        previous = best.with_name(best.name + ".previous")
        shutil.rmtree(previous, ignore_errors=True)
        best.parent.mkdir(parents=True, exist_ok=True)
        if best.exists():
            best.rename(previous)
        teacher.rename(best)
        shutil.rmtree(previous, ignore_errors=True)

    def _agreed(self, stop: bool) -> bool:
        """The main process's decision on every process."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return stop
        decision = [stop]
        dist.broadcast_object_list(decision, src=0)
        return bool(decision[0])


__all__ = [
    "HISTORY",
    "ValidationProbe",
    "ValidationProbeConfig",
    "best_so_far",
    "patience_spent",
    "validation_due",
]
