"""Greedy decoding limits and parity, and the metrics against the libraries' own numbers."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from rouge_score import rouge_scorer
from sacrebleu import corpus_bleu

from raddino.reportgen import (
    Projector,
    ReportCollator,
    ReportGenerator,
    greedy_reports,
    load_language_model,
    markdown_table,
    prompt_layout,
    score_reports,
)
from raddino.reportgen.data import ReportItem
from raddino.reportgen.score import bleu4, bootstrap, rouge_l


def _batch(tiny_lm_dir: Path, count: int = 3):
    language_model, tokenizer = load_language_model(tiny_lm_dir)
    torch.manual_seed(1)
    with torch.no_grad():  # a livelier random LM than the saved one: varied greedy tokens
        for parameter in language_model.parameters():
            parameter.normal_(0, 0.5)
    model = ReportGenerator(Projector(24, 32), language_model).eval()
    items = [ReportItem(f"s{i}", "", torch.randn(16, 24)) for i in range(count)]
    batch = ReportCollator(tokenizer, prompt_layout(tokenizer, 16), "generate")(items)
    return model, tokenizer, batch


def test_greedy_decoding_stops_at_the_limit_and_matches_a_step_by_step_argmax(tiny_lm_dir: Path) -> None:
    model, tokenizer, batch = _batch(tiny_lm_dir)
    for limit in (1, 4):
        generated = greedy_reports(model, tokenizer, batch, max_new_tokens=limit)
        assert all(len(ids) <= limit for ids in generated)
    generated = greedy_reports(model, tokenizer, batch, max_new_tokens=6)
    # reference: recompute the whole sequence at every step (no cache) and take the argmax
    with torch.no_grad():
        embeddings = model.embed_inputs(batch.input_ids, batch.image_mask, batch.image_tokens)
        table = model.language_model.get_input_embeddings()
        for row in range(batch.input_ids.shape[0]):
            sequence, expected = embeddings[row : row + 1], []
            for _ in range(6):
                next_id = int(model.language_model(inputs_embeds=sequence).logits[0, -1].argmax())
                if next_id == tokenizer.eos_token_id:
                    break
                expected.append(next_id)
                sequence = torch.cat([sequence, table(torch.tensor([[next_id]]))], dim=1)
            assert generated[row] == expected
    assert len({tuple(ids) for ids in generated}) > 1  # the image tokens steer the text


REFERENCES = [
    "The heart is enlarged. No pleural effusion.",
    "Heart size is normal. There is a left pleural effusion.",
    "No pneumothorax. The lungs are clear.",
    "Heart size is normal. No pleural effusion. No pneumothorax.",
]
GENERATED = [
    "The heart is enlarged. There is a small pleural effusion.",
    "Heart size is normal. No pleural effusion.",
    "No pneumothorax. The lungs are clear.",
    "The heart is normal in size.",
]


def test_metrics_equal_the_libraries_own() -> None:
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    expected = [
        100 * scorer.score(r, g)["rougeL"].fmeasure for r, g in zip(REFERENCES, GENERATED, strict=True)
    ]
    np.testing.assert_allclose(rouge_l(REFERENCES, GENERATED), expected)
    assert rouge_l(REFERENCES[2:3], GENERATED[2:3])[0] == pytest.approx(100.0)
    assert bleu4(REFERENCES, GENERATED) == pytest.approx(corpus_bleu(GENERATED, [REFERENCES]).score)
    assert bleu4(REFERENCES, REFERENCES) == pytest.approx(100.0)


def _write(path: Path, references: list[str], generated: list[str]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "reference", "generated"])
        writer.writerows([f"s{i}", r, g] for i, (r, g) in enumerate(zip(references, generated, strict=True)))
    return path


def test_bootstrap_intervals_contain_the_point_estimate_and_table_layout(tmp_path: Path) -> None:
    references, generated = REFERENCES * 10, GENERATED * 10
    good = score_reports(_write(tmp_path / "good.csv", references, generated), name="encoder A", samples=200)
    for metric in ("ROUGE-L", "BLEU-4"):
        estimate = good.metrics[metric]
        assert estimate.low <= estimate.value <= estimate.high
        assert estimate.low <= estimate.median <= estimate.high
        assert estimate.high - estimate.low > 0
    assert good.metrics["ROUGE-L"].value == pytest.approx(float(np.mean(rouge_l(references, generated))))
    shuffled = generated[1:] + generated[:1]
    worse = score_reports(_write(tmp_path / "worse.csv", references, shuffled), samples=200)
    table = markdown_table([good, worse])
    header, _, row_a, row_b = table.splitlines()[:4]
    assert header.startswith("| Image encoder | Studies | ROUGE-L | BLEU-4 |")
    assert row_a.startswith("| encoder A | 40 | **")
    assert row_b.startswith("| worse | 40 | ")
    assert "**" not in row_b
    if "CheXbert Macro-F1-14" not in good.metrics:
        assert "CheXbert Macro-F1-14: package 'f1chexbert' is not installed" in table


def test_bootstrap_is_seeded() -> None:
    values = np.arange(50, dtype=float)
    first = bootstrap(lambda idx: float(values[idx].mean()), 50, samples=100, seed=3)
    assert first == bootstrap(lambda idx: float(values[idx].mean()), 50, samples=100, seed=3)
    assert first[1] < values.mean() < first[2]


def test_scoring_a_csv_without_the_columns_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("id,text\ns0,hello\n")
    with pytest.raises(ValueError, match=r"bad\.csv: missing column\(s\) \['generated', 'reference'\]"):
        score_reports(path)


def test_zero_image_ablation_writes_one_text_for_every_study(tiny_lm_dir: Path) -> None:
    model, tokenizer, batch = _batch(tiny_lm_dir)
    items = [ReportItem(f"s{i}", "", batch.image_tokens[i]) for i in range(3)]
    blind = ReportCollator(tokenizer, prompt_layout(tokenizer, 16), "generate", zero_images=True)(items)
    assert not blind.image_tokens.any()
    generated = greedy_reports(model, tokenizer, blind, max_new_tokens=6)
    assert generated[0] == generated[1] == generated[2]
