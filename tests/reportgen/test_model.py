"""Projector, prompt layout, label masking and the loss of the report generator."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from raddino.reportgen import (
    IGNORE_INDEX,
    PROMPT,
    Projector,
    ReportCollator,
    ReportGenerator,
    load_language_model,
    prompt_layout,
)
from raddino.reportgen.data import ReportItem

N_IMAGE, D_VISION = 16, 24


def _items(texts: list[str], seed: int = 0) -> list[ReportItem]:
    generator = torch.Generator().manual_seed(seed)
    return [
        ReportItem(f"s{i}", text, torch.randn(N_IMAGE, D_VISION, generator=generator))
        for i, text in enumerate(texts)
    ]


def test_projector_is_linear_gelu_linear_to_the_lm_width() -> None:
    projector = Projector(D_VISION, 32)
    layers = list(projector.layers)
    assert [type(layer) for layer in layers] == [nn.Linear, nn.GELU, nn.Linear]
    assert (layers[0].in_features, layers[0].out_features, layers[2].out_features) == (D_VISION, 32, 32)
    assert projector(torch.randn(3, N_IMAGE, D_VISION)).shape == (3, N_IMAGE, 32)


def test_prompt_and_image_positions_are_never_in_the_labels(
    tiny_lm_dir: Path, report_texts: list[str]
) -> None:
    _, tokenizer = load_language_model(tiny_lm_dir)
    layout = prompt_layout(tokenizer, N_IMAGE)
    assert layout.before_ids[0] == tokenizer.bos_token_id
    assert tokenizer.decode(layout.after_ids).strip() == PROMPT.removeprefix("<image>").strip()
    batch = ReportCollator(tokenizer, layout, "train")(
        _items([report_texts[0], report_texts[-1] + " " + report_texts[1]])
    )
    for row, text in enumerate([report_texts[0], report_texts[-1] + " " + report_texts[1]]):
        labels = batch.labels[row]
        prompt_end = layout.length
        # the image positions sit between bos and the prompt's text
        image = batch.image_mask[row].nonzero().squeeze(1)
        assert image.tolist() == list(range(len(layout.before_ids), len(layout.before_ids) + N_IMAGE))
        assert (labels[:prompt_end] == IGNORE_INDEX).all()
        learnt = labels[labels != IGNORE_INDEX]
        assert learnt[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(learnt[:-1]).strip() == text
        # labels equal the inputs where learnt (transformers shifts them inside the loss)
        real = batch.attention_mask[row].bool()
        assert torch.equal(labels[real][prompt_end:], batch.input_ids[row][real][prompt_end:])
        assert (labels[~real] == IGNORE_INDEX).all()


def test_generation_batches_are_prompt_only(tiny_lm_dir: Path, report_texts: list[str]) -> None:
    _, tokenizer = load_language_model(tiny_lm_dir)
    layout = prompt_layout(tokenizer, N_IMAGE)
    batch = ReportCollator(tokenizer, layout, "generate")(_items(report_texts[:3]))
    assert batch.labels is None
    assert batch.input_ids.shape == (3, layout.length)
    assert batch.attention_mask.all()
    assert batch.reports == report_texts[:3]


def test_wrong_number_of_image_tokens_names_the_study(tiny_lm_dir: Path) -> None:
    _, tokenizer = load_language_model(tiny_lm_dir)
    collate = ReportCollator(tokenizer, prompt_layout(tokenizer, N_IMAGE + 1), "train")
    with pytest.raises(ValueError, match="s0: 16 image tokens, expected 17"):
        collate(_items(["Heart size is normal."]))


def test_loss_covers_the_report_only_and_reads_the_image(tiny_lm_dir: Path, report_texts: list[str]) -> None:
    language_model, tokenizer = load_language_model(tiny_lm_dir)
    torch.manual_seed(0)
    model = ReportGenerator(Projector(D_VISION, 32), language_model)
    layout = prompt_layout(tokenizer, N_IMAGE)
    batch = ReportCollator(tokenizer, layout, "train")(_items([report_texts[0], report_texts[3] + " More."]))
    loss = model(batch.input_ids, batch.attention_mask, batch.image_mask, batch.image_tokens, batch.labels)

    # the same loss by hand: projected image tokens spliced in, cross-entropy of next tokens on the report
    embeddings = language_model.get_input_embeddings()(batch.input_ids).clone()  # (B, T, D)
    for row in range(2):
        embeddings[row, batch.image_mask[row]] = model.projector(batch.image_tokens[row])
    positions = (batch.attention_mask.cumsum(1) - 1).clamp(min=0)
    logits = language_model(
        inputs_embeds=embeddings, attention_mask=batch.attention_mask, position_ids=positions
    ).logits
    targets = batch.labels[:, 1:]
    expected = nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1))
    torch.testing.assert_close(loss, expected)

    # the image changes the loss; gradients reach the projector
    other = model(
        batch.input_ids,
        batch.attention_mask,
        batch.image_mask,
        torch.zeros_like(batch.image_tokens),
        batch.labels,
    )
    assert not torch.isclose(loss, other)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.projector.parameters())


def test_projector_width_must_match_the_lm(tiny_lm_dir: Path) -> None:
    language_model, _ = load_language_model(tiny_lm_dir)
    with pytest.raises(ValueError, match="projector output width 48"):
        ReportGenerator(Projector(D_VISION, 48), language_model)


@pytest.mark.slow
def test_trained_generator_writes_the_report_its_image_calls_for(report_texts: list[str]) -> None:
    from raddino.reportgen import build_causal_lm, greedy_reports, train_report_tokenizer

    torch.manual_seed(0)
    reports = [report_texts[0], report_texts[3]]  # normal study / enlarged heart with effusion
    tokenizer = train_report_tokenizer(reports * 4, vocab_size=300)
    model = ReportGenerator(Projector(8, 32), build_causal_lm(tokenizer, hidden_size=32, num_heads=2))
    patterns = torch.randn(2, 2, 8)  # one image-token pattern per kind of study, (kinds, N, D)
    items = [
        ReportItem(f"s{i}", reports[i % 2], patterns[i % 2] + 0.3 * torch.randn(2, 8)) for i in range(16)
    ]
    layout = prompt_layout(tokenizer, 2)
    batch = ReportCollator(tokenizer, layout, "train")(items)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(80):
        loss = model(
            batch.input_ids, batch.attention_mask, batch.image_mask, batch.image_tokens, batch.labels
        )
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    unseen = [ReportItem(f"t{kind}", "", patterns[kind] + 0.3 * torch.randn(2, 8)) for kind in (0, 1, 1, 0)]
    generated = greedy_reports(model, tokenizer, ReportCollator(tokenizer, layout, "generate")(unseen), 40)
    texts = [text.strip() for text in tokenizer.batch_decode(generated, skip_special_tokens=True)]
    assert texts == [reports[0], reports[1], reports[1], reports[0]]
