"""Report training on the engine (:mod:`raddino.training`): the task (batches in the order of
``seed + epoch``, accumulated over micro-batches; the loss; validation with the record of the best epoch;
what a checkpoint holds), the validation loss and the patience rule."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from raddino.reportgen.checkpoint import ReportModelInfo, save_best
from raddino.reportgen.data import ReportBatch, ReportCollator, ReportItem, prompt_layout
from raddino.reportgen.language_model import load_language_model
from raddino.reportgen.lora import add_lora
from raddino.reportgen.model import Projector, ReportGenerator, embedding_width
from raddino.training import (
    LossTerms,
    Optimization,
    Precision,
    Schedules,
    StepResult,
    TaskBase,
    autocast,
    cosine_schedule,
)

if TYPE_CHECKING:
    from raddino.reportgen.train import ReportTrainConfig

logger = logging.getLogger(__name__)


def build_report_model(
    config: ReportTrainConfig, vision_dim: int, num_image_tokens: int
) -> tuple[ReportGenerator, PreTrainedTokenizerBase, ReportModelInfo]:
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


def trained_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The entries of ``model.state_dict()`` that training changes: the projector's and every trainable
    parameter (the LM's or its adapters'); a frozen LM is reloaded from its own folder instead."""
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    return {k: v for k, v in model.state_dict().items() if k in trainable or k.startswith("projector.")}


def load_trained_weights(model: nn.Module, saved: Mapping[str, torch.Tensor]) -> None:
    """Load what :func:`trained_weights` saved; raises ``ValueError`` when the names do not match."""
    expected = set(trained_weights(model))
    missing, unexpected = sorted(expected - set(saved)), sorted(set(saved) - expected)
    if missing or unexpected:
        raise ValueError(
            f"its trained weights do not fit this model ({len(missing)} missing, e.g. {missing[:1]}; "
            f"{len(unexpected)} unexpected, e.g. {unexpected[:1]})"
        )
    model.load_state_dict(dict(saved), strict=False)


class ReportTask(TaskBase):
    """The projector (and the LM or its LoRA adapters) on frozen image tokens.

    Args:
        config: The run's settings.
        dataset: Training studies.
        val_dataset: Studies whose loss picks the best epoch, or None.
        out: The output folder (``best/`` is written there).
        vision_dim: Width of the image tokens.
        num_image_tokens: Image tokens per study.
    """

    description = "report train"

    def __init__(
        self,
        config: ReportTrainConfig,
        dataset: torch.utils.data.Dataset[ReportItem],
        val_dataset: torch.utils.data.Dataset[ReportItem] | None,
        out: Path,
        vision_dim: int,
        num_image_tokens: int,
    ) -> None:
        self.config, self.dataset, self.val_dataset, self.out = config, dataset, val_dataset, out
        self.vision_dim, self.num_image_tokens = vision_dim, num_image_tokens
        self.size = len(dataset)  # type: ignore[arg-type]
        self.steps_per_epoch = math.ceil(self.size / config.batch_size)
        self.total_steps = self.steps_per_epoch * config.epochs
        # validation record: lowest loss, its 1-based epoch, epochs since it, whether patience ran out
        self.best: dict[str, Any] = {"loss": math.inf, "epoch": 0, "since": 0, "stopped": False}

    def build(self, device: torch.device) -> Optimization:
        config = self.config
        self.model, self.tokenizer, self.info = build_report_model(
            config, self.vision_dim, self.num_image_tokens
        )
        self.model.to(device)
        self.device = device
        layout = prompt_layout(self.tokenizer, self.info.num_image_tokens, self.info.prompt)
        self.collate = ReportCollator(
            self.tokenizer, layout, "train", config.max_report_tokens, zero_images=self.info.zero_images
        )
        optimizer = torch.optim.AdamW(
            self.model.trainable_parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        warmup = math.ceil(config.warmup_ratio * self.total_steps)
        learning_rate = cosine_schedule(
            config.learning_rate, 0.0, self.total_steps, warmup_iters=warmup, warmup_reaches_base=False
        )
        schedules = Schedules({"learning_rate": learning_rate}, self.total_steps)
        return Optimization(self.model, optimizer, schedules, max_grad_norm=config.max_grad_norm)

    def micro_batches(self, step: int) -> Iterator[tuple[ReportBatch, float]]:
        epoch, position = divmod(step, self.steps_per_epoch)
        order = np.random.default_rng([self.config.seed, epoch]).permutation(self.size)
        size = self.config.batch_size
        indices = order[position * size : (position + 1) * size].tolist()
        for start in range(0, len(indices), self.config.micro_batch_size):
            chunk = indices[start : start + self.config.micro_batch_size]
            # each micro-batch's mean loss weighted by its share of the studies: the batch mean's gradient
            batch = self.collate([self.dataset[int(i)] for i in chunk]).to(self.device)
            yield batch, len(chunk) / len(indices)

    def loss(self, batch: ReportBatch, values: Mapping[str, float]) -> LossTerms:
        model = self.model
        return LossTerms(
            model(batch.input_ids, batch.attention_mask, batch.image_mask, batch.image_tokens, batch.labels)
        )

    def after_step(self, done: int, result: StepResult) -> dict[str, float]:
        return {"train/epoch": (done - 1) // self.steps_per_epoch}

    def validate(self, done: int) -> dict[str, float]:
        if self.val_dataset is None:
            return {}
        epoch = done // self.steps_per_epoch
        config = self.config
        val_loss = validation_loss(
            self.model, self.val_dataset, self.collate, config.micro_batch_size, config.precision, self.device
        )
        record_validation(self.best, val_loss, epoch, config.early_stopping_patience)
        is_best = self.best["epoch"] == epoch
        if is_best:
            save_best(self.out, self.model, self.tokenizer, self.info, config.trainable == "projector+lm")
        logger.info("epoch %d: val loss %.4f (best %.4f)", epoch, val_loss, self.best["loss"])
        return {"val/loss": val_loss, "val/epoch": epoch, "val/best": int(is_best)}

    @property
    def finished(self) -> bool:
        return bool(self.best["stopped"])

    def state_dict(self) -> dict[str, Any]:
        return {"weights": trained_weights(self.model), "best": self.best, "trainable": self.config.trainable}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        saved, wanted = state["trainable"], self.config.trainable
        if (saved == "lora") != (wanted == "lora"):
            raise ValueError(
                f"trained with{'' if saved == 'lora' else 'out'} LoRA adapters, but trainable is '{wanted}'; "
                "keep the setting or pass overwrite to start afresh"
            )
        load_trained_weights(self.model, state["weights"])
        self.best = dict(state["best"])


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
