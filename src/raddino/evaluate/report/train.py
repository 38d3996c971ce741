"""``raddino report train``: the projector and the language model on frozen image tokens.

Defaults are LLaVA-1.5's fine-tuning settings, which the paper uses for its report generator (RAD-DINO
§4.5): AdamW, lr 2e-5, cosine schedule with 3% linear warm-up, 3 epochs, batch 128 (reached here by
gradient accumulation over micro-batches), no weight decay. The data order of every epoch comes from
``seed + epoch``, so a resumed run sees the same batches as an uninterrupted one.

With ``val_split`` set, the loss on that split is measured after every epoch and the finished model is the
epoch with the lowest one (``out/best`` while training); ``early_stopping_patience`` ends the run after
that many epochs without improvement. A small data set is memorised within a few epochs (the training
loss keeps falling while the validation loss rises), and the memorised model writes worse reports.
Scalars (loss, learning rate, validation loss) go to ``train_log.csv``, ``metrics.jsonl`` and, when
``tensorboard`` is installed, ``tensorboard/`` (``tensorboard --logdir OUT/tensorboard``).
"""

from __future__ import annotations

import csv
import logging
import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm import tqdm
from transformers import get_cosine_schedule_with_warmup

from raddino.config import save_config
from raddino.distributed import pick_device
from raddino.evaluate.features import FeatureConfig
from raddino.evaluate.report.checkpoint import (
    ReportModelInfo,
    find_checkpoint,
    load_report_model,
    promote,
    save_best,
    save_checkpoint,
    save_report_model,
)
from raddino.evaluate.report.data import ReportCollator, prompt_layout
from raddino.evaluate.report.language_model import load_language_model
from raddino.evaluate.report.lora import LoraSettings, add_lora
from raddino.evaluate.report.model import PROMPT, Projector, ReportGenerator, embedding_width
from raddino.evaluate.report.precision import Precision, grad_scaler
from raddino.evaluate.report.steps import (
    append_val_log,
    optimizer_step,
    record_validation,
    validation_loss,
)
from raddino.evaluate.report.studies import StudySelection, load_studies
from raddino.io.atomic import atomic_write_text
from raddino.io.failures import FailureLog
from raddino.pretrain.metrics import MetricsLog

logger = logging.getLogger(__name__)


@dataclass
class ReportTrainConfig:
    """Settings of ``raddino report train``."""

    input: str = ""
    """Manifest CSV with ``path``, ``id``, a report column and (optionally) a split column."""
    language_model: str = ""
    """Causal LM: a transformers folder (with its tokenizer) or a hub id (downloads)."""
    out: str = "report_model"
    """Output folder: the trained model, ``checkpoint/``, ``train_log.csv``, ``errors.csv``."""
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
    zero_images: bool = False
    """Ablation: zeros in place of the image tokens, to measure what the LM writes without the image."""
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    epochs: int = 3
    batch_size: int = 128
    """Studies per optimiser step (LLaVA-1.5's global batch)."""
    micro_batch_size: int = 8
    """Studies per forward pass; gradients are accumulated up to ``batch_size``."""
    max_grad_norm: float = 1.0
    max_report_tokens: int = 256
    precision: Precision = "fp32"
    """bf16 / fp16 autocast on GPU (bf16 also on CPU); the master weights stay fp32."""
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    checkpoint_every: int = 100
    """Optimiser steps between checkpoints (also written at every epoch's end)."""
    max_steps: int = 0
    """Stop (with a checkpoint) after this many optimiser steps in total; 0 trains every epoch."""
    seed: int = 0
    overwrite: bool = False
    """Discard an earlier run in ``out`` instead of resuming it."""

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


def _epoch_order(count: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(count)


RUN_FILES = (
    "checkpoint",
    "checkpoint.previous",
    "best",
    "best.previous",
    "train_log.csv",
    "val_log.csv",
    "metrics.jsonl",
    "tensorboard",
    "errors.csv",
    "report_model.json",
)


def _build_model(
    config: ReportTrainConfig, vision_dim: int, num_image_tokens: int
) -> tuple[ReportGenerator, Any, ReportModelInfo]:
    """A fresh projector on the configured LM (wrapped in LoRA adapters for ``trainable: lora``)."""
    language_model, tokenizer = load_language_model(config.language_model)
    torch.manual_seed(config.seed)
    projector = Projector(vision_dim, embedding_width(language_model), config.projector_dropout)
    if config.trainable == "lora":
        language_model = add_lora(language_model, config.lora)
    else:
        language_model.requires_grad_(config.trainable == "projector+lm")
    info = ReportModelInfo(
        encoder=config.features.model or config.features.embeddings,
        layer=config.layer,
        vision_dim=vision_dim,
        num_image_tokens=num_image_tokens,
        prompt=config.prompt,
        max_report_tokens=config.max_report_tokens,
        language_model=config.language_model,
        zero_images=config.zero_images,
    )
    return ReportGenerator(projector, language_model), tokenizer, info


def train_report_model(config: ReportTrainConfig) -> ReportTrainSummary:
    """Train a report generator on ``config.input``; rerunning the same command resumes it.

    Returns:
        The summary; studies without an embedded image or a report are listed in ``out/errors.csv``.
    """
    started = time.perf_counter()
    if not config.input or not config.language_model:
        raise ValueError("set 'input' (a manifest CSV with reports) and 'language_model'")
    out = Path(config.out)
    if config.overwrite:
        for name in RUN_FILES:
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out / "train_config.yaml")
    device = pick_device(config.device, 0)
    failures = FailureLog(out / "errors.csv")
    failures.reset()  # the selection is redone on every (re)run: list its left-out studies once
    dataset = load_studies(config.input, config.studies, config.features, config.layer, failures)
    val_dataset = None
    if config.val_split:
        val_selection = StudySelection(**{**config.studies.__dict__, "split": config.val_split})
        val_dataset = load_studies(config.input, val_selection, config.features, config.layer, failures)
    first = dataset[0].image_tokens  # (N, D_vision)

    checkpoint = find_checkpoint(out)
    if checkpoint is not None:
        model, tokenizer, info = load_report_model(checkpoint, trainable_adapters=True)
        if bool(info.adapter) != (config.trainable == "lora"):
            raise ValueError(
                f"{checkpoint}: trained with{'' if info.adapter else 'out'} LoRA adapters, but trainable is "
                f"'{config.trainable}'; keep the setting or pass overwrite to start afresh"
            )
        if config.trainable != "lora":
            model.language_model.requires_grad_(config.trainable == "projector+lm")
        model.projector.dropout.p = config.projector_dropout
        state = torch.load(checkpoint / "trainer.pt", map_location="cpu", weights_only=False)
        logger.info("resuming %s at step %d", checkpoint, state["step"])
    else:
        model, tokenizer, info = _build_model(config, int(first.shape[-1]), int(first.shape[0]))
        state = None
    train_lm = config.trainable == "projector+lm"
    model.to(device).train()
    layout = prompt_layout(tokenizer, info.num_image_tokens, info.prompt)
    collate = ReportCollator(
        tokenizer, layout, "train", config.max_report_tokens, zero_images=info.zero_images
    )

    steps_per_epoch = math.ceil(len(dataset) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    optimizer = torch.optim.AdamW(
        model.trainable_parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    schedule = get_cosine_schedule_with_warmup(
        optimizer, math.ceil(config.warmup_ratio * total_steps), total_steps
    )
    scaler = grad_scaler(device, config.precision)
    step = 0
    # validation record: lowest loss, its 1-based epoch, epochs since it, whether patience ran out
    best: dict[str, Any] = {"loss": math.inf, "epoch": 0, "since": 0, "stopped": False}
    if state is not None:
        best = state.get("best", best)
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        step = int(state["step"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])

    def checkpoint_now() -> None:
        trainer_state = {
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "step": step,
            "torch_rng": torch.get_rng_state(),
            "python_rng": random.getstate(),
            "best": best,
        }
        save_checkpoint(out, model, tokenizer, info, trainer_state, train_lm)

    logger.info(
        "%d studies, %d steps/epoch × %d epochs, batch %d (micro-batch %d), lr %.2e, training %s on %s",
        len(dataset),
        steps_per_epoch,
        config.epochs,
        config.batch_size,
        config.micro_batch_size,
        config.learning_rate,
        config.trainable,
        device,
    )
    log_path = out / "train_log.csv"
    new_log = not log_path.exists()
    stop_at = min(total_steps, config.max_steps) if config.max_steps else total_steps
    loss_value = float("nan")
    metrics = MetricsLog(out, resume_from=step if state is not None else None)
    with open(log_path, "a", newline="", encoding="utf-8") as log_file:
        log = csv.writer(log_file)
        if new_log:
            log.writerow(["step", "epoch", "loss", "learning_rate"])
        progress = tqdm(total=total_steps, initial=step, unit="step", desc="report train", dynamic_ncols=True)
        while step < stop_at and not best["stopped"]:
            epoch, position = divmod(step, steps_per_epoch)
            order = _epoch_order(len(dataset), config.seed, epoch)
            batch_indices = order[position * config.batch_size : (position + 1) * config.batch_size]
            loss_value = optimizer_step(
                model,
                dataset,
                collate,
                batch_indices.tolist(),
                optimizer,
                scaler,
                config.micro_batch_size,
                config.max_grad_norm,
                config.precision,
                device,
            )
            schedule.step()
            step += 1
            learning_rate = schedule.get_last_lr()[0]
            log.writerow([step, epoch, f"{loss_value:.6f}", f"{learning_rate:.3e}"])
            log_file.flush()
            metrics.log(step, {"train/loss": loss_value, "train/learning_rate": learning_rate})
            progress.update(1)
            progress.set_postfix(loss=f"{loss_value:.4f}", epoch=epoch, refresh=False)
            if val_dataset is not None and step % steps_per_epoch == 0:
                val_loss = validation_loss(
                    model, val_dataset, collate, config.micro_batch_size, config.precision, device
                )
                record_validation(best, val_loss, epoch + 1, config.early_stopping_patience)
                if best["epoch"] == epoch + 1:
                    save_best(out, model, tokenizer, info, train_lm)
                append_val_log(out / "val_log.csv", step, epoch + 1, val_loss, best["epoch"] == epoch + 1)
                metrics.log(step, {"val/loss": val_loss})
                logger.info("epoch %d: val loss %.4f (best %.4f)", epoch + 1, val_loss, best["loss"])
            if (
                step % config.checkpoint_every == 0
                or step % steps_per_epoch == 0
                or step == stop_at
                or best["stopped"]
            ):
                checkpoint_now()
        progress.close()
    metrics.close()

    complete = step >= total_steps or bool(best["stopped"])
    if complete:
        if val_dataset is not None and (out / "best").is_dir():
            promote(out / "best", out)
        else:
            save_report_model(model, tokenizer, info, out, train_lm)
        atomic_write_text(out / "README.txt", f"Report generator trained by raddino on {config.input}.\n")
    return ReportTrainSummary(
        studies=len(dataset),
        steps=step,
        total_steps=total_steps,
        final_loss=loss_value,
        out=out,
        complete=complete,
        seconds=time.perf_counter() - started,
        skipped_studies=failures.count,
        best_val_loss=best["loss"] if val_dataset is not None and best["epoch"] else None,
        best_epoch=best["epoch"] if val_dataset is not None and best["epoch"] else None,
        stopped_early=bool(best["stopped"]),
    )
