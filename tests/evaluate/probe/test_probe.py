from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic_sets import FINDINGS, SyntheticSet

from raddino.evaluate.probe import ProbeConfig, run_probe
from raddino.evaluate.probe.heads import HeadSpec, HeadTraining, masked_bce, train_linear_heads
from raddino.features.cache import FeatureConfig, FeatureError, FeatureTable


def _config(data: SyntheticSet, out: Path, embeddings: Path, **values: object) -> ProbeConfig:
    settings: dict[str, object] = {
        "input": str(data.manifest),
        "out": str(out),
        "features": FeatureConfig(embeddings=str(embeddings)),
        "lrs": [1e-2, 5e-2],
        "training": HeadTraining(epochs=30, batch_size=32),
        "seeds": [0, 1],
        "progress": False,
    }
    settings.update(values)
    return ProbeConfig(**settings)  # type: ignore[arg-type]


def test_masked_bce_ignores_missing_labels() -> None:
    logits = torch.tensor([[2.0, -1.0], [0.5, 3.0]])
    labels = torch.tensor([[1.0, float("nan")], [0.0, 1.0]])
    known = torch.tensor([2.0, 0.5, 3.0])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(known, torch.tensor([1.0, 0.0, 1.0]))
    assert masked_bce(logits, labels).item() == pytest.approx(expected.item())


def test_heads_trained_together_equal_heads_trained_alone() -> None:
    rng = np.random.default_rng(0)
    features = {"cls": torch.from_numpy(rng.normal(size=(40, 6)).astype(np.float32))}
    labels = torch.from_numpy((rng.random((40, 2)) < 0.5).astype(np.float32))
    labels[::3, 1] = float("nan")
    training = HeadTraining(epochs=3, batch_size=8)
    specs = [HeadSpec("cls", 1e-2), HeadSpec("cls", 1e-3)]
    together = train_linear_heads(features, labels, specs, training, seed=4, progress=False)
    alone = train_linear_heads(features, labels, specs[1:], training, seed=4, progress=False)
    assert torch.allclose(together.heads[1].weight, alone.heads[0].weight, atol=1e-6)
    assert not torch.allclose(together.heads[0].weight, together.heads[1].weight)


def test_batched_heads_match_torch_adamw_with_a_cosine_schedule() -> None:
    import math
    import zlib

    rng = np.random.default_rng(1)
    features = torch.from_numpy(rng.normal(size=(30, 5)).astype(np.float32))
    labels = torch.from_numpy((rng.random((30, 3)) < 0.4).astype(np.float32))
    labels[::4, 2] = float("nan")
    training = HeadTraining(epochs=4, batch_size=7, weight_decay=0.05, standardize=False)
    spec = HeadSpec("cls", 3e-2)
    ours = train_linear_heads({"cls": features}, labels, [spec], training, seed=2, progress=False).heads[0]
    # The reference: nn.Linear + torch.optim.AdamW + LambdaLR, same init and batch order.
    reference = torch.nn.Linear(5, 3)
    init = torch.Generator().manual_seed(2 * 1_000_003 + zlib.crc32(spec.name.encode()))
    with torch.no_grad():
        reference.weight.copy_(torch.randn(3, 5, generator=init) * 0.01)
        reference.bias.zero_()
    optimizer = torch.optim.AdamW(reference.parameters(), lr=spec.lr, weight_decay=0.05)
    total = 4 * math.ceil(30 / 7)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total))
    )
    order_generator = torch.Generator().manual_seed(2)
    for _ in range(4):
        order = torch.randperm(30, generator=order_generator)
        for start in range(0, 30, 7):
            batch = order[start : start + 7]
            loss = masked_bce(reference(features[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    assert torch.allclose(ours.weight, reference.weight, atol=1e-5)
    assert torch.allclose(ours.bias, reference.bias, atol=1e-5)


def test_epoch_features_replace_the_training_features_each_epoch() -> None:
    rng = np.random.default_rng(0)
    clean = {"cls": torch.from_numpy(rng.normal(size=(20, 4)).astype(np.float32))}
    labels = torch.from_numpy((rng.random((20, 1)) < 0.5).astype(np.float32))
    seen: list[int] = []

    def views(epoch: int) -> dict[str, torch.Tensor]:
        seen.append(epoch)
        return {"cls": clean["cls"] + 0.1 * epoch}

    training = HeadTraining(epochs=3, batch_size=5)
    augmented = train_linear_heads(clean, labels, [HeadSpec("cls", 1e-2)], training, 0, False, views)
    plain = train_linear_heads(clean, labels, [HeadSpec("cls", 1e-2)], training, 0, False)
    assert seen == [0, 1, 2]
    assert not torch.allclose(augmented.heads[0].weight, plain.heads[0].weight)


def test_feature_choices_concatenate_and_unknown_names_fail(synthetic_set: SyntheticSet) -> None:
    table = FeatureTable.load(synthetic_set.informative, ["cls+patch_mean"])
    assert table.matrix("cls+patch_mean").shape == (160, 32)
    assert np.array_equal(table.matrix("cls+patch_mean", ["img0003"])[0, :16], table.vectors["cls"][3])
    with pytest.raises(FeatureError, match="unknown feature"):
        FeatureTable.load(synthetic_set.informative, ["cls+pooled"])


def test_probe_separates_informative_from_random_features_and_writes_its_outputs(
    synthetic_set: SyntheticSet, tmp_path: Path
) -> None:
    good = run_probe(_config(synthetic_set, tmp_path / "good", synthetic_set.informative))
    bad = run_probe(_config(synthetic_set, tmp_path / "bad", synthetic_set.random))
    assert good.summary["macro_auprc"].mean > 0.85
    assert good.summary["macro_auprc"].mean > bad.summary["macro_auprc"].mean + 0.3
    assert good.summary["macro_auprc"].count == 2
    for suffix in ("json", "md", "csv", "png"):
        assert (tmp_path / "good" / f"probe.{suffix}").stat().st_size > 0
    assert (tmp_path / "good" / "probe_config.yaml").exists()
    payload = json.loads((tmp_path / "good" / "probe.json").read_text())
    assert payload["task"] == "probe"
    assert payload["encoder"] == "informative"
    assert payload["findings"] == list(FINDINGS)
    assert set(payload["summary"]) >= {"macro_auprc", "macro_auroc", "auprc/nodule"}
    assert len(payload["seeds"][0]["validation_macro_auprc"]) == 4  # 2 feature choices x 2 lrs
    assert "| **macro** |" in (tmp_path / "good" / "probe.md").read_text()


def test_probe_test_metrics_match_scikit_learn_on_the_test_split(
    synthetic_set: SyntheticSet, tmp_path: Path
) -> None:
    from raddino.evaluate.labelled import load_labelled

    config = _config(synthetic_set, tmp_path / "run", synthetic_set.informative, seeds=[0])
    result = run_probe(config)
    data = load_labelled(config.input, config.features, config.feature_choices)
    test_ids = {data.ids[i] for i in data.splits.test}
    subjects = {row["subject_id"] for row in synthetic_set.rows if row["id"] in test_ids}
    train_subjects = {
        row["subject_id"]
        for row in synthetic_set.rows
        if row["id"] in {data.ids[i] for i in data.splits.train}
    }
    assert not subjects & train_subjects
    seed = result.seeds[0]
    # The recorded per-finding AUPRCs average to the recorded macro value.
    values = [value for value in seed["test"]["auprc"].values() if value is not None]
    assert seed["test"]["macro_auprc"] == pytest.approx(np.mean(values))


def test_same_seed_same_numbers_and_finished_seeds_are_reused(
    synthetic_set: SyntheticSet, tmp_path: Path
) -> None:
    first = run_probe(_config(synthetic_set, tmp_path / "a", synthetic_set.informative, seeds=[3]))
    second = run_probe(_config(synthetic_set, tmp_path / "b", synthetic_set.informative, seeds=[3]))
    assert first.summary["macro_auprc"].mean == second.summary["macro_auprc"].mean
    seed_file = tmp_path / "a" / "seeds" / "seed-3.json"
    stamp = seed_file.stat().st_mtime_ns
    run_probe(_config(synthetic_set, tmp_path / "a", synthetic_set.informative, seeds=[3]))
    assert seed_file.stat().st_mtime_ns == stamp  # reused, not recomputed
    run_probe(_config(synthetic_set, tmp_path / "a", synthetic_set.informative, seeds=[3], lrs=[1e-2]))
    assert seed_file.stat().st_mtime_ns != stamp  # other settings: recomputed


def test_sklearn_mode(synthetic_set: SyntheticSet, tmp_path: Path) -> None:
    result = run_probe(
        _config(
            synthetic_set,
            tmp_path / "sk",
            synthetic_set.informative,
            method="sklearn",
            seeds=[0],
            sklearn_cs=[0.1, 1.0],
        )
    )
    assert result.summary["macro_auprc"].mean > 0.85
    assert result.seeds[0]["selected"].startswith(("cls C=", "cls+patch_mean C="))


def test_sklearn_is_fitted_once_and_reports_no_spread(synthetic_set: SyntheticSet, tmp_path: Path) -> None:
    """Five identical refits used to print "± 0.0000 over 5 seeds": the one fit is reported as one."""
    out = tmp_path / "sk"
    config = _config(
        synthetic_set,
        out,
        synthetic_set.informative,
        method="sklearn",
        seeds=[0, 1, 2, 3, 4],
        sklearn_cs=[1.0],
    )
    result = run_probe(config)
    assert [seed["seed"] for seed in result.seeds] == [0]
    assert sorted(path.name for path in (out / "seeds").iterdir()) == ["seed-0.json"]
    macro_auprc = result.summary["macro_auprc"]
    assert macro_auprc.count == 1
    assert np.isnan(macro_auprc.std)
    assert "one deterministic fit" in str(result)
    assert "±" not in str(result)
    written = json.loads((out / "probe.json").read_text())
    assert written["deterministic"] is True
    assert written["summary"]["macro_auprc"]["std"] is None
    markdown = (out / "probe.md").read_text()
    assert "one fit (deterministic: seeds do not change it)" in markdown
    assert "±" not in markdown
    assert "over 5 seed" not in markdown
