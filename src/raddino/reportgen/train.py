"""``raddino report train``: the projector and the language model on frozen image tokens.

Defaults are LLaVA-1.5's fine-tuning settings, which the paper uses for its report generator (RAD-DINO
§4.5): AdamW, lr 2e-5, cosine schedule with 3% linear warm-up, 3 epochs, batch 128 (reached here by
gradient accumulation over micro-batches), no weight decay. The data order of every epoch comes from
``seed + epoch``, so a resumed run sees the same batches as an uninterrupted one.

With ``val_split`` set, the loss on that split is measured after every epoch and the finished model is the
epoch with the lowest one (``out/best`` while training); ``early_stopping_patience`` ends the run after
that many epochs without improvement. A small data set is memorised within a few epochs (the training
loss keeps falling while the validation loss rises), and the memorised model writes worse reports.
The loop is :mod:`raddino.training`'s engine (the task is :class:`~raddino.reportgen.steps.ReportTask`):
checkpoints in ``out/checkpoints/`` (tensors and plain values, read back with ``weights_only=True``), and
scalars (``train/loss``, ``train/learning_rate``: the rate the step used, ``val/loss``) in ``metrics.jsonl``,
in ``train_log.csv`` / ``val_log.csv`` derived from it (a resumed run drops the steps after its checkpoint,
so each step appears once) and, when ``tensorboard`` is installed, in ``tensorboard/``
(``tensorboard --logdir OUT/tensorboard``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from raddino.features.cache import FeatureConfig
from raddino.io.atomic import atomic_write_text
from raddino.io.failures import FailureLog
from raddino.reportgen.checkpoint import promote, refuse_earlier_checkpoint, save_report_model
from raddino.reportgen.lora import LoraSettings
from raddino.reportgen.model import PROMPT
from raddino.reportgen.steps import ReportTask
from raddino.reportgen.studies import StudySelection, load_studies
from raddino.training import (
    EPOCH_LOGS,
    Callback,
    Engine,
    Plan,
    Precision,
    RunFolder,
    resolve_precision,
)
from raddino.training.distributed import pick_device
from raddino.training.tracking import TrackingConfig

logger = logging.getLogger(__name__)


@dataclass
class ReportTrainConfig:
    """Settings of ``raddino report train``."""

    input: str = ""
    """Manifest CSV with ``path``, ``id``, a report column and (optionally) a split column."""
    language_model: str = ""
    """Causal LM: a transformers folder (with its tokenizer) or a hub id (downloads)."""
    out: str = "report_model"
    """Output folder: the trained model, ``checkpoints/``, ``train_log.csv``, ``errors.csv``."""
    features: FeatureConfig = field(default_factory=FeatureConfig)
    """The frozen encoder (``features.model``) or an embeddings file, and the feature cache."""
    layer: int = -1
    """Encoder block whose patch tokens feed the projector (-1 last; LLaVA uses -2)."""
    studies: StudySelection = field(default_factory=lambda: StudySelection(split="train"))
    trainable: Literal["projector+lm", "projector", "lora"] = "projector+lm"
    """What is trained besides the projector: the whole LM, nothing, or LoRA adapters on the LM (needs
    ``peft``; LLaVA-1.5 uses lr 2e-4 for LoRA). The encoder is always frozen (paper §4.5)."""
    lora: LoraSettings = field(default_factory=LoraSettings)
    """Rank, alpha, dropout and target modules of the adapters (``trainable: lora``)."""
    val_split: str = ""
    """Split (in ``studies.split_column``) whose loss picks the best epoch; empty keeps the last epoch."""
    early_stopping_patience: int = 0
    """Stop after this many epochs without a lower validation loss (0: train every epoch)."""
    projector_dropout: float = 0.0
    """Dropout on the image tokens entering the projector, during training only."""
    prompt: str = PROMPT
    """Instruction before the report; ``<image>`` marks where the image tokens go (LLaVA's)."""
    zero_images: bool = False
    """Ablation: zeros in place of the image tokens, to measure what the LM writes without the image."""
    learning_rate: float = 2e-5
    """Peak learning rate of the cosine schedule (LLaVA-1.5's)."""
    warmup_ratio: float = 0.03
    """Share of the steps spent warming up linearly to the peak rate."""
    weight_decay: float = 0.0
    """AdamW's weight decay (LLaVA-1.5: none)."""
    epochs: int = 3
    """Passes over the training studies."""
    batch_size: int = 128
    """Studies per optimiser step (LLaVA-1.5's global batch)."""
    micro_batch_size: int = 8
    """Studies per forward pass; gradients are accumulated up to ``batch_size``."""
    max_grad_norm: float = 1.0
    """Gradients are clipped to this global norm."""
    max_report_tokens: int = 256
    """Reports are cut to this many tokens for training."""
    precision: Precision = "fp32"
    """bf16 / fp16 autocast on GPU (bf16 also on CPU); the master weights stay fp32."""
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    """Where the model trains; auto: CUDA, else MPS, else the CPU."""
    checkpoint_every: int = 100
    """Optimiser steps between checkpoints (also written at every epoch's end)."""
    max_steps: int = 0
    """Stop (with a checkpoint) after this many optimiser steps in total; 0 trains every epoch."""
    seed: int = 0
    """Seed of the projector's initialisation and of every epoch's data order (``seed + epoch``)."""
    overwrite: bool = False
    """Discard an earlier run in ``out`` instead of resuming it."""
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    """MLflow or W&B besides metrics.jsonl (--tracking, --tracking-uri)."""

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "micro_batch_size", "checkpoint_every", "max_report_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must lie in [0, 1), got {self.warmup_ratio}")
        if not 0.0 <= self.projector_dropout < 1.0:
            raise ValueError(f"projector_dropout must lie in [0, 1), got {self.projector_dropout}")
        if self.early_stopping_patience < 0:
            raise ValueError(f"early_stopping_patience must be >= 0, got {self.early_stopping_patience}")
        if self.early_stopping_patience and not self.val_split:
            raise ValueError("early_stopping_patience needs a val_split to measure")
        if self.val_split and self.val_split == self.studies.split:
            raise ValueError(f"val_split '{self.val_split}' is also the training split")


@dataclass
class ReportTrainSummary:
    """What a run did."""

    studies: int
    steps: int
    total_steps: int
    final_loss: float
    out: Path
    complete: bool
    seconds: float
    skipped_studies: int = 0
    best_val_loss: float | None = None
    best_epoch: int | None = None
    """1-based epoch of the kept model when a validation split chose it."""
    stopped_early: bool = False

    def __str__(self) -> str:
        state = (
            "trained"
            if self.complete
            else f"stopped at step {self.steps}/{self.total_steps} (rerun to resume)"
        )
        if self.stopped_early:
            state += " (stopped early)"
        text = f"{self.studies} studies, {self.steps} steps, last loss {self.final_loss:.4f}: {state}"
        if self.best_val_loss is not None:
            text += f", best val loss {self.best_val_loss:.4f} at epoch {self.best_epoch}"
        text += f" -> {self.out}"
        return text + (
            f"; {self.skipped_studies} studies left out, see errors.csv" if self.skipped_studies else ""
        )


RUN_FILES = (
    "checkpoint",  # the folders of an earlier raddino version's checkpoints
    "checkpoint.previous",
    "checkpoint.saving",
    "best",
    "best.previous",
    "best.saving",
    "train_log.csv",
    "val_log.csv",
    "errors.csv",
    "report_model.json",
)
LOGS = EPOCH_LOGS
_RESTART = "rerun with --overwrite to start afresh"


def train_report_model(config: ReportTrainConfig, callbacks: Sequence[Callback] = ()) -> ReportTrainSummary:
    """Train a report generator on ``config.input``; rerunning the same command resumes it.

    Args:
        config: The settings.
        callbacks: Called after every step with the steps done and the step's ``train`` record.

    Returns:
        The summary; studies without an embedded image or a report are listed in ``out/errors.csv``.

    Raises:
        StateFileError: a checkpoint in ``out`` is corrupt, refused as unsafe, or from an earlier version.
        CheckpointMismatchError: the checkpoint was trained with other settings (LoRA or not).
        NonFiniteLossError: the loss became NaN or infinite.
    """
    started = time.perf_counter()
    if not config.input or not config.language_model:
        raise ValueError("set 'input' (a manifest CSV with reports) and 'language_model'")
    out = Path(config.out)
    run = RunFolder(out, "report-training checkpoint", _RESTART)
    if config.overwrite:
        run.clear(RUN_FILES)
    else:
        refuse_earlier_checkpoint(out, _RESTART)
    out.mkdir(parents=True, exist_ok=True)
    run.save_config(config, "train_config.yaml")
    device = pick_device(config.device, 0)
    precision = resolve_precision(config.precision, device)
    failures = FailureLog(out / "errors.csv")
    failures.reset()  # the selection is redone on every (re)run: list its left-out studies once
    dataset = load_studies(config.input, config.studies, config.features, config.layer, failures)
    val_dataset = None
    if config.val_split:
        val_selection = StudySelection(**{**config.studies.__dict__, "split": config.val_split})
        val_dataset = load_studies(config.input, val_selection, config.features, config.layer, failures)
    first = dataset[0].image_tokens  # (N, D_vision)
    task = ReportTask(config, dataset, val_dataset, out, int(first.shape[-1]), int(first.shape[0]))
    plan = Plan(
        total_steps=task.total_steps,
        steps_per_epoch=task.steps_per_epoch,
        checkpoint_every=config.checkpoint_every,
        stop_at=config.max_steps or None,
    )
    logger.info(
        "%d studies, %d steps/epoch × %d epochs, batch %d (micro-batch %d), lr %.2e, training %s on %s",
        len(dataset),
        task.steps_per_epoch,
        config.epochs,
        config.batch_size,
        config.micro_batch_size,
        config.learning_rate,
        config.trainable,
        device,
    )
    advice = "lower learning_rate or raise warmup_ratio"
    fit = Engine(
        task,
        run,
        plan,
        precision,
        views=LOGS,
        callbacks=callbacks,
        advice=advice,
        tracking=config.tracking,
        config=config,
    ).fit()
    if fit.complete:
        if val_dataset is not None and (out / "best").is_dir():
            promote(out / "best", out)
        else:
            save_report_model(task.model, task.tokenizer, task.info, out, config.trainable == "projector+lm")
        atomic_write_text(out / "README.txt", f"Report generator trained by raddino on {config.input}.\n")
    chosen = val_dataset is not None and bool(task.best["epoch"])
    return ReportTrainSummary(
        studies=len(dataset),
        steps=fit.step,
        total_steps=task.total_steps,
        final_loss=fit.last.get("train/loss", float("nan")),
        out=out,
        complete=fit.complete,
        seconds=time.perf_counter() - started,
        skipped_studies=failures.count,
        best_val_loss=task.best["loss"] if chosen else None,
        best_epoch=task.best["epoch"] if chosen else None,
        stopped_early=bool(task.best["stopped"]),
    )
