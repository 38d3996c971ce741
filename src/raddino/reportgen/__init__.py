"""Radiology report generation from a frozen encoder (paper §4.5, Table 5): a LLaVA-style projector feeding
a causal language model, trained on stored image tokens, decoded greedily and scored with ROUGE-L and BLEU-4.

A model with its own training (on :mod:`raddino.training`'s engine), LoRA adapters and checkpoints, so a
package of its own beside :mod:`raddino.evaluate`; here "report" always means a radiology report (the
demo's HTML page is :mod:`raddino.viz.page`).

Modules: ``model`` (projector, generator, prompt), ``data`` (collation, stored tokens), ``studies``
(manifest rows + feature cache), ``language_model`` (loading; local tokenizer and test-sized LM),
``lora`` (peft adapters), ``train`` and ``steps`` (optimiser step, validation), ``generate``, ``score``,
``checkpoint``.
"""

from raddino.reportgen.checkpoint import ReportModelInfo, load_report_model
from raddino.reportgen.data import PromptLayout, ReportCollator, prompt_layout
from raddino.reportgen.generate import ReportGenerateConfig, generate_reports, greedy_reports
from raddino.reportgen.language_model import (
    build_causal_lm,
    load_language_model,
    train_report_tokenizer,
)
from raddino.reportgen.lora import LoraSettings
from raddino.reportgen.model import IGNORE_INDEX, PROMPT, Projector, ReportGenerator
from raddino.reportgen.score import ReportScores, markdown_table, score_reports
from raddino.reportgen.studies import StudySelection
from raddino.reportgen.train import ReportTrainConfig, train_report_model

__all__ = [
    "IGNORE_INDEX",
    "PROMPT",
    "LoraSettings",
    "Projector",
    "PromptLayout",
    "ReportCollator",
    "ReportGenerateConfig",
    "ReportGenerator",
    "ReportModelInfo",
    "ReportScores",
    "ReportTrainConfig",
    "StudySelection",
    "build_causal_lm",
    "generate_reports",
    "greedy_reports",
    "load_language_model",
    "load_report_model",
    "markdown_table",
    "prompt_layout",
    "score_reports",
    "train_report_model",
    "train_report_tokenizer",
]
