"""``raddino demo --seeds N``: further pre-training seeds, each against its own random init, and a margins
table whose verdicts follow the one rule of :mod:`raddino.demo.robust`."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

from raddino.cli import app
from raddino.demo import quick_plan, run_demo
from raddino.demo.page import margins_from_results
from raddino.demo.robust import seed_margin
from raddino.viz.page import parse_markdown_tables


@pytest.mark.slow
def test_two_seeds_pair_each_pretraining_run_with_its_own_init_and_the_page_applies_the_rule(tmp_path):
    out = tmp_path / "demo"
    result = run_demo(out, quick_plan(ablation=False), seed=1, seeds=2)
    # 19 steps of one seed without the ablation, plus pretrain, random init and 2 × 4 evaluations
    assert len(result.ran) == 29
    assert result.seeds == (1, 2)

    first = margins_from_results(
        {"pre-trained": out / "eval" / "pretrained", "random init": out / "eval" / "random"}
    )
    second = margins_from_results(
        {
            n: out / "seeds" / "seed2" / "eval" / f
            for n, f in (("pre-trained", "pretrained"), ("random init", "random"))
        }
    )
    summary = json.loads((out / "demo.json").read_text(encoding="utf-8"))
    assert summary["seeds"] == [1, 2]
    auprc = summary["seed_margins"]["probe"]["macro_auprc"]
    assert auprc["values"] == [first["probe"]["macro_auprc"], second["probe"]["macro_auprc"]]
    assert auprc["verdict"] == seed_margin(auprc["values"]).verdict
    assert summary["margins"]["probe"]["macro_auprc"] == pytest.approx(sum(auprc["values"]) / 2, abs=1e-4)

    # the second seed starts from its own initialisation, not the first seed's
    weights = [
        load_file(out / p / "model.safetensors") for p in ("models/random", "seeds/seed2/models/random")
    ]
    name = next(k for k in weights[0] if k.endswith("query.weight"))
    assert not (weights[0][name] == weights[1][name]).all()

    markdown = (out / "report.md").read_text(encoding="utf-8")
    table = next(t for t in parse_markdown_tables(markdown) if t.header[:2] == ["task", "metric"])
    assert "over 2 pre-training seeds" in markdown
    for task, column, mean, per_seed, spread, verdict in table.rows:
        values = [float(v) for v in per_seed.split(" / ")]
        assert len(values) == 2
        assert verdict == seed_margin(summary["seed_margins"][task][column]["values"]).verdict
        assert float(spread) == pytest.approx(max(values) - min(values), abs=2e-3)
        assert float(mean) == pytest.approx(sum(values) / 2, abs=2e-3)

    again = run_demo(out, quick_plan(ablation=False), seed=1, seeds=2)
    assert (len(again.ran), len(again.skipped)) == (0, 29)


def test_zero_seeds_is_one_line_before_anything_runs(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--out", str(out), "--quick", "--seeds", "0"])
    assert result.exit_code != 0
    assert "--seeds: 0" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()
    with pytest.raises(ValueError, match="at least one pre-training seed"):
        run_demo(out, quick_plan(), seeds=0)
