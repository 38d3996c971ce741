"""The pre-training loop: one loop for one process, DDP or FSDP2, CPU or GPU.

Single process::

    raddino pretrain --config configs/demo_cpu.yaml --out runs/demo

One node with 8 GPUs (one process per GPU; the same command on every node with ``--nnodes``)::

    torchrun --nproc_per_node 8 -m raddino pretrain --config configs/rad_dino_vitb14.yaml --out runs/rd

Each iteration: set lr / weight decay / last-layer lr from the precomputed schedules, run
``grad_accumulation_steps`` micro-batches (teacher forward without gradient, student forward and backward),
stop with :class:`NonFiniteLossError` if any loss term is not finite (the last checkpoint stays the last
good state), clip, step AdamW, EMA-update the teacher. Checkpoints every ``train.checkpoint_period``
iterations and at the end; a rerun into the same folder resumes exactly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from raddino.config import config_to_dict, save_config
from raddino.io.failures import FailureLog
from raddino.io.manifest import Manifest, load_inputs
from raddino.pretrain.checkpoint import TrainingState, latest_checkpoint, load_checkpoint, save_checkpoint
from raddino.pretrain.config import PretrainConfig
from raddino.pretrain.dataset import PretrainDataset
from raddino.pretrain.export import export_run
from raddino.pretrain.loader import Collator, build_augmentation, move_batch
from raddino.pretrain.meta_arch import SSLMetaArch, SSLNetwork
from raddino.pretrain.metrics import MetricsLog
from raddino.pretrain.param_groups import apply_schedules, build_param_groups
from raddino.pretrain.sampler import StreamSampler
from raddino.pretrain.schedules import cosine_schedule, teacher_temperature_schedule
from raddino.training.distributed import DistributedContext, init_distributed
from raddino.training.parallel import clip_gradients, gradient_sync, unwrap, wrap_for_training

StepCallback = Callable[[int, dict[str, float]], None]


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite; the run stops before the optimiser step."""

    def __init__(self, iteration: int, term: str, value: float) -> None:
        super().__init__(
            f"iteration {iteration}: loss term '{term}' is {value}; stopping (the last checkpoint is the "
            "last good state: lower optim.base_lr, raise optim.warmup_epochs or use bf16/fp32)"
        )
        self.iteration, self.term, self.value = iteration, term, value


@dataclass
class Schedules:
    """Per-iteration values, DINOv2's ``build_schedulers`` (arrays of ``total_iterations``)."""

    lr: np.ndarray
    weight_decay: np.ndarray
    momentum: np.ndarray
    teacher_temp: np.ndarray
    last_layer_lr: np.ndarray

    @classmethod
    def build(cls, config: PretrainConfig, world_size: int) -> Schedules:
        epoch = config.train.OFFICIAL_EPOCH_LENGTH
        total = config.total_iterations
        optim, teacher = config.optim, config.teacher
        lr = cosine_schedule(
            config.scaled_lr(world_size), optim.min_lr, total, warmup_iters=optim.warmup_epochs * epoch
        )
        last_layer_lr = lr.copy()
        last_layer_lr[: optim.freeze_last_layer_epochs * epoch] = 0.0  # DINOv2: head's last layer frozen
        return cls(
            lr=lr,
            weight_decay=cosine_schedule(optim.weight_decay, optim.weight_decay_end, total),
            momentum=cosine_schedule(teacher.momentum_teacher, teacher.final_momentum_teacher, total),
            teacher_temp=teacher_temperature_schedule(
                teacher.warmup_teacher_temp,
                teacher.teacher_temp,
                teacher.warmup_teacher_temp_epochs * epoch,
                total,
            ),
            last_layer_lr=last_layer_lr,
        )

    def at(self, iteration: int) -> dict[str, float]:
        return {
            "lr": float(self.lr[iteration]),
            "wd": float(self.weight_decay[iteration]),
            "momentum": float(self.momentum[iteration]),
            "teacher_temp": float(self.teacher_temp[iteration]),
            "last_layer_lr": float(self.last_layer_lr[iteration]),
        }


@dataclass
class PretrainResult:
    """What a finished (or already finished) run left behind."""

    run: Path
    iterations: int
    checkpoint: Path | None
    export: Path | None = None
    last_metrics: dict[str, float] = field(default_factory=dict)
    failures: int = 0


def _autocast_dtype(config: PretrainConfig, device: torch.device) -> torch.dtype | None:
    choice = config.compute.mixed_precision
    if choice == "auto":
        if device.type != "cuda":
            return None  # fp32 on CPU: CPU autocast is slow for these ops and tests need exact numbers
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[choice]


def _reduce_mean(values: dict[str, torch.Tensor], context: DistributedContext) -> dict[str, float]:
    keys = sorted(values)
    stacked = torch.stack([values[key].detach().float() for key in keys])  # (T,)
    if context.is_distributed and dist.is_initialized():
        dist.all_reduce(stacked)
        stacked /= context.world_size
    return dict(zip(keys, stacked.tolist(), strict=True))


def _manifest(config: PretrainConfig) -> Manifest:
    manifest = load_inputs(config.train.dataset_path)
    split = config.train.split
    if split is not None:
        rows = [row for row in manifest.rows if row.get("split") == split]
        if not rows:
            raise ValueError(f"{config.train.dataset_path}: no rows with split '{split}' (train.split)")
        manifest = Manifest(rows=rows, columns=manifest.columns, root=manifest.root, source=manifest.source)
    return manifest


def pretrain(
    config: PretrainConfig,
    out: str | Path,
    *,
    resume: bool = True,
    progress: bool = True,
    on_step: StepCallback | None = None,
) -> PretrainResult:
    """Run (or continue) DINOv2 pre-training into the run folder ``out``.

    Args:
        config: The merged config (saved as ``out/config.yaml``).
        out: Run folder: ``config.yaml``, ``checkpoints/``, ``metrics.jsonl``, ``errors.csv``,
            ``export/teacher`` (when ``train.export_at_end``).
        resume: Continue from the newest checkpoint in ``out`` if there is one; with False an existing
            checkpoint is an error.
        progress: Show a tqdm bar on rank 0.
        on_step: Called on every rank after each iteration (and its checkpoint) with the iteration count
            and the logged values.

    Raises:
        NonFiniteLossError: a loss term was NaN or infinite.
        FileExistsError: ``out`` holds checkpoints and ``resume`` is False.
    """
    run = Path(out)
    context = init_distributed(config.compute.device)
    device = context.device
    previous = latest_checkpoint(run)
    if previous is not None and not resume:
        raise FileExistsError(
            f"{run} already holds checkpoints ({previous.name}); resume or pick a new folder"
        )
    if context.is_main:
        run.mkdir(parents=True, exist_ok=True)
        save_config(config, run / "config.yaml")
    torch.manual_seed(config.train.seed + context.rank)  # drop-path draws; restored on exact resume

    manifest = _manifest(config)
    augmentation = build_augmentation(config)
    dataset = PretrainDataset(manifest, augmentation, seed=config.train.seed)
    model = SSLMetaArch(config).to(device)
    student_module = wrap_for_training(
        model.student, context, config.compute.strategy, followers=[model.teacher]
    )
    student: SSLNetwork = unwrap(student_module)  # type: ignore[assignment]
    groups = build_param_groups(
        student.encoder,
        student.heads(),
        layerwise_decay=config.optim.layerwise_decay,
        patch_embed_lr_mult=config.optim.patch_embed_lr_mult,
    )
    optimizer = torch.optim.AdamW(groups, betas=(config.optim.adamw_beta1, config.optim.adamw_beta2))
    autocast_dtype = _autocast_dtype(config, device)
    scaler = torch.amp.GradScaler(device.type) if autocast_dtype == torch.float16 else None
    state = TrainingState(student_module, model.teacher, model.objective, optimizer, scaler)

    start = 0
    if previous is not None:
        start = int(load_checkpoint(previous, state, context)["iteration"])
    end = config.run_iterations
    schedules = Schedules.build(config, context.world_size)
    sampler_args = dict(
        world_size=context.world_size,
        rank=context.rank,
        accumulation_steps=config.train.grad_accumulation_steps,
        seed=config.train.seed,
        start_iteration=start,
        end_iteration=end,
    )
    sampler = StreamSampler(len(dataset), config.train.batch_size_per_gpu, **sampler_args)
    collator = Collator(config, student.encoder.patch_size, sampler.micro_batch_images)
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collator,
        num_workers=config.train.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        # Its own generator: creating the iterator must not draw from the global RNG, whose state a
        # checkpoint restores for drop-path (else a resumed run's draws would shift by one).
        generator=torch.Generator().manual_seed(config.train.seed),
    )
    failures = FailureLog(run / ("errors.csv" if context.is_main else f"errors_rank{context.rank}.csv"))
    metrics = MetricsLog(run, resume_from=start if previous is not None else None, enabled=context.is_main)
    extra: dict[str, Any] = {
        "config": config_to_dict(config),
        "encoder_config": student.encoder.config.to_dict(),
    }
    if context.is_main:
        print(
            f"pre-training {start} → {end} of {config.total_iterations} iterations on {context.world_size} "
            f"process(es), {device}; global batch {sampler.global_batch_images} images; peak lr "
            f"{config.scaled_lr(context.world_size):.3g} ({config.optim.scaling_rule}); {len(dataset)} images"
        )
    last_checkpoint = previous
    last_values: dict[str, float] = {}
    bar = tqdm(
        total=end, initial=start, unit="it", disable=not (progress and context.is_main), dynamic_ncols=True
    )
    batches = iter(loader)
    model.train()
    accumulation = config.train.grad_accumulation_steps
    images_per_step = sampler.global_batch_images
    try:
        for iteration in range(start, end):
            began = time.perf_counter()
            values = schedules.at(iteration)
            apply_schedules(optimizer, values["lr"], values["wd"], values["last_layer_lr"])
            optimizer.zero_grad(set_to_none=True)
            step_terms: dict[str, torch.Tensor] = {}
            for micro_step in range(accumulation):
                batch = next(batches)
                for path, reason in batch.pop("failures"):
                    failures.record(path, reason, stage="read")
                batch = move_batch(batch, device)
                with gradient_sync(student_module, micro_step == accumulation - 1):
                    with torch.autocast(
                        device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
                    ):
                        losses = model.forward_losses(batch, values["teacher_temp"], student_module)
                    loss = losses.total / accumulation
                    (scaler.scale(loss) if scaler is not None else loss).backward()
                for key, term in {"loss": losses.total, **losses.terms}.items():
                    step_terms[key] = step_terms.get(key, 0.0) + term.detach().float() / accumulation
            reduced = _reduce_mean(step_terms, context)
            for key, value in reduced.items():
                if not math.isfinite(value):
                    bad = next((k for k, v in reduced.items() if k != "loss" and not math.isfinite(v)), key)
                    raise NonFiniteLossError(iteration, bad, reduced[bad])
            if scaler is not None:
                scaler.unscale_(optimizer)
            norms = clip_gradients(student.clip_groups(), config.optim.clip_grad)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            model.update_teacher(values["momentum"], student)
            elapsed = time.perf_counter() - began
            done = iteration + 1
            last_values = {
                **reduced,
                **values,
                **{f"grad_norm_{k}": v for k, v in norms.items()},
                "images_per_s": images_per_step / max(elapsed, 1e-9),
            }
            if done % config.train.log_period == 0 or done == end:
                metrics.log(done, last_values)
            period = config.train.export_period
            # Teacher snapshots to choose from by linear probing, as the paper chose its checkpoint.
            snapshot = period is not None and period > 0 and done % period == 0 and done != end
            if done % config.train.checkpoint_period == 0 or done == end or snapshot:
                extra["sampler"] = sampler.state_dict(done)
                last_checkpoint = save_checkpoint(
                    run, done, state, context, extra, config.train.keep_checkpoints
                )
            if snapshot:
                if context.is_main:
                    export_run(
                        run,
                        run / "export" / f"teacher_{done:07d}",
                        checkpoint=last_checkpoint,
                        overwrite=True,
                    )
                context.barrier()
            bar.update(1)
            bar.set_postfix(
                {k: f"{last_values[k]:.4g}" for k in ("loss", "dino", "ibot", "koleo") if k in last_values}
                | {
                    "lr": f"{values['lr']:.2e}",
                    "m": f"{values['momentum']:.4f}",
                    "img/s": f"{last_values['images_per_s']:.1f}",
                }
            )
            if on_step is not None:
                on_step(done, last_values)
    finally:
        bar.close()
        metrics.close()
    exported = None
    if config.train.export_at_end and last_checkpoint is not None and start < end:
        if context.is_main:
            exported = export_run(run, run / "export" / "teacher", overwrite=True).out
        context.barrier()
    return PretrainResult(run, end, last_checkpoint, exported, last_values, failures.count)
