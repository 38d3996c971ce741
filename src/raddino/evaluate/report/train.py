"""``raddino report train``: the projector and the language model on frozen image tokens.

Defaults are LLaVA-1.5's fine-tuning settings, which the paper uses for its report generator (RAD-DINO
§4.5): AdamW, lr 2e-5, cosine schedule with 3% linear warm-up, 3 epochs, batch 128 (reached here by
gradient accumulation over micro-batches), no weight decay. The data order of every epoch comes from
``seed + epoch``, so a resumed run sees the same batches as an uninterrupted one.
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
from typing import Literal

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
    save_checkpoint,
    save_report_model,
)
from raddino.evaluate.report.data import ReportCollator, prompt_layout
from raddino.evaluate.report.language_model import load_language_model
from raddino.evaluate.report.model import PROMPT, Projector, ReportGenerator, embedding_width
from raddino.evaluate.report.precision import Precision, autocast, grad_scaler
from raddino.evaluate.report.studies import StudySelection, load_studies
from raddino.io.atomic import atomic_write_text
from raddino.io.failures import FailureLog

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
    trainable: Literal["projector+lm", "projector"] = "projector+lm"
    """What is trained; the encoder is always frozen (paper §4.5)."""
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

    def __str__(self) -> str:
        state = (
            "trained"
            if self.complete
            else f"stopped at step {self.steps}/{self.total_steps} (rerun to resume)"
        )
        text = f"{self.studies} studies, {self.steps} steps, last loss {self.final_loss:.4f}: {state}"
        text += f" -> {self.out}"
        return text + (
            f"; {self.skipped_studies} studies left out, see errors.csv" if self.skipped_studies else ""
        )


def _epoch_order(count: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(count)


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
        for name in ("checkpoint", "checkpoint.previous", "train_log.csv", "errors.csv", "report_model.json"):
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
    first = dataset[0].image_tokens  # (N, D_vision)

    checkpoint = find_checkpoint(out)
    if checkpoint is not None:
        model, tokenizer, info = load_report_model(checkpoint)
        state = torch.load(checkpoint / "trainer.pt", map_location="cpu", weights_only=False)
        logger.info("resuming %s at step %d", checkpoint, state["step"])
    else:
        language_model, tokenizer = load_language_model(config.language_model)
        torch.manual_seed(config.seed)
        projector = Projector(first.shape[-1], embedding_width(language_model))
        model = ReportGenerator(projector, language_model)
        info = ReportModelInfo(
            encoder=config.features.model or config.features.embeddings,
            layer=config.layer,
            vision_dim=int(first.shape[-1]),
            num_image_tokens=int(first.shape[0]),
            prompt=config.prompt,
            max_report_tokens=config.max_report_tokens,
            language_model=config.language_model,
            zero_images=config.zero_images,
        )
        state = None
    train_lm = config.trainable == "projector+lm"
    model.language_model.requires_grad_(train_lm)
    model.to(device).train()
    collate = ReportCollator(
        tokenizer,
        prompt_layout(tokenizer, info.num_image_tokens, info.prompt),
        "train",
        config.max_report_tokens,
        zero_images=info.zero_images,
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
    if state is not None:
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
    with open(log_path, "a", newline="", encoding="utf-8") as log_file:
        log = csv.writer(log_file)
        if new_log:
            log.writerow(["step", "epoch", "loss", "learning_rate"])
        progress = tqdm(total=total_steps, initial=step, unit="step", desc="report train", dynamic_ncols=True)
        while step < stop_at:
            epoch, position = divmod(step, steps_per_epoch)
            order = _epoch_order(len(dataset), config.seed, epoch)
            batch_indices = order[position * config.batch_size : (position + 1) * config.batch_size]
            loss_value = _optimizer_step(
                model, dataset, collate, batch_indices, optimizer, scaler, config, device
            )
            schedule.step()
            step += 1
            log.writerow([step, epoch, f"{loss_value:.6f}", f"{schedule.get_last_lr()[0]:.3e}"])
            log_file.flush()
            progress.update(1)
            progress.set_postfix(loss=f"{loss_value:.4f}", epoch=epoch, refresh=False)
            if step % config.checkpoint_every == 0 or step % steps_per_epoch == 0 or step == stop_at:
                checkpoint_now()
        progress.close()

    complete = step >= total_steps
    if complete:
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
    )


def _optimizer_step(
    model: ReportGenerator,
    dataset: torch.utils.data.Dataset,
    collate: ReportCollator,
    batch_indices: np.ndarray,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    config: ReportTrainConfig,
    device: torch.device,
) -> float:
    """One optimiser step over ``batch_indices``, accumulated over micro-batches; returns the mean loss."""
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for start in range(0, len(batch_indices), config.micro_batch_size):
        chunk = batch_indices[start : start + config.micro_batch_size]
        batch = collate([dataset[int(index)] for index in chunk]).to(device)
        with autocast(device, config.precision):
            loss = model(
                batch.input_ids, batch.attention_mask, batch.image_mask, batch.image_tokens, batch.labels
            )
        # each micro-batch's mean loss weighted by its share of the studies: the gradient of the batch mean
        share = len(chunk) / len(batch_indices)
        scaled = loss * share
        (scaler.scale(scaled) if scaler is not None else scaled).backward()
        total += float(loss.detach()) * share
    if scaler is not None:
        scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.trainable_parameters(), config.max_grad_norm)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    return total
