"""``pretrain``: continue DINOv2 pre-training into a run folder, on the training engine; CPU or GPU, one
process, DDP or FSDP2.

Single process::

    raddino pretrain --config configs/demo_cpu.yaml --out runs/demo

One node with 8 GPUs (one process per GPU; the same command on every node with ``--nnodes``)::

    torchrun --nproc_per_node 8 -m raddino pretrain --config configs/rad_dino_vitb14.yaml --out runs/rd

The step is :class:`~raddino.pretrain.task.PretrainTask` on :class:`~raddino.training.Engine`: checkpoints
every ``train.checkpoint_period`` iterations and at the end (``RUN/checkpoints/step_XXXXXXX.pt``), a
rerun into the same folder resumes exactly (runs of the earlier ``iteration_XXXXXXX.pt`` layout too),
``RUN/metrics.jsonl`` with ``train/loss``, ``train/dino``, ``train/ibot``, ``train/koleo``, the schedules'
values (``train/learning_rate``, ``train/momentum``, …) and ``train/grad_norm_<module>``; teacher snapshots
every ``train.export_period`` iterations and at the end.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from raddino.config import ConfigError
from raddino.data.shards import open_shards
from raddino.data.splits import canonical_split
from raddino.io.failures import FailureLog
from raddino.io.manifest import Manifest, load_inputs
from raddino.pretrain.checkpoint import run_folder, upgrade_metrics
from raddino.pretrain.config import PretrainConfig
from raddino.pretrain.dataset import PretrainDataset
from raddino.pretrain.export import export_run
from raddino.pretrain.loader import build_augmentation
from raddino.pretrain.task import PretrainTask, snapshot_due
from raddino.pretrain.validation import HISTORY as VALIDATION_HISTORY
from raddino.pretrain.validation import ValidationProbe
from raddino.training import Callback, Engine, Plan, RunFolder, resolve_precision
from raddino.training.distributed import DistributedContext, init_distributed

ADVICE = "lower optim.base_lr, raise optim.warmup_epochs or use bf16/fp32"
"""Appended to the one line a non-finite loss stops the run with."""


@dataclass
class PretrainRun(PretrainConfig):
    """Settings of ``raddino pretrain``: the pre-training config (its sections, as DINOv2 names them) and
    where the run goes; only the config is saved in the run folder."""

    out: str = ""
    """Run folder: checkpoints, metrics.jsonl, config.yaml, errors.csv, export/."""
    resume: bool = True
    """Continue from the newest checkpoint in out; with --no-resume a folder holding checkpoints is an
    error."""
    overwrite: bool = False
    """Start afresh: first remove out's checkpoints, logs, errors and exports."""

    def config(self) -> PretrainConfig:
        """The pre-training config alone (what ``RUN/config.yaml`` and the checkpoints hold)."""
        sections = {item.name: getattr(self, item.name) for item in dataclasses.fields(PretrainConfig)}
        return PretrainConfig(**sections)


@dataclass
class PretrainResult:
    """What a finished (or already finished) run left behind.

    Attributes:
        run: The run folder.
        iterations: Iterations done (the run's, not only this session's).
        checkpoint: The newest checkpoint.
        export: ``RUN/export/teacher`` when this session exported it.
        last_metrics: The last step's ``train/…`` record of this session (empty if it ran none).
        failures: Images of this session that could not be read (listed in ``RUN/errors.csv``).
    """

    run: Path
    iterations: int
    checkpoint: Path | None
    export: Path | None = None
    last_metrics: dict[str, float] = field(default_factory=dict)
    failures: int = 0


def _manifest(config: PretrainConfig) -> Manifest:
    """The images of ``train.dataset_path``, only those of ``train.split`` when it is set (any spelling the
    manifests accept: ``Train``, ``training``)."""
    manifest = load_inputs(config.train.dataset_path)
    if config.train.split is None:
        return manifest
    split = canonical_split(config.train.split, "train.split")
    rows = [
        row for row in manifest.rows if canonical_split(row.get("split", ""), str(manifest.source)) == split
    ]
    if not rows:
        raise ValueError(f"{config.train.dataset_path}: no rows with split '{split}' (train.split)")
    return Manifest(rows=rows, columns=manifest.columns, root=manifest.root, source=manifest.source)


def _snapshots(config: PretrainConfig, folder: RunFolder, context: DistributedContext) -> Callback:
    """Exports the teacher of every ``train.export_period``-th checkpoint to ``RUN/export/teacher_XXXXXXX``
    (snapshots to choose from by linear probing, as the paper chose its checkpoint)."""

    def export(done: int, record: object) -> None:
        if not snapshot_due(config, done):
            return
        if context.is_main:
            out = folder.path / "export" / f"teacher_{done:07d}"
            export_run(folder.path, out, checkpoint=folder.checkpoint_path(done), overwrite=True)
        context.barrier()

    return export


def pretrain(
    config: PretrainConfig,
    out: str | Path,
    *,
    resume: bool = True,
    progress: bool = True,
    on_step: Callback | None = None,
    overwrite: bool = False,
) -> PretrainResult:
    """Run (or continue) DINOv2 pre-training into the run folder ``out``.

    Args:
        config: The merged config (saved as ``out/config.yaml``).
        out: Run folder: ``config.yaml``, ``checkpoints/``, ``metrics.jsonl`` (and ``tensorboard/``),
            ``errors.csv``, ``export/teacher`` (when ``train.export_at_end``).
        resume: Continue from the newest checkpoint in ``out`` if there is one; with False an existing
            checkpoint is an error.
        progress: Show a progress bar on rank 0 (loss terms, lr, momentum, img/s, time left).
        on_step: Called on every rank after each iteration (and its checkpoint) with the iterations done
            and the step's ``train/…`` record.
        overwrite: Start afresh: first remove ``out``'s checkpoints, logs, errors and exports.

    Raises:
        NonFiniteLossError: a loss term was NaN or infinite (:mod:`raddino.training`); names it.
        StateFileError: a checkpoint is refused, unreadable, does not fit, or cannot be written; one line.
        FileExistsError: ``out`` holds checkpoints and ``resume`` is False.
        ValueError: no images, or none of ``train.split``.
    """
    run = Path(out)
    context = init_distributed(config.compute.device)
    folder = run_folder(run)
    if overwrite:
        if context.is_main:
            errors = [path.name for path in run.glob("errors*.csv")]
            folder.clear(["export", "validation", VALIDATION_HISTORY, *errors])
        context.barrier()
    previous = folder.latest()
    if previous is not None and not resume:
        raise FileExistsError(
            f"{run} already holds checkpoints ({previous.name}); resume, --overwrite or pick a new folder"
        )
    precision = resolve_precision(config.compute.mixed_precision, context.device)
    images = open_shards(config.train.shards) if config.train.shards else _manifest(config)
    dataset = PretrainDataset(images, build_augmentation(config), seed=config.train.seed)
    if context.is_main:
        run.mkdir(parents=True, exist_ok=True)
        folder.save_config(config)
        if previous is not None and folder.is_legacy(previous):
            upgrade_metrics(run)  # the earlier loop's keys, before the engine keeps the records up to it
    failures = FailureLog(run / ("errors.csv" if context.is_main else f"errors_rank{context.rank}.csv"))
    if context.is_main:
        failures.begin()  # RUN/errors.csv exists, header only, while nothing failed
    task = PretrainTask(config, context, dataset, failures)
    if config.validation.every is not None:  # early stopping by a validation probe (Figure 2)
        task.validation = ValidationProbe(config, run, context.is_main)
    plan = Plan(
        total_steps=config.total_iterations,
        checkpoint_every=config.train.checkpoint_period,
        stop_at=config.train.max_iterations,
        keep_checkpoints=config.train.keep_checkpoints,
        log_every=config.train.log_period,
    )
    callbacks: list[Callback] = [
        _snapshots(config, folder, context),
        *([task.validation] if task.validation is not None else []),
        *([on_step] if on_step is not None else []),
    ]
    engine = Engine(
        task,
        folder,
        plan,
        precision,
        context=context,
        callbacks=callbacks,
        progress=progress,
        advice=ADVICE,
        tracking=config.tracking,
        config=config,
    )
    fit = engine.fit()
    exported = None
    if config.train.export_at_end and fit.checkpoint is not None and fit.step > fit.start:
        if context.is_main:
            exported = export_run(run, run / "export" / "teacher", overwrite=True).out
        context.barrier()
    return PretrainResult(run, fit.step, fit.checkpoint, exported, dict(fit.last), failures.count)


def run_pretrain(settings: PretrainRun) -> PretrainResult:
    """:func:`pretrain` with the command's settings (``raddino pretrain``).

    Raises:
        ConfigError: no ``train.dataset_path``.
        ValueError: no ``out``; and what :func:`pretrain` raises.
    """
    if not settings.train.dataset_path and not settings.train.shards:
        raise ConfigError("train.dataset_path: no data; set it in the config or with --data")
    if not settings.out:
        raise ValueError("no run folder given: pass --out FOLDER")
    return pretrain(settings.config(), settings.out, resume=settings.resume, overwrite=settings.overwrite)


__all__ = ["ADVICE", "PretrainResult", "PretrainRun", "pretrain", "run_pretrain"]
