"""Report training steps: one optimiser step (accumulated over micro-batches), the validation loss and
the record of the best epoch."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from raddino.evaluate.report.data import ReportCollator, ReportItem
from raddino.evaluate.report.model import ReportGenerator
from raddino.evaluate.report.precision import Precision, autocast


def optimizer_step(
    model: ReportGenerator,
    dataset: Sequence[ReportItem] | torch.utils.data.Dataset[ReportItem],
    collate: ReportCollator,
    batch_indices: Sequence[int],
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    micro_batch_size: int,
    max_grad_norm: float,
    precision: Precision,
    device: torch.device,
) -> float:
    """One optimiser step over ``batch_indices``, accumulated over micro-batches; returns the mean loss."""
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for start in range(0, len(batch_indices), micro_batch_size):
        chunk = batch_indices[start : start + micro_batch_size]
        batch = collate([dataset[int(index)] for index in chunk]).to(device)
        with autocast(device, precision):
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
    torch.nn.utils.clip_grad_norm_(model.trainable_parameters(), max_grad_norm)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    return total


@torch.no_grad()
def validation_loss(
    model: ReportGenerator,
    dataset: torch.utils.data.Dataset[ReportItem],
    collate: ReportCollator,
    batch_size: int,
    precision: Precision,
    device: torch.device,
) -> float:
    """Mean report-token cross-entropy over ``dataset`` (each batch's mean weighted by its studies), in
    eval mode (no dropout); the model is put back in train mode."""
    model.eval()
    total, count = 0.0, len(dataset)  # type: ignore[arg-type]
    try:
        for start in range(0, count, batch_size):
            items = [dataset[index] for index in range(start, min(start + batch_size, count))]
            batch = collate(items).to(device)
            with autocast(device, precision):
                loss = model(
                    batch.input_ids, batch.attention_mask, batch.image_mask, batch.image_tokens, batch.labels
                )
            total += float(loss) * len(items)
    finally:
        model.train()
    return total / count


def record_validation(best: dict[str, Any], val_loss: float, epoch: int, patience: int) -> None:
    """Update the validation record with epoch ``epoch``'s loss (1-based); sets ``stopped`` when the
    loss has not fallen for ``patience`` epochs (never with patience 0)."""
    if val_loss < best["loss"]:
        best.update(loss=val_loss, epoch=epoch, since=0)
    else:
        best["since"] += 1
    best["stopped"] = bool(patience) and best["since"] >= patience


def append_val_log(path: Path, step: int, epoch: int, val_loss: float, is_best: bool) -> None:
    """One row of ``val_log.csv`` (step, epoch, val_loss, best)."""
    new = not path.exists()
    with open(path, "a", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(["step", "epoch", "val_loss", "best"])
        writer.writerow([step, epoch, f"{val_loss:.6f}", int(is_best)])
