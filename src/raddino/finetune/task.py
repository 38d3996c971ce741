"""One fine-tuning mode on the engine: encoder + head, AdamW on the trainable parameters only.

A step is a batch of training images in an order drawn from the task's generator at each epoch's start,
cut into micro-batches (gradient accumulation) and, under ``torchrun``, into one share per rank. At each
epoch's end the validation split is scored (classify: macro AUPRC; segment: minus the Dice + BCE loss,
the paper's best-validation-loss rule) and the best state is kept; ``patience`` epochs without a better
score end the run. The checkpointed task state holds the trained parameters only (the frozen ones come
from the source model on every build), the best state, the generator and the epoch's order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
from torch.nn import functional

from raddino.evaluate.metrics import auprc_per_label, macro
from raddino.evaluate.segmentation.train import segmentation_loss
from raddino.finetune.augment import augment_batch
from raddino.finetune.config import FinetuneConfig, Mode
from raddino.finetune.data import FinetuneData
from raddino.finetune.modes import frozen_modules, prepare_encoder
from raddino.finetune.network import FinetuneNetwork, feature_statistics
from raddino.models import load_encoder
from raddino.pretrain.param_groups import build_param_groups
from raddino.training import LossTerms, Optimization, Schedules, StepResult, TaskBase, cosine_schedule
from raddino.training.distributed import DistributedContext
from raddino.training.parallel import GatheredOptimization, full_state_dict, gradient_sync, wrap_for_training
from raddino.training.schedules import constant_schedule


def positive_weights(targets: torch.Tensor) -> torch.Tensor:
    """(C,) negatives / positives among the known labels of each finding (1 where a class is absent)."""
    positives = torch.nansum(targets, dim=0)
    negatives = torch.nansum(1 - targets, dim=0)
    return torch.where(positives > 0, negatives / positives.clamp(min=1), torch.ones_like(positives))


def classification_loss(
    logits: torch.Tensor, targets: torch.Tensor, known: torch.Tensor, pos_weight: torch.Tensor | None
) -> torch.Tensor:
    """Binary cross-entropy per image and finding, averaged over the known labels only.

    Args:
        logits: (B, C).
        targets: (B, C) 0/1, any value where unknown.
        known: (B, C) bool.
        pos_weight: (C,) factor on the positives' term, or None.
    """
    clean = torch.where(known, targets, torch.zeros_like(targets))
    losses = functional.binary_cross_entropy_with_logits(
        logits.float(), clean, reduction="none", pos_weight=pos_weight
    )  # (B, C)
    weights = known.float()
    return (losses * weights).sum() / weights.sum().clamp(min=1)


def rank_share(batch: np.ndarray, rank: int, world: int, micro: int) -> list[tuple[np.ndarray, float]]:
    """This rank's micro-batches of a global batch with their weights (summing to 1 on every rank).

    Every rank gets the same number of micro-batches (FSDP2's forwards are collective); a rank left without
    images repeats the batch's first one with weight 0.
    """
    share = batch[rank::world]
    chunks = max(1, math.ceil(math.ceil(len(batch) / world) / micro))
    pieces = np.array_split(share, chunks)
    total = max(len(share), 1)
    return [(piece, len(piece) / total) if len(piece) else (batch[:1], 0.0) for piece in pieces]


class FinetuneTaskRunner(TaskBase):
    """The engine task of one mode (see the module's docstring)."""

    shown: tuple[str, ...] = ("train/loss", "train/learning_rate")

    def __init__(
        self, config: FinetuneConfig, mode: Mode, data: FinetuneData, context: DistributedContext
    ) -> None:
        self.config, self.mode, self.data, self.context = config, mode, data, context
        self.description = f"finetune {mode}"
        self.train_rows = data.subset("train")
        if len(self.train_rows) == 0:
            raise ValueError(f"{config.input}: the training split is empty")
        self.steps_per_epoch = math.ceil(len(self.train_rows) / config.batch_size)
        self.total_steps = config.epochs * self.steps_per_epoch
        self.items_per_step = config.batch_size
        self.generator = torch.Generator().manual_seed(config.seed)
        self.order = torch.arange(0)
        self.pos_weight: torch.Tensor | None = None
        if config.pos_weight and config.task == "classify":
            self.pos_weight = positive_weights(data.targets[self.train_rows])
        self.best: dict[str, Any] = {"score": -math.inf, "epoch": 0, "state": {}, "stale": 0}
        self.history: list[dict[str, float]] = []

    # ----------------------------------------------------------------------------------- building
    def make_network(self, device: torch.device) -> tuple[FinetuneNetwork, Any]:
        """A fresh network of this mode on ``device`` (the encoder from the source model), and the peft
        model in mode lora."""
        config = self.config
        encoder = load_encoder(config.model)
        statistics = None
        if config.task == "classify":
            train_pixels = self.data.pixels[torch.as_tensor(self.train_rows)]
            statistics = feature_statistics(encoder.to(device), train_pixels, config.micro_batch, device)
        encoder.set_drop_path(config.drop_path if self.mode != "frozen" else 0.0)
        adapted = prepare_encoder(encoder, self.mode, config.last_k, config.lora)
        frozen = frozen_modules(encoder, self.mode, config.last_k)
        network = FinetuneNetwork.build(
            encoder,
            config.task,
            len(self.data.names),
            config.head,
            config.seg_head,
            config.layers,
            frozen,
            seed=config.seed,
            statistics=statistics,
        )
        return network.to(device), adapted

    def build(self, device: torch.device) -> Optimization:
        config = self.config
        torch.manual_seed(config.seed + self.context.rank)  # drop-path draws; a checkpoint restores them
        self.network, self.adapted = self.make_network(device)
        self.trainable = {name for name, p in self.network.named_parameters() if p.requires_grad}
        strategy = (
            config.parallel if config.parallel != "auto" else ("fsdp" if self.mode == "full" else "ddp")
        )
        self.trained = wrap_for_training(self.network, self.context, strategy)
        groups = build_param_groups(
            self.network.encoder,
            {"head": self.network.head},
            layerwise_decay=config.layerwise_decay,
            patch_embed_lr_mult=config.patch_embed_lr_mult,
        )
        for group in groups:
            head = group["name"].startswith("head")
            group["lr_scale"] = group["lr_multiplier"] * (config.head_lr_mult if head else 1.0)
            group["wd_scale"] = group["wd_multiplier"]
        self.groups = groups
        optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
        warmup = min(round(config.warmup_epochs * self.steps_per_epoch), self.total_steps)
        schedules = Schedules(
            {
                "learning_rate": cosine_schedule(
                    config.lr, config.lr * config.min_lr_ratio, self.total_steps, warmup
                ),
                "weight_decay": constant_schedule(config.weight_decay, self.total_steps),
            },
            self.total_steps,
        )
        return GatheredOptimization(
            self.network,
            optimizer,
            schedules,
            max_grad_norm=config.max_grad_norm or None,
            gradient_sync=lambda enabled: gradient_sync(self.trained, enabled),
            reduce=self._mean_over_ranks,
            trained=self.trained,
        )

    def _mean_over_ranks(self, losses: dict[str, float]) -> dict[str, float]:
        if not (self.context.is_distributed and dist.is_initialized()):
            return losses
        keys = sorted(losses)
        stacked = torch.tensor([losses[k] for k in keys], dtype=torch.float32, device=self.context.device)
        dist.all_reduce(stacked)
        return dict(zip(keys, (stacked / self.context.world_size).tolist(), strict=True))

    # ----------------------------------------------------------------------------------- steps
    def _inputs(self, rows: np.ndarray, augment: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(rows, dtype=torch.long)
        pixels = self.data.pixels[index].float()  # (B, 3, H, W)
        targets, known = self.data.targets[index], self.data.known[index]
        if augment:
            masks = targets.float() if self.config.task == "segment" else None
            pixels, moved = augment_batch(pixels, masks, self.config.augment, self.generator)
            if moved is not None:
                targets = moved > 0.5
        device = self.context.device
        return pixels.to(device), targets.float().to(device), known.to(device)

    def micro_batches(self, step: int) -> list[tuple[Any, float]]:
        position = step % self.steps_per_epoch
        if position == 0:
            self.order = torch.randperm(len(self.train_rows), generator=self.generator)
        size = self.config.batch_size
        batch = self.train_rows[self.order[position * size : (position + 1) * size].numpy()]
        shares = rank_share(batch, self.context.rank, self.context.world_size, self.config.micro_batch)
        return [(self._inputs(rows, True), weight) for rows, weight in shares]

    def loss(self, batch: Any, values: Mapping[str, float]) -> LossTerms:
        pixels, targets, known = batch
        logits = self.trained(pixels)
        if self.config.task == "segment":
            return LossTerms(segmentation_loss(logits.float(), targets, known))
        weight = self.pos_weight.to(logits.device) if self.pos_weight is not None else None
        return LossTerms(classification_loss(logits, targets, known, weight))

    def after_step(self, done: int, result: StepResult) -> dict[str, float]:
        return {"train/epoch": (done - 1) // self.steps_per_epoch}

    # ----------------------------------------------------------------------------------- validation
    @torch.no_grad()
    def predict(self, split: str) -> torch.Tensor:
        """Logits of a split's images (every rank computes all of them), on the CPU."""
        was_training = self.network.training
        self.network.eval()
        rows = self.data.subset(split)
        outputs = []
        for start in range(0, len(rows), self.config.micro_batch):
            pixels, _, _ = self._inputs(rows[start : start + self.config.micro_batch], False)
            outputs.append(self.trained(pixels).float().cpu())
        self.network.train(was_training)
        return torch.cat(outputs) if outputs else torch.zeros(0)

    def score(self, split: str) -> dict[str, float]:
        """Validation numbers: ``macro_auprc`` (classify) or ``loss`` (segment), and ``score`` to maximise."""
        rows = self.data.subset(split)
        if len(rows) == 0:
            return {}
        logits = self.predict(split)
        known = self.data.known[torch.as_tensor(rows)]
        targets = self.data.targets[torch.as_tensor(rows)]
        if self.config.task == "segment":
            loss = float(segmentation_loss(logits, targets.float(), known))
            return {"loss": loss, "score": -loss}
        labels = torch.where(known, targets, torch.full_like(targets, float("nan"))).numpy()
        value = macro(auprc_per_label(logits.numpy(), labels, self.data.names))
        loss = float(classification_loss(logits, targets, known, None))
        return {"loss": loss, "macro_auprc": value, "score": value if math.isfinite(value) else -loss}

    def trained_state(self) -> dict[str, torch.Tensor]:
        """The trained parameters and the head's buffers by name (gathered on rank 0 under FSDP2)."""
        state = full_state_dict(self.trained)
        return {k: v.clone() for k, v in state.items() if k in self.trainable or k.startswith("head.")}

    def validate(self, done: int) -> dict[str, float]:
        epoch = done // self.steps_per_epoch
        numbers = self.score("val")
        state = self.trained_state()
        improved = not numbers or numbers["score"] > self.best["score"]
        if improved:
            score = numbers.get("score", -math.inf)
            self.best = {"score": score, "epoch": epoch, "state": state, "stale": 0}
        else:
            self.best["stale"] += 1
        self.history.append({"epoch": epoch, **numbers})
        record = {f"val/{key}": value for key, value in numbers.items() if key != "score"}
        return {**record, "val/epoch": epoch, "val/best": int(improved)}

    @property
    def finished(self) -> bool:
        patience = self.config.patience
        return bool(patience) and self.best["stale"] >= patience

    # ----------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "trained": self.trained_state(),
            "generator": self.generator.get_state(),
            "order": self.order,
            "best": self.best,
            "history": self.history,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        load_trained_state(self.trained, self.trainable, state["trained"])
        self.generator.set_state(state["generator"])
        self.order = state["order"]
        self.best = dict(state["best"])
        self.history = [dict(entry) for entry in state["history"]]


def load_trained_state(module: nn.Module, trainable: set[str], state: Mapping[str, torch.Tensor]) -> None:
    """Load a :meth:`FinetuneTaskRunner.trained_state` (every rank keeps its shard under FSDP2).

    Raises:
        ValueError: the state's names are not this mode's trained parameters (another mode or model).
    """
    missing = sorted(trainable - set(state))
    if missing:
        raise ValueError(f"{len(missing)} trained parameter(s) missing from the state, e.g. {missing[0]}")
    options = StateDictOptions(full_state_dict=True, strict=False)
    set_model_state_dict(module, dict(state), options=options)
