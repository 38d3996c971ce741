"""DINOv2 pre-training as a task on the training engine (:mod:`raddino.training`).

The task owns what is particular to self-supervised pre-training; the engine runs the loop. Each step,
as DINOv2's ``train.py`` does it:

- the schedules (precomputed arrays, :func:`build_schedules`) set every parameter group's lr and weight
  decay, the heads' last layer's lr (0 while frozen) and, through the step's values, the teacher's
  temperature and momentum;
- ``train.grad_accumulation_steps`` micro-batches from the :class:`~raddino.pretrain.sampler.StreamSampler`:
  teacher forward without gradient, student forward and backward, the gradient all-reduce only on the
  last micro-batch (DDP ``no_sync``, FSDP2 ``set_requires_gradient_sync``);
- a non-finite loss term stops the run naming it; the gradients are clipped per module (backbone, each
  head), AdamW steps, and the EMA teacher follows (an after-step hook);
- with ``gram.use_loss`` (DINOv3) the Gram teacher is loaded from the EMA teacher before iteration
  ``gram.it_load_ema_teacher`` and refreshed after the iterations :meth:`GramTeacher.update_due` names.

A checkpoint holds the full student and teacher, the loss centres and the sampler's position (the
engine adds the optimiser, the scaler and every rank's RNG), so a resumed run draws the same images,
crops, masks and drop-path as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from raddino.config import config_to_dict
from raddino.io.failures import FailureLog
from raddino.pretrain.config import GramConfig, PretrainConfig
from raddino.pretrain.dataset import PretrainDataset
from raddino.pretrain.loader import Collator, move_batch
from raddino.pretrain.meta_arch import SSLMetaArch, SSLNetwork
from raddino.pretrain.param_groups import apply_schedules, build_param_groups
from raddino.pretrain.sampler import StreamSampler
from raddino.pretrain.validation import ValidationProbe, validation_due
from raddino.training import (
    LossTerms,
    Optimization,
    Schedules,
    StepResult,
    TaskBase,
    cosine_schedule,
    teacher_temperature_schedule,
)
from raddino.training.distributed import DistributedContext
from raddino.training.parallel import (
    GatheredOptimization,
    clip_gradients,
    full_state_dict,
    gradient_sync,
    load_full_state_dict,
    unwrap,
    wrap_for_training,
)


def build_schedules(config: PretrainConfig, world_size: int) -> Schedules:
    """DINOv2's ``build_schedulers``: arrays of ``config.total_iterations`` steps.

    ``learning_rate``: linear warm-up over ``optim.warmup_epochs`` to the scaled peak, then cosine to
    ``optim.min_lr``; ``last_layer_learning_rate``: the same, 0 for ``optim.freeze_last_layer_epochs``;
    ``weight_decay``: cosine 0.04 → 0.4; ``momentum``: the teacher's EMA, cosine 0.992 → 1;
    ``teacher_temperature``: linear 0.04 → 0.07 over ``teacher.warmup_teacher_temp_epochs``;
    ``gram_loss_weight`` with ``gram.use_loss``: ``gram.loss_weight``, or its ``loss_weight_schedule``.
    """
    epoch = config.train.OFFICIAL_EPOCH_LENGTH
    total = config.total_iterations
    optim, teacher = config.optim, config.teacher
    learning_rate = cosine_schedule(
        config.scaled_lr(world_size), optim.min_lr, total, warmup_iters=optim.warmup_epochs * epoch
    )
    last_layer = learning_rate.copy()
    last_layer[: optim.freeze_last_layer_epochs * epoch] = 0.0  # DINOv2: the head's last layer frozen
    arrays = {
        "learning_rate": learning_rate,
        "weight_decay": cosine_schedule(optim.weight_decay, optim.weight_decay_end, total),
        "momentum": cosine_schedule(teacher.momentum_teacher, teacher.final_momentum_teacher, total),
        "teacher_temperature": teacher_temperature_schedule(
            teacher.warmup_teacher_temp,
            teacher.teacher_temp,
            teacher.warmup_teacher_temp_epochs * epoch,
            total,
        ),
        "last_layer_learning_rate": last_layer,
    }
    if config.gram.use_loss:
        arrays["gram_loss_weight"] = gram_weight_schedule(config.gram, epoch, total)
    return Schedules(arrays, total)


def gram_weight_schedule(gram: GramConfig, epoch_length: int, total: int) -> np.ndarray:
    """The Gram loss weight per iteration: constant ``gram.loss_weight``, or DINOv3's
    ``linear_warmup_cosine_decay`` of ``gram.loss_weight_schedule`` (linear ``start`` → ``peak`` over
    ``warmup_epochs`` without reaching ``peak``, cosine ``peak`` → ``end`` over ``cosine_epochs`` (default:
    the rest) with both ends included, then ``end``)."""
    schedule = gram.loss_weight_schedule
    if schedule is None:
        return np.full(total, gram.loss_weight, dtype=np.float64)
    warmup = schedule.warmup_epochs * epoch_length
    cosine_iters = total - warmup if schedule.cosine_epochs is None else schedule.cosine_epochs * epoch_length
    linear = np.linspace(schedule.start, schedule.peak, warmup, endpoint=False)
    half_cosine = (np.cos(np.linspace(0.0, np.pi, cosine_iters)) + 1.0) / 2.0  # 1 → 0
    cosine = schedule.end + (schedule.peak - schedule.end) * half_cosine
    constant = np.full(total - warmup - cosine_iters, schedule.end, dtype=np.float64)
    return np.concatenate([linear, cosine, constant])


def _apply_schedules(optimizer: torch.optim.Optimizer, values: Mapping[str, float]) -> None:
    apply_schedules(
        optimizer, values["learning_rate"], values["weight_decay"], values["last_layer_learning_rate"]
    )


class PretrainTask(TaskBase):
    """Student, EMA teacher, DINO + iBOT + KoLeo on a stream of multi-crop batches.

    Args:
        config: The run's config.
        context: This process's place in the job.
        dataset: The images (None: the task is only built and stepped, as ``benchmarks/pretrain.py`` does).
        failures: Where unreadable images are recorded (``RUN/errors.csv``).
    """

    description = "pretrain"
    shown: tuple[str, ...] = (
        "train/loss",
        "train/dino",
        "train/ibot",
        "train/koleo",
        "train/gram",
        "train/learning_rate",
        "train/momentum",
    )

    def __init__(
        self,
        config: PretrainConfig,
        context: DistributedContext,
        dataset: PretrainDataset | None = None,
        failures: FailureLog | None = None,
    ) -> None:
        self.config, self.context = config, context
        self.dataset, self.failures = dataset, failures
        self.done = 0
        self.validation: ValidationProbe | None = None  # set by pretrain() when validation.every is set
        self.saved_sampler: Mapping[str, Any] | None = None  # a resumed run's data position

    def build(self, device: torch.device) -> Optimization:
        config, context = self.config, self.context
        torch.manual_seed(config.train.seed + context.rank)  # drop-path draws; a checkpoint restores them
        self.model = SSLMetaArch(config).to(device)
        followers: list[torch.nn.Module] = [self.model.teacher]
        if self.model.gram_teacher is not None:
            followers.append(self.model.gram_teacher.encoder)  # sharded as the teacher: shards line up
        self.student_module = wrap_for_training(
            self.model.student, context, config.compute.strategy, followers=followers
        )
        self.student: SSLNetwork = unwrap(self.student_module)  # type: ignore[assignment]
        groups = build_param_groups(
            self.student.encoder,
            self.student.heads(),
            layerwise_decay=config.optim.layerwise_decay,
            patch_embed_lr_mult=config.optim.patch_embed_lr_mult,
        )
        optimizer = torch.optim.AdamW(groups, betas=(config.optim.adamw_beta1, config.optim.adamw_beta2))
        return GatheredOptimization(
            self.model,
            optimizer,
            build_schedules(config, context.world_size),
            max_grad_norm=config.optim.clip_grad,  # 0: norms measured, nothing clipped
            clip=self._clip,
            gradient_sync=lambda enabled: gradient_sync(self.student_module, enabled),
            reduce=self._mean_over_ranks,
            apply_schedules=_apply_schedules,
            after_step=[self._update_teacher, self._update_gram_teacher],
            trained=self.student_module,
        )

    def _clip(self, max_norm: float) -> dict[str, float]:
        norms = clip_gradients(self.student.clip_groups(), max_norm)
        return {f"grad_norm_{name}": norm for name, norm in norms.items()}

    def _update_teacher(self, step: int, values: Mapping[str, float]) -> None:
        self.model.update_teacher(values["momentum"], self.student)

    def _update_gram_teacher(self, step: int, values: Mapping[str, float]) -> None:
        gram = self.model.gram_teacher
        if gram is not None and gram.update_due(step):
            gram.copy_from(self.model.teacher.encoder, count=True)

    def _mean_over_ranks(self, losses: dict[str, float]) -> dict[str, float]:
        if not (self.context.is_distributed and dist.is_initialized()):
            return losses
        keys = sorted(losses)
        values = [losses[key] for key in keys]
        stacked = torch.tensor(values, dtype=torch.float32, device=self.context.device)  # (T,)
        dist.all_reduce(stacked)
        stacked /= self.context.world_size
        return dict(zip(keys, stacked.tolist(), strict=True))

    def begin(self, start: int) -> None:
        if self.dataset is None:
            raise ValueError("pre-training needs a dataset to begin")
        config, context = self.config, self.context
        self.done = start
        self.sampler = StreamSampler(
            len(self.dataset),
            config.train.batch_size_per_gpu,
            world_size=context.world_size,
            rank=context.rank,
            accumulation_steps=config.train.grad_accumulation_steps,
            seed=config.train.seed,
            start_iteration=start,
            end_iteration=config.run_iterations,
            blocks=self.dataset.shard_lengths() if config.train.shard_order == "shard" else None,
        )
        self._check_data_position(self.saved_sampler)
        loader = DataLoader(
            self.dataset,
            batch_sampler=self.sampler,
            collate_fn=Collator(config, self.student.encoder.patch_size, self.sampler.micro_batch_images),
            num_workers=config.train.num_workers,
            pin_memory=context.device.type == "cuda",
            persistent_workers=False,
            # Its own generator: creating the iterator must not draw from the global RNG, whose state a
            # checkpoint restores for drop-path (else a resumed run's draws would shift by one).
            generator=torch.Generator().manual_seed(config.train.seed),
        )
        self.batches: Iterator[dict[str, Any]] = iter(loader)
        self.items_per_step = self.sampler.global_batch_images
        if context.is_main:
            print(
                f"pre-training {start} → {config.run_iterations} of {config.total_iterations} iterations on "
                f"{context.world_size} process(es), {context.device}; global batch {self.items_per_step} "
                f"images; peak lr {config.scaled_lr(context.world_size):.3g} ({config.optim.scaling_rule}); "
                f"{len(self.dataset)} images"
            )

    def micro_batches(self, step: int) -> Iterator[tuple[dict[str, torch.Tensor], float]]:
        accumulation = self.config.train.grad_accumulation_steps
        gram = self.model.gram_teacher
        if gram is not None and gram.load_due(step):
            gram.copy_from(self.model.teacher.encoder, count=False)  # before the step, as DINOv3
        for _ in range(accumulation):
            batch = next(self.batches)
            for path, reason in batch.pop("failures"):
                if self.failures is not None:
                    self.failures.record(path, reason, stage="read")
            yield move_batch(batch, self.context.device), 1.0 / accumulation

    def loss(self, batch: dict[str, torch.Tensor], values: Mapping[str, float]) -> LossTerms:
        return self.model.forward_losses(
            batch, values["teacher_temperature"], self.student_module, values.get("gram_loss_weight", 0.0)
        )

    def after_step(self, done: int, result: StepResult) -> dict[str, float]:
        self.done = done
        return {}

    def wants_checkpoint(self, done: int) -> bool:
        return snapshot_due(self.config, done) or validation_due(self.config, done)

    @property
    def finished(self) -> bool:
        """True once the validation probe's patience has run out (``validation.patience``)."""
        return self.validation is not None and self.validation.stopped

    def state_dict(self) -> dict[str, Any]:
        """Collective under FSDP2 (every rank calls it; rank 0 gets the full states)."""
        gram: dict[str, Any] = {}
        if self.model.gram_teacher is not None:
            gram = {
                "gram_teacher": full_state_dict(self.model.gram_teacher.encoder),
                "gram": self.model.gram_teacher.schedule_state(),
            }
        return {
            **gram,
            "student": full_state_dict(self.student_module),
            "teacher": full_state_dict(self.model.teacher),
            "objective": {k: v.detach().cpu() for k, v in self.model.objective.state_dict().items()},
            "sampler": self._sampler_state(),
            "config": config_to_dict(self.config),
            "encoder_config": self.student.encoder.config.to_dict(),
        }

    def _sampler_state(self) -> dict[str, Any]:
        """The stream's position and, with shards, where its next image lies (shard name + offset)."""
        state: dict[str, Any] = dict(self.sampler.state_dict(self.done))
        assert self.dataset is not None
        state.update(self.dataset.locate(self.sampler.index_at(int(state["position"]))))
        return state

    def _check_data_position(self, saved: Mapping[str, Any] | None) -> None:
        """A resumed run on shards must find the checkpoint's next image where the checkpoint says."""
        if self.dataset is None or saved is None or "shard" not in saved:
            return
        if saved.get("order", "global") != ("shard" if self.sampler.blocks is not None else "global"):
            raise ValueError(f"the run was started with train.shard_order: {saved['order']}; keep it")
        here = self.dataset.locate(self.sampler.index_at(int(saved["position"])))
        if (here.get("shard"), here.get("offset")) != (saved["shard"], int(saved["offset"])):
            raise ValueError(
                f"the shards changed since the checkpoint: stream position {saved['position']} was image "
                f"{saved['offset']} of {saved['shard']}, it is now image {here.get('offset')} of "
                f"{here.get('shard')}; resume on the same shards"
            )

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.saved_sampler = state.get("sampler")
        load_full_state_dict(self.student_module, state["student"])
        load_full_state_dict(self.model.teacher, state["teacher"])
        self.model.objective.load_state_dict(state["objective"])
        gram = self.model.gram_teacher
        if gram is not None:
            if "gram_teacher" not in state:
                raise ValueError(
                    "the checkpoint has no Gram teacher (the run was started without gram.use_loss); "
                    "turn gram.use_loss off to resume it"
                )
            load_full_state_dict(gram.encoder, state["gram_teacher"])
            gram.load_schedule_state(state["gram"])


def snapshot_due(config: PretrainConfig, done: int) -> bool:
    """Whether a teacher snapshot is exported after ``done`` iterations (every ``train.export_period``;
    the last iteration's export is ``train.export_at_end``'s)."""
    period = config.train.export_period
    return period is not None and period > 0 and done % period == 0 and done != config.run_iterations
