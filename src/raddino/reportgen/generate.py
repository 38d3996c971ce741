"""``raddino report generate``: greedy decoding of a report per study, batched, to a CSV.

Greedy decoding up to 150 new tokens is the paper's setting (RAD-DINO §4.5). The CSV (``id``,
``reference``, ``generated``) is built in ``<out>.partial`` a batch at a time, so an interrupted run
resumes where it stopped, and renamed to ``out`` at the end.
"""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import DataLoader
from transformers import GenerationConfig, GenerationMixin, PreTrainedTokenizerBase

from raddino.config import save_config
from raddino.features.cache import FeatureConfig
from raddino.io.failures import FailureLog
from raddino.io.progress import progress_bar
from raddino.reportgen.checkpoint import load_report_model
from raddino.reportgen.data import ReportBatch, ReportCollator, prompt_layout
from raddino.reportgen.model import ReportGenerator
from raddino.reportgen.studies import StudySelection, load_studies
from raddino.training.distributed import pick_device
from raddino.training.precision import Precision, autocast

logger = logging.getLogger(__name__)
CSV_COLUMNS = ("id", "reference", "generated")


@dataclass
class ReportGenerateConfig:
    """Settings of ``raddino report generate``."""

    model: str = ""
    """Folder written by ``raddino report train``."""
    input: str = ""
    """Manifest CSV of the studies to describe (its report column is the reference)."""
    out: str = "generated_reports.csv"
    """CSV written: ``id``, ``reference``, ``generated``."""
    features: FeatureConfig = field(default_factory=FeatureConfig)
    """Feature cache; ``features.model`` defaults to the encoder the report model was trained on."""
    studies: StudySelection = field(default_factory=lambda: StudySelection(split="test"))
    max_new_tokens: int = 150
    """Longest report in tokens (the paper's 150)."""
    batch_size: int = 16
    """Studies decoded together."""
    precision: Precision = "fp32"
    """Autocast precision of decoding (auto: bf16 or fp16 on a GPU, fp32 elsewhere)."""
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    """Where the model decodes; auto: CUDA, else MPS, else the CPU."""
    overwrite: bool = False
    """Start afresh: discard an earlier (or partial) CSV at ``out`` instead of resuming it."""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("max_new_tokens and batch_size must be at least 1")


@dataclass
class ReportGenerateSummary:
    total: int
    generated: int
    skipped: int
    out: Path
    seconds: float

    def __str__(self) -> str:
        rate = self.generated / self.seconds if self.seconds > 0 else 0.0
        return (
            f"{self.total} studies: {self.generated} reports generated ({rate:.2f}/s), "
            f"{self.skipped} already done -> {self.out}"
        )


@torch.inference_mode()
def greedy_reports(
    model: ReportGenerator,
    tokenizer: PreTrainedTokenizerBase,
    batch: ReportBatch,
    max_new_tokens: int = 150,
) -> list[list[int]]:
    """Greedy continuation of each prompt in ``batch`` (transformers' ``generate``), cut at ``</s>``.

    Every row's prompt has the same length (same prompt, same number of image tokens), so the batch
    needs no padding and positions are those of unbatched decoding. The model's own generation
    defaults (sampling, temperature, repetition penalty) are replaced, not merged: decoding is greedy.

    Returns:
        The new token ids of each row, without ``</s>`` and at most ``max_new_tokens`` long.
    """
    embeddings = model.embed_inputs(batch.input_ids, batch.image_mask, batch.image_tokens)  # (B, T, D)
    settings = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    # with inputs_embeds only, generate returns just the new tokens: (B, <= max_new_tokens)
    language_model: GenerationMixin = model.language_model  # type: ignore[assignment]
    new_ids = language_model.generate(
        inputs_embeds=embeddings, attention_mask=batch.attention_mask, generation_config=settings
    )
    rows = []
    for ids in new_ids.tolist():
        cut = ids.index(tokenizer.eos_token_id) if tokenizer.eos_token_id in ids else len(ids)
        rows.append(ids[:cut])
    return rows


def generate_reports(config: ReportGenerateConfig) -> ReportGenerateSummary:
    """Write a report for every selected study of ``config.input``; rerunning resumes an interrupted run."""
    started = time.perf_counter()
    if not config.model or not config.input:
        raise ValueError("set 'model' (a trained report model folder) and 'input' (a manifest CSV)")
    out = Path(config.out)
    partial = out.with_name(out.name + ".partial")
    if config.overwrite:
        out.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
    model, tokenizer, info = load_report_model(config.model)
    features = config.features
    if not features.model and not features.embeddings:
        features = FeatureConfig(**{**features.__dict__, "model": info.encoder})
    failures = FailureLog(out.with_name(out.stem + "_errors.csv"))
    failures.reset()
    dataset = load_studies(config.input, config.studies, features, info.layer, failures)
    if out.exists() and not partial.exists():
        out.replace(partial)  # a finished run: keep its reports, add the studies it lacks
    done = _done_ids(partial)
    pending = [index for index, row_id in enumerate(dataset.ids) if row_id not in done]
    device = pick_device(config.device, 0)
    model.to(device).eval()
    collate = ReportCollator(
        tokenizer,
        prompt_layout(tokenizer, info.num_image_tokens, info.prompt),
        "generate",
        zero_images=info.zero_images,
    )
    loader = DataLoader(
        torch.utils.data.Subset(dataset, pending), batch_size=config.batch_size, collate_fn=collate
    )
    new_file = not partial.exists()
    if pending:
        with open(partial, "a", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            if new_file:
                writer.writerow(CSV_COLUMNS)
            for batch in progress_bar(
                loader, total=len(loader), unit="batch", desc="report generate", dynamic_ncols=True
            ):
                with autocast(device, config.precision):
                    new_ids = greedy_reports(model, tokenizer, batch.to(device), config.max_new_tokens)
                texts = tokenizer.batch_decode(new_ids, skip_special_tokens=True)
                for row_id, reference, text in zip(batch.ids, batch.reports, texts, strict=True):
                    writer.writerow([row_id, reference, " ".join(text.split())])
                handle.flush()
    if partial.exists():
        partial.replace(out)  # rename: the finished CSV appears whole
    save_config(config, out.with_name(out.stem + "_config.yaml"))
    return ReportGenerateSummary(
        total=len(dataset),
        generated=len(pending),
        skipped=len(dataset) - len(pending),
        out=out,
        seconds=time.perf_counter() - started,
    )


def _done_ids(partial: Path) -> set[str]:
    if not partial.exists():
        return set()
    with open(partial, newline="", encoding="utf-8") as handle:
        return {row["id"] for row in csv.DictReader(handle) if row.get("generated") is not None}
