"""``raddino report score``: the paper's report-generation metrics with bootstrap confidence intervals.

ROUGE-L (``rouge-score``, F-measure averaged over studies) and BLEU-4 (``sacrebleu``, corpus level) are
reported ×100 as median and 95% percentile interval over 500 bootstrap resamples of the studies
(``scipy.stats.bootstrap``), as in the paper's Table 5. CheXbert Macro-F1-14 (``f1chexbert``) and RadGraph
F1 (``radgraph``) are added when those packages are installed and can load their weights; otherwise the
table says why they are missing.
"""

from __future__ import annotations

import csv
import importlib.util
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU
from scipy import stats

from raddino.io.atomic import atomic_write_text

logger = logging.getLogger(__name__)

# Column order of the paper's Table 5.
METRIC_COLUMNS = ("ROUGE-L", "BLEU-4", "RadGraph F1", "CheXbert Macro-F1-14")


@dataclass
class ReportScoreConfig:
    """Settings of ``raddino report score``."""

    generated: list[str] = field(default_factory=list)
    """CSV files written by ``raddino report generate`` (``reference`` and ``generated`` columns)."""
    names: list[str] = field(default_factory=list)
    """Row name per CSV, in order (default: each file's stem)."""
    out: str = ""
    """Markdown file the table is also written to (optional)."""
    samples: int = 500
    """Bootstrap resamples of the studies (the paper's 500)."""
    seed: int = 0
    """Seed of the bootstrap resampling."""

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"samples must be at least 1, got {self.samples}")


@dataclass
class MetricEstimate:
    """A metric on the whole set and the median and 95% interval of its bootstrap distribution."""

    value: float
    median: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.median:.1f} [{self.low:.1f}, {self.high:.1f}]"


@dataclass
class ReportScores:
    """Scores of one generated-reports CSV."""

    name: str
    count: int
    metrics: dict[str, MetricEstimate] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    """Why optional metrics are missing."""


def read_generated(path: str | Path) -> tuple[list[str], list[str]]:
    """References and generated texts of a ``raddino report generate`` CSV."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = {"reference", "generated"} - set(reader.fieldnames or [])
            if missing:
                raise ValueError(
                    f"{path}: missing column(s) {sorted(missing)}; expected id,reference,generated"
                )
            rows = list(reader)
    except OSError as error:
        raise ValueError(f"{path}: cannot read ({error.strerror or error})") from error
    if not rows:
        raise ValueError(f"{path}: no reports to score")
    return [row["reference"] or "" for row in rows], [row["generated"] or "" for row in rows]


def rouge_l(references: Sequence[str], generated: Sequence[str]) -> np.ndarray:
    """Per-study ROUGE-L F-measure ×100 (``rouge-score`` with stemming, as usual for reports)."""
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return np.array(
        [
            100.0 * scorer.score(ref, gen)["rougeL"].fmeasure
            for ref, gen in zip(references, generated, strict=True)
        ]
    )


def bleu4(references: Sequence[str], generated: Sequence[str]) -> float:
    """Corpus BLEU-4 ×100 (``sacrebleu``'s defaults: 13a tokenisation, exponential smoothing)."""
    return float(BLEU().corpus_score(list(generated), [list(references)]).score)


def bootstrap(
    statistic: Callable[[np.ndarray], float],
    count: int,
    samples: int = 500,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Median and 95% percentile interval of ``statistic(indices)`` over resamples with replacement.

    ``scipy.stats.bootstrap`` with ``method="percentile"`` (the paper reports the percentile interval of
    the bootstrap distribution, not BCa, whose jackknife would score every study ``count`` more times).
    The statistic takes the resampled study indices, so a corpus-level metric (BLEU) is recomputed per
    resample. Resample ``b`` is row ``b`` of ``default_rng(seed).integers(0, count, (samples, count))``.
    """
    indices = np.arange(count)
    if count < 2:  # scipy needs two observations; every resample of one study is that study
        value = float(statistic(indices))
        return value, value, value
    result = stats.bootstrap(
        (indices,),
        lambda resampled: statistic(resampled.astype(np.int64)),
        n_resamples=samples,
        vectorized=False,
        confidence_level=0.95,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    median = float(np.median(result.bootstrap_distribution))
    return median, float(result.confidence_interval.low), float(result.confidence_interval.high)


def _optional_metrics(references: list[str], generated: list[str], notes: list[str]) -> dict[str, float]:
    """CheXbert and RadGraph point estimates when their packages (and weights) are available."""
    found: dict[str, float] = {}
    if importlib.util.find_spec("radgraph") is None:
        notes.append("RadGraph F1: package 'radgraph' is not installed (pip install radgraph)")
    else:
        try:
            from radgraph import F1RadGraph

            score = F1RadGraph(reward_level="partial")(hyps=generated, refs=references)[0]
            found["RadGraph F1"] = 100.0 * float(score)
        except Exception as error:  # weights missing or API changed: say so, keep the other metrics
            notes.append(f"RadGraph F1: could not run ({error})")
    if importlib.util.find_spec("f1chexbert") is None:
        notes.append("CheXbert Macro-F1-14: package 'f1chexbert' is not installed (pip install f1chexbert)")
    else:
        try:
            from f1chexbert import F1CheXbert

            report = F1CheXbert()(hyps=generated, refs=references)[2]
            found["CheXbert Macro-F1-14"] = 100.0 * float(report["macro avg"]["f1-score"])
        except Exception as error:
            notes.append(f"CheXbert Macro-F1-14: could not run ({error})")
    return found


def score_reports(
    path: str | Path, name: str | None = None, samples: int = 500, seed: int = 0, optional: bool = True
) -> ReportScores:
    """ROUGE-L and BLEU-4 of a generated-reports CSV with bootstrap medians and 95% intervals.

    Args:
        path: CSV with ``reference`` and ``generated`` columns.
        name: Row name in tables (default: the file's stem).
        samples: Bootstrap resamples (the paper's 500).
        seed: Seed of the resampling.
        optional: Also try CheXbert and RadGraph (point estimates; their interval equals the value).
    """
    references, generated = read_generated(path)
    result = ReportScores(name or Path(path).stem, len(references))
    rouge = rouge_l(references, generated)
    median, low, high = bootstrap(lambda idx: float(rouge[idx].mean()), len(rouge), samples, seed)
    result.metrics["ROUGE-L"] = MetricEstimate(float(rouge.mean()), median, low, high)
    bleu = lambda idx: bleu4([references[i] for i in idx], [generated[i] for i in idx])  # noqa: E731
    median, low, high = bootstrap(bleu, len(references), samples, seed)
    result.metrics["BLEU-4"] = MetricEstimate(bleu4(references, generated), median, low, high)
    if optional:
        for metric, value in _optional_metrics(references, generated, result.notes).items():
            result.metrics[metric] = MetricEstimate(value, value, value, value)
    return result


def markdown_table(results: Sequence[ReportScores]) -> str:
    """Table 5's layout: one row per encoder, median [95% CI] per metric, best median in bold."""
    columns = [metric for metric in METRIC_COLUMNS if any(metric in r.metrics for r in results)]
    best = {
        metric: max(r.metrics[metric].median for r in results if metric in r.metrics) for metric in columns
    }
    lines = [
        "| Image encoder | Studies | " + " | ".join(columns) + " |",
        "|---|---:|" + "---:|" * len(columns),
    ]
    for result in results:
        cells = []
        for metric in columns:
            estimate = result.metrics.get(metric)
            text = "–" if estimate is None else str(estimate)
            bold = estimate is not None and len(results) > 1 and estimate.median == best[metric]
            cells.append(f"**{text}**" if bold else text)
        lines.append(f"| {result.name} | {result.count} | " + " | ".join(cells) + " |")
    notes = sorted({note for result in results for note in result.notes})
    footer = ["", "Median [95% CI] over bootstrap resamples of the studies; scores ×100."]
    return "\n".join(lines + footer + [f"- {note}" for note in notes]) + "\n"


def score_files(config: ReportScoreConfig) -> str:
    """Score every CSV of ``config.generated`` and return Table 5's Markdown (also written to ``out``).

    Raises:
        ValueError: no CSV given, a ``names`` list of another length, or a CSV that cannot be scored; the
            message names the file.
    """
    if not config.generated:
        raise ValueError("no generated-reports CSV given: name the CSVs written by `raddino report generate`")
    if config.names and len(config.names) != len(config.generated):
        raise ValueError(f"{len(config.names)} names for {len(config.generated)} CSV files; give one per CSV")
    names: list[str | None] = [*config.names] or [None] * len(config.generated)
    results = [
        score_reports(path, name, config.samples, config.seed)
        for path, name in zip(config.generated, names, strict=True)
    ]
    table = markdown_table(results)
    if config.out:
        atomic_write_text(config.out, table)
    return table
