"""The report metrics' bootstrap is scipy's percentile bootstrap over resampled study indices."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from raddino.reportgen.score import bleu4, bootstrap

REFERENCES = ["no acute cardiopulmonary process", "small left pleural effusion", "cardiomegaly is stable"]
GENERATED = ["no acute process", "left pleural effusion is small", "stable cardiomegaly"]


def test_interval_equals_the_percentiles_of_the_same_resamples_and_scipys() -> None:
    scores = np.random.default_rng(0).normal(30.0, 8.0, size=40)  # per-study ROUGE-like scores

    def mean_score(indices: np.ndarray) -> float:
        return float(scores[indices].mean())

    median, low, high = bootstrap(mean_score, len(scores), samples=300, seed=7)
    resamples = np.random.default_rng(7).integers(0, len(scores), (300, len(scores)))  # (B, N) indices
    distribution = np.array([mean_score(row) for row in resamples])
    assert (median, low, high) == (
        float(np.median(distribution)),
        *(float(q) for q in np.percentile(distribution, [2.5, 97.5])),
    )
    reference = stats.bootstrap(
        (scores,), np.mean, n_resamples=300, method="percentile", random_state=np.random.default_rng(7)
    )
    assert low == pytest.approx(reference.confidence_interval.low, abs=1e-12)
    assert high == pytest.approx(reference.confidence_interval.high, abs=1e-12)


def test_corpus_bleu_is_recomputed_on_every_resample() -> None:
    references, generated = REFERENCES * 4, GENERATED * 4

    def corpus_bleu(indices: np.ndarray) -> float:
        return bleu4([references[i] for i in indices], [generated[i] for i in indices])

    median, low, high = bootstrap(corpus_bleu, len(references), samples=50, seed=1)
    resamples = np.random.default_rng(1).integers(0, len(references), (50, len(references)))
    distribution = [corpus_bleu(row) for row in resamples]
    assert low == pytest.approx(float(np.percentile(distribution, 2.5)))
    assert median == pytest.approx(float(np.median(distribution)))
    assert low < high


def test_a_single_study_has_a_zero_width_interval() -> None:
    assert bootstrap(lambda indices: float(indices.sum() + 12.5), 1, samples=10) == (12.5, 12.5, 12.5)
