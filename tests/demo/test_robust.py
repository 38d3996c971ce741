"""The demo's rule for margins over pre-training seeds: a margin is "ahead" only when its mean over the seeds
exceeds its spread (max − min), and one seed never counts as ahead."""

from __future__ import annotations

import pytest

from raddino.demo.robust import count_ahead, headline, seed_margin, seed_margins


def test_a_margin_larger_than_its_spread_is_ahead() -> None:
    margin = seed_margin([0.05, 0.06, 0.07])
    assert margin.mean == pytest.approx(0.06)
    assert margin.spread == pytest.approx(0.02)
    assert margin.verdict == "ahead"


def test_the_readme_knn_margin_that_changed_sign_is_within_spread() -> None:
    # issue 17: kNN AUPRC +0.056 in one run, -0.038 in another; a third at +0.050
    margin = seed_margin([0.056, -0.038, 0.050])
    assert margin.mean == pytest.approx(0.068 / 3)
    assert margin.spread == pytest.approx(0.094)
    assert margin.verdict == "within spread"


def test_positive_on_every_seed_but_smaller_than_the_spread_is_not_ahead() -> None:
    # all three seeds positive, mean 0.04 < spread 0.07: a margin smaller than its spread
    margin = seed_margin([0.01, 0.03, 0.08])
    assert margin.verdict == "within spread"


def test_the_boundary_mean_equal_to_spread_is_not_ahead() -> None:
    # mean 0.5, spread 0.5 (values as exact binary fractions so the comparison is exact)
    assert seed_margin([0.25, 0.75, 0.5]).verdict == "within spread"
    assert seed_margin([0.25, 0.75, 0.625]).verdict == "ahead"  # mean 0.5417 > 0.5


def test_behind_mirrors_ahead() -> None:
    assert seed_margin([-0.05, -0.06, -0.07]).verdict == "behind"
    assert seed_margin([-0.01, -0.03, -0.08]).verdict == "within spread"


def test_one_seed_is_one_draw_never_ahead() -> None:
    margin = seed_margin([0.3])
    assert margin.spread is None
    assert margin.verdict == "one draw"
    assert margin.as_dict()["spread"] is None


def test_a_non_finite_or_missing_margin_is_refused() -> None:
    with pytest.raises(ValueError, match="not finite"):
        seed_margin([0.1, float("nan")])
    with pytest.raises(ValueError, match="at least one"):
        seed_margin([])


def test_margins_over_seeds_keep_only_metrics_every_seed_has_and_count_the_headline() -> None:
    per_seed = [
        {"probe": {"macro_auprc": 0.06, "auprc/nodule": 0.1}, "knn": {"macro_auprc": 0.05}},
        {"probe": {"macro_auprc": 0.07}, "knn": {"macro_auprc": -0.04}},
        {"probe": {"macro_auprc": 0.065}, "knn": {"macro_auprc": 0.05}},
    ]
    margins = seed_margins(per_seed)
    assert set(margins["probe"]) == {"macro_auprc"}  # the nodule AUPRC is missing from two seeds
    assert margins["probe"]["macro_auprc"].values == (0.06, 0.07, 0.065)
    assert count_ahead(margins, ["macro_auprc"]) == (1, 2)
    assert headline(margins, ["macro_auprc"], 3).startswith(
        "the pre-trained encoder is ahead on 1 of 2 over 3"
    )


def test_the_single_seed_headline_counts_nothing_as_ahead() -> None:
    margins = seed_margins([{"probe": {"macro_auprc": 0.06}, "knn": {"macro_auprc": -0.01}}])
    assert count_ahead(margins, ["macro_auprc"]) == (0, 2)
    text = headline(margins, ["macro_auprc"], 1)
    assert "none is counted as ahead" in text
    assert "positive in this one draw: 1 of 2" in text
