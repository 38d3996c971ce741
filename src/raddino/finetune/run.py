"""``raddino finetune``: train each mode on the engine, export it, score the test split, write the tables.

Each mode trains in ``<out>/<mode>/`` (the engine's ``checkpoints/``, ``metrics.jsonl``, ``train_log.csv``,
``val_log.csv``); a killed run resumes there exactly. A finished mode leaves ``encoder/`` (a transformers
folder, ``AutoModel.from_pretrained`` loads it), ``head.safetensors`` and ``finetune.json`` (a row that
``raddino compare`` shows in the probe or segment table beside frozen-encoder results); a rerun with the
same settings reuses it. ``<out>/finetune.{md,csv,json}`` put the modes side by side with 95% bootstrap
intervals, seconds per epoch and peak memory.

Under ``torchrun`` every process runs this same command (DDP, or FSDP2 for ``full``); rank 0 writes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from raddino.config import config_to_dict
from raddino.evaluate.results import csv_text, encoder_name, markdown_table, write_json
from raddino.finetune.config import FinetuneConfig, Mode
from raddino.finetune.data import FinetuneData, load_finetune_data, preprocess_for
from raddino.finetune.evaluation import classification_metrics, format_interval, segmentation_metrics
from raddino.finetune.modes import export_encoder, trainable_parameter_count
from raddino.finetune.task import FinetuneTaskRunner, load_trained_state
from raddino.io.atomic import atomic_path, atomic_write_text
from raddino.io.failures import FailureLog
from raddino.training import EPOCH_LOGS, Callback, Engine, Plan, RunFolder, resolve_precision
from raddino.training.distributed import DistributedContext, init_distributed

logger = logging.getLogger(__name__)
_RESTART = "rerun with --overwrite to start afresh"
LOGS = EPOCH_LOGS
MODE_FILES = ("encoder", "head.safetensors", "finetune.json", "train_log.csv", "val_log.csv")


@dataclass
class FinetuneResult:
    """What a run measured: one entry per mode (``None`` for a mode stopped by ``max_steps``, and on every
    rank but 0 under torchrun)."""

    modes: dict[str, dict[str, Any] | None]
    outputs: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0

    def __str__(self) -> str:
        key = next(iter(next((m for m in self.modes.values() if m), {}).get("test", {})), "")
        parts = []
        for mode, entry in self.modes.items():
            value = format_interval(entry["test"].get(key)) if entry else "stopped (rerun to resume)"
            parts.append(f"{mode}: {key} {value}" if entry else f"{mode}: {value}")
        return "; ".join(parts) + (f" -> {self.outputs['markdown']}" if "markdown" in self.outputs else "")


def _fingerprint(config: FinetuneConfig, mode: Mode, data: FinetuneData) -> str:
    settings = config_to_dict(config)
    for key in (
        "tracking",
        "out",
        "modes",
        "progress",
        "overwrite",
        "device",
        "max_steps",
        "bootstrap",
        "checkpoint_every",
    ):
        settings.pop(key)
    settings["mode"] = mode
    settings["splits"] = [data.subset(name).tolist() for name in ("train", "val", "test")]
    settings["ids"] = hashlib.sha256("\n".join(data.ids).encode()).hexdigest()
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def _peak_memory_mib(device: torch.device) -> dict[str, float]:
    """The process's peak so far: GPU memory allocated by torch on CUDA, else the resident set size."""
    if device.type == "cuda":
        return {"peak_gpu_mib": torch.cuda.max_memory_allocated(device) / 2**20}
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20}


def _test_metrics(task: FinetuneTaskRunner, config: FinetuneConfig) -> dict[str, dict[str, Any]]:
    rows = torch.as_tensor(task.data.subset("test"))
    logits = task.predict("test")
    known, targets = task.data.known[rows], task.data.targets[rows]
    if config.task == "segment":
        return segmentation_metrics(
            logits > 0, targets, known, task.data.names, config.bootstrap, config.seed
        )
    labels = torch.where(known, targets, torch.full_like(targets, float("nan"))).numpy()
    return classification_metrics(logits.numpy(), labels, task.data.names, config.bootstrap, config.seed)


def _finish_mode(
    task: FinetuneTaskRunner,
    config: FinetuneConfig,
    folder: Path,
    preprocess: Any,
    timing: dict[str, float],
    fingerprint: str,
) -> dict[str, Any]:
    """Rank 0: rebuild the network with the best state, export it, score the test split."""
    device = task.context.device
    network, adapted = task.make_network(device)
    trainable = {name for name, p in network.named_parameters() if p.requires_grad}
    load_trained_state(network, trainable, task.best["state"])
    task.network = task.trained = network  # predictions from the rebuilt best network
    test = _test_metrics(task, config)
    network.encoder.set_drop_path(0.0)  # the exported config is for inference
    export_encoder(network.encoder, adapted, folder / "encoder", preprocess, config.lora.export == "adapter")
    with atomic_path(folder / "head.safetensors") as temporary:
        head = {key: value.detach().cpu().contiguous() for key, value in network.head.state_dict().items()}
        save_file(head, str(temporary), metadata={"task": config.task, "head": config.head})
    name = f"{encoder_name(config.model)} finetune {task.mode}"
    summary = {key: {"mean": metric["value"], "std": None, "count": 1} for key, metric in test.items()}
    entry = {
        "task": "finetune",
        "compare_as": "segment" if config.task == "segment" else "probe",
        "encoder": name,
        "mode": task.mode,
        "summary": summary,
        "test": test,
        "names": task.data.names,
        "best_epoch": int(task.best["epoch"]),
        "history": task.history,
        "trainable_parameters": trainable_parameter_count(network),
        "total_parameters": sum(p.numel() for p in network.parameters()),
        **timing,
        "fingerprint": fingerprint,
    }
    write_json(folder / "finetune.json", entry)
    return entry


def _train_mode(
    config: FinetuneConfig,
    mode: Mode,
    data: FinetuneData,
    context: DistributedContext,
    preprocess: Any,
    callbacks: Sequence[Callback],
) -> dict[str, Any] | None:
    folder = Path(config.out) / mode
    run = RunFolder(folder, "fine-tuning checkpoint", _RESTART)
    if config.overwrite and context.is_main:
        run.clear(MODE_FILES)
    fingerprint = _fingerprint(config, mode, data)
    saved = folder / "finetune.json"
    if saved.is_file():
        entry = json.loads(saved.read_text(encoding="utf-8"))
        if entry.get("fingerprint") == fingerprint:
            logger.info("%s: reusing %s", mode, saved)
            return dict(entry)
    task = FinetuneTaskRunner(config, mode, data, context)
    plan = Plan(
        total_steps=task.total_steps,
        steps_per_epoch=task.steps_per_epoch,
        checkpoint_every=config.checkpoint_every,
        stop_at=config.max_steps or None,
    )
    precision = resolve_precision(config.precision, context.device)
    if context.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(context.device)
    before = _peak_memory_mib(context.device)
    started = time.perf_counter()
    engine = Engine(
        task,
        run,
        plan,
        precision,
        context=context,
        views=LOGS,
        callbacks=callbacks,
        progress=config.progress,
        fingerprint=fingerprint,
        advice="lower lr or raise warmup_epochs",
        tracking=dataclasses.replace(
            config.tracking, run_name=config.tracking.run_name or f"{Path(config.out).name}-{mode}"
        ),
        config=config,
    )
    fit = engine.fit()
    epochs = max((fit.step - fit.start) / task.steps_per_epoch, 1e-9)
    timing = {
        "seconds_per_epoch": (time.perf_counter() - started) / epochs,
        **_peak_memory_mib(context.device),
        "peak_before_training_mib": next(iter(before.values())),  # data loaded, nothing trained yet
    }
    if not fit.complete:
        return None
    entry = _finish_mode(task, config, folder, preprocess, timing, fingerprint) if context.is_main else None
    context.barrier()
    return entry


def _tables(
    config: FinetuneConfig, names: list[str], modes: dict[str, dict[str, Any] | None]
) -> tuple[str, str]:
    done = {mode: entry for mode, entry in modes.items() if entry}
    keys = (
        ["dice", *(f"dice/{n}" for n in names)]
        if config.task == "segment"
        else ["macro_auprc", *(f"auprc/{n}" for n in names), "macro_auroc"]
    )
    header = ["mode", *keys, "trained params", "s/epoch", "peak MiB"]
    rows, csv_rows = [], []
    for mode, entry in done.items():
        memory = entry.get("peak_gpu_mib", entry.get("peak_rss_mib", float("nan")))
        rows.append(
            [
                mode,
                *(format_interval(entry["test"].get(k)) for k in keys),
                f"{entry['trainable_parameters']:,}",
                f"{entry['seconds_per_epoch']:.1f}",
                f"{memory:.0f}",
            ]
        )
        csv_rows += [[mode, k, m["value"], m["low"], m["high"]] for k, m in entry["test"].items()]
    sizes = ", ".join(f"{mode}" for mode, entry in modes.items() if entry is None)
    markdown = (
        f"# Fine-tuning: {encoder_name(config.model)} ({config.task})\n\n"
        f"Test split; value [95% bootstrap interval over {config.bootstrap} resamples of the test "
        "images].\n\n"
        + markdown_table(header, rows)
        + (f"\nNot finished (rerun to resume): {sizes}.\n" if sizes else "")
    )
    return markdown, csv_text(["mode", "metric", "value", "low", "high"], csv_rows)


def run_finetune(config: FinetuneConfig, callbacks: Sequence[Callback] = ()) -> FinetuneResult:
    """Fine-tune every mode of ``config.modes`` in turn; rerun the same call to resume.

    Raises:
        ManifestError, LabelError, SplitError: the input at fault, named.
        ModelLoadError: the model cannot be loaded.
        CheckpointMismatchError, StateFileError: a checkpoint in ``out`` does not fit or is unsafe.
        NonFiniteLossError: the loss became NaN or infinite.
    """
    started = time.perf_counter()
    if not config.input or not config.model:
        raise ValueError("set 'input' (a labelled manifest CSV) and 'model' (the encoder to fine-tune)")
    context = init_distributed(config.device)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    failures = FailureLog(out / "errors.csv")
    if context.is_main:
        failures.reset()
        RunFolder(out).save_config(config, "finetune_config.yaml")
    preprocess = preprocess_for(config)
    data = load_finetune_data(config, preprocess, failures)
    modes: dict[str, dict[str, Any] | None] = {
        mode: _train_mode(config, mode, data, context, preprocess, callbacks) for mode in config.modes
    }
    result = FinetuneResult(modes)
    if context.is_main:
        markdown, table = _tables(config, data.names, modes)
        result.outputs = {
            "markdown": atomic_write_text(out / "finetune.md", markdown),
            "csv": atomic_write_text(out / "finetune.csv", table),
            "json": write_json(
                out / "finetune.json",
                {
                    "task": "finetune-modes",
                    "modes": modes,
                    "splits": data.splits.sizes(),
                    "failed": data.failed,
                },
            ),
        }
    result.seconds = time.perf_counter() - started
    return result
