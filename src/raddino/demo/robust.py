"""Which of the demo's margins hold over pre-training seeds: the one rule the page, the command's summary and
``benchmarks/demo.py`` use.

A margin is the pre-trained encoder's mean minus the random-init encoder's mean on one metric, measured once
per pre-training seed (each seed's random-init encoder is that seed's starting point, so the pairs share
their initialisation). Over the seeds' margins ``m_1 … m_n``:

- the **spread** is their range, ``max(m) − min(m)`` (0 spread is never claimed from one seed: with
  ``n = 1`` the spread is unknown);
- the margin is **ahead** when ``n ≥ 2`` and ``mean(m) > spread``, **behind** when ``mean(m) < −spread``,
  and **within spread** otherwise; with one seed it is **one draw**, neither ahead nor behind.

``mean > max − min`` implies ``min > 0`` (as ``mean ≤ max``), so an "ahead" margin is positive on every seed
and its mean clears the whole range the seeds showed; a margin smaller than its spread is never counted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

Verdict = Literal["ahead", "behind", "within spread", "one draw"]


@dataclass(frozen=True)
class SeedMargin:
    """One metric's margin over the pre-training seeds.

    Attributes:
        values: The margin on each seed, in seed order.
        mean: Their mean.
        spread: ``max − min`` of ``values``; ``None`` with a single seed.
        verdict: The module's rule applied to ``mean`` and ``spread``.
    """

    values: tuple[float, ...]
    mean: float
    spread: float | None
    verdict: Verdict

    def as_dict(self) -> dict[str, object]:
        """JSON form: values, mean, min, max, spread and verdict (4 decimals)."""
        return {
            "values": [round(v, 4) for v in self.values],
            "mean": round(self.mean, 4),
            "min": round(min(self.values), 4),
            "max": round(max(self.values), 4),
            "spread": None if self.spread is None else round(self.spread, 4),
            "verdict": self.verdict,
        }


def seed_margin(values: Sequence[float]) -> SeedMargin:
    """Apply the rule to one metric's per-seed margins.

    Raises:
        ValueError: No values, or a value that is not finite.
    """
    if not values:
        raise ValueError("a margin needs at least one seed's value")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"a margin is not finite: {list(values)}")
    mean = sum(values) / len(values)
    if len(values) < 2:
        return SeedMargin(tuple(values), mean, None, "one draw")
    spread = max(values) - min(values)
    verdict: Verdict = "ahead" if mean > spread else "behind" if mean < -spread else "within spread"
    return SeedMargin(tuple(values), mean, spread, verdict)


def seed_margins(
    per_seed: Sequence[Mapping[str, Mapping[str, float]]],
) -> dict[str, dict[str, SeedMargin]]:
    """Task → metric → :class:`SeedMargin` from each seed's ``task → metric → margin``.

    A metric missing from one seed's results (a finding absent from a split) is left out, so every kept
    margin has a value from every seed.
    """
    if not per_seed:
        return {}
    result: dict[str, dict[str, SeedMargin]] = {}
    for task, columns in per_seed[0].items():
        for column in columns:
            values = [seed.get(task, {}).get(column) for seed in per_seed]
            if all(v is not None for v in values):
                result.setdefault(task, {})[column] = seed_margin([float(v) for v in values if v is not None])
    return result


def count_ahead(margins: Mapping[str, Mapping[str, SeedMargin]], metrics: Sequence[str]) -> tuple[int, int]:
    """``(ahead, total)`` over the margins whose metric is in ``metrics``: the page's headline numbers."""
    chosen = [m for columns in margins.values() for c, m in columns.items() if c in metrics]
    return sum(m.verdict == "ahead" for m in chosen), len(chosen)


def headline(margins: Mapping[str, Mapping[str, SeedMargin]], metrics: Sequence[str], seeds: int) -> str:
    """The sentence the page and the command print, e.g. "ahead on 5 of 8 over 3 pre-training seeds"."""
    ahead, total = count_ahead(margins, metrics)
    if seeds < 2:
        positive = sum(m.mean > 0 for cols in margins.values() for c, m in cols.items() if c in metrics)
        return (
            f"one pre-training seed, so no margin's spread is measured and none is counted as ahead "
            f"(positive in this one draw: {positive} of {total}; `--seeds 3` shows which hold)"
        )
    return (
        f"the pre-trained encoder is ahead on {ahead} of {total} over {seeds} pre-training seeds "
        "(ahead: the mean margin exceeds its spread, max − min over the seeds)"
    )
