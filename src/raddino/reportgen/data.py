"""Report examples: stored image tokens + report texts, and the collation into LM inputs and labels.

A training sequence is ``[bos] <prompt before <image>> <N image positions> <prompt after> <report> </s>``;
its labels are the report ids and ``</s>``, with ``-100`` everywhere else (prompt, image positions,
padding), so only the report is learnt (LLaVA's instruction masking). Training batches are right-padded;
generation batches hold the prompt only and are left-padded so every row's next token comes last.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow.parquet as pq
import torch
from safetensors import safe_open
from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerBase

from raddino.reportgen.model import IGNORE_INDEX, IMAGE_PLACEHOLDER, PROMPT


@dataclass(frozen=True)
class PromptLayout:
    """Token ids around the image placeholder of the prompt."""

    before_ids: tuple[int, ...]
    """``[bos]`` (when the tokenizer has one) and the prompt text before ``<image>``."""
    after_ids: tuple[int, ...]
    """The prompt text after ``<image>``."""
    num_image_tokens: int
    filler_id: int
    """Id written at image positions; its embedding is replaced by an image token."""

    @property
    def length(self) -> int:
        return len(self.before_ids) + self.num_image_tokens + len(self.after_ids)


def prompt_layout(
    tokenizer: PreTrainedTokenizerBase, num_image_tokens: int, prompt: str = PROMPT
) -> PromptLayout:
    """Split ``prompt`` at its single ``<image>`` placeholder and tokenise both sides."""
    if prompt.count(IMAGE_PLACEHOLDER) != 1:
        raise ValueError(f"the prompt must hold {IMAGE_PLACEHOLDER} exactly once: {prompt!r}")
    before, after = prompt.split(IMAGE_PLACEHOLDER)
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"] if text else []  # noqa: E731
    filler = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return PromptLayout(tuple(bos + encode(before)), tuple(encode(after)), num_image_tokens, filler)


@dataclass
class ReportItem:
    """One study: its id, reference report and stored image tokens (N, D_vision)."""

    id: str
    report: str
    image_tokens: torch.Tensor


@dataclass
class ReportBatch:
    """A collated batch; ``labels`` is ``None`` for generation batches."""

    ids: list[str]
    reports: list[str]
    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T)
    image_mask: torch.Tensor  # (B, T) bool
    image_tokens: torch.Tensor  # (B, N, D_vision)
    labels: torch.Tensor | None = None  # (B, T)

    def to(self, device: torch.device) -> ReportBatch:
        move = lambda tensor: tensor.to(device, non_blocking=True)  # noqa: E731
        return ReportBatch(
            self.ids,
            self.reports,
            move(self.input_ids),
            move(self.attention_mask),
            move(self.image_mask),
            move(self.image_tokens),
            None if self.labels is None else move(self.labels),
        )


class ReportCollator:
    """Turns :class:`ReportItem` lists into :class:`ReportBatch` es.

    Args:
        tokenizer: The language model's tokenizer (needs a pad and an eos token).
        layout: The prompt's ids around the image positions.
        mode: ``train`` (prompt + report + eos, right-padded, labels) or ``generate`` (prompt only,
            left-padded).
        max_report_tokens: Reports are cut to this many tokens (before ``</s>``).
        zero_images: Replace every image token by zeros: the no-image ablation, which shows how much
            of a score the language model reaches from the prompt and report statistics alone.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        layout: PromptLayout,
        mode: Literal["train", "generate"] = "train",
        max_report_tokens: int = 256,
        zero_images: bool = False,
    ) -> None:
        if tokenizer.eos_token_id is None or tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer needs an eos and a pad token")
        self.tokenizer = tokenizer
        self.layout = layout
        self.mode = mode
        self.max_report_tokens = max_report_tokens
        self.zero_images = zero_images

    def _sequence(self, report: str) -> tuple[list[int], list[int], list[bool]]:
        layout = self.layout
        ids = [*layout.before_ids, *[layout.filler_id] * layout.num_image_tokens, *layout.after_ids]
        image = [False] * len(layout.before_ids) + [True] * layout.num_image_tokens
        image += [False] * len(layout.after_ids)
        labels = [IGNORE_INDEX] * len(ids)
        if self.mode == "train":
            report_ids = self.tokenizer(" " + report.strip(), add_special_tokens=False)["input_ids"]
            report_ids = [*report_ids[: self.max_report_tokens], self.tokenizer.eos_token_id]
            ids += report_ids
            labels += report_ids
            image += [False] * len(report_ids)
        return ids, labels, image

    def __call__(self, items: Sequence[ReportItem]) -> ReportBatch:
        for item in items:
            if item.image_tokens.shape[0] != self.layout.num_image_tokens:
                raise ValueError(
                    f"{item.id}: {item.image_tokens.shape[0]} image tokens, expected "
                    f"{self.layout.num_image_tokens} (embedded with another encoder or resolution?)"
                )
        sequences = [self._sequence(item.report) for item in items]
        length = max(len(ids) for ids, _, _ in sequences)
        batch = len(items)
        input_ids = torch.full((batch, length), self.tokenizer.pad_token_id, dtype=torch.long)
        labels = torch.full((batch, length), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((batch, length), dtype=torch.long)
        image_mask = torch.zeros((batch, length), dtype=torch.bool)
        for row, (ids, row_labels, image) in enumerate(sequences):
            # right padding for training; left padding for generation (the last column is every row's end)
            span = slice(0, len(ids)) if self.mode == "train" else slice(length - len(ids), length)
            input_ids[row, span] = torch.tensor(ids)
            labels[row, span] = torch.tensor(row_labels)
            attention[row, span] = 1
            image_mask[row, span] = torch.tensor(image)
        image_tokens = torch.stack([item.image_tokens.float() for item in items])  # (B, N, D)
        if self.zero_images:
            image_tokens = torch.zeros_like(image_tokens)
        return ReportBatch(
            ids=[item.id for item in items],
            reports=[item.report for item in items],
            input_ids=input_ids,
            attention_mask=attention,
            image_mask=image_mask,
            image_tokens=image_tokens,
            labels=labels if self.mode == "train" else None,
        )


class TokenStore:
    """Reads one token tensor per image (e.g. ``layer-1_patch_tokens``, (N, D)) from an embeddings run.

    Safetensors shards are memory-mapped and read row by row, so the store never holds every image's tokens.
    """

    def __init__(self, embeddings: str | Path, name: str) -> None:
        self.path = Path(embeddings)
        self.name = name
        columns = pq.read_schema(self.path).names
        if "tokens_file" not in columns:
            raise ValueError(f"{self.path}: holds no token tensors; embed with layers=[...] or patch_tokens")
        table = pq.read_table(self.path, columns=["id", "tokens_file", "tokens_row"])
        shards = self.path.with_name(self.path.stem + "_shards")
        self._where = {
            row_id: (shards / file, int(row))
            for row_id, file, row in zip(
                table.column("id").to_pylist(),
                table.column("tokens_file").to_pylist(),
                table.column("tokens_row").to_pylist(),
                strict=True,
            )
        }
        self._npz: dict[Path, np.ndarray] = {}

    def __contains__(self, row_id: str) -> bool:
        return row_id in self._where

    def __getitem__(self, row_id: str) -> torch.Tensor:
        file, row = self._where[row_id]
        if file.suffix == ".safetensors":
            with safe_open(str(file), framework="pt") as handle:
                if self.name not in handle.keys():  # noqa: SIM118 (safe_open has no __contains__)
                    raise KeyError(f"{file}: no tensor '{self.name}'; available: {sorted(handle.keys())}")
                return handle.get_slice(self.name)[row]
        if file not in self._npz:
            with np.load(file) as archive:
                self._npz[file] = archive[self.name]
        return torch.from_numpy(self._npz[file][row])


class ReportDataset(Dataset[ReportItem]):
    """Studies (id, report) whose image tokens are read from a :class:`TokenStore` on access."""

    def __init__(self, ids: Sequence[str], reports: Sequence[str], tokens: TokenStore) -> None:
        self.ids = list(ids)
        self.reports = list(reports)
        self.tokens = tokens

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> ReportItem:
        row_id = self.ids[index]
        return ReportItem(row_id, self.reports[index], self.tokens[row_id])
