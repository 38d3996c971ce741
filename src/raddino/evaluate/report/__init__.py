"""Report generation from a frozen encoder (paper §4.5, Table 5): a LLaVA-style projector feeding a causal
language model, trained on stored image tokens, decoded greedily and scored with ROUGE-L and BLEU-4.

Modules: ``model`` (projector, generator, prompt), ``data`` (collation, stored tokens), ``studies``
(manifest rows + feature cache), ``language_model`` (loading; local tokenizer and test-sized LM),
``lora`` (peft adapters), ``train`` and ``steps`` (optimiser step, validation), ``generate``, ``score``,
``checkpoint``.
"""

from raddino.evaluate.report.checkpoint import ReportModelInfo, load_report_model
from raddino.evaluate.report.data import PromptLayout, ReportCollator, prompt_layout
from raddino.evaluate.report.generate import ReportGenerateConfig, generate_reports, greedy_reports
from raddino.evaluate.report.language_model import (
    build_causal_lm,
    load_language_model,
    train_report_tokenizer,
)
from raddino.evaluate.report.lora import LoraSettings
from raddino.evaluate.report.model import IGNORE_INDEX, PROMPT, Projector, ReportGenerator
from raddino.evaluate.report.score import ReportScores, markdown_table, score_reports
from raddino.evaluate.report.studies import StudySelection
from raddino.evaluate.report.train import ReportTrainConfig, train_report_model

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
