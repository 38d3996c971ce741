"""The optimiser recipe and the loss: lr per depth and for the head as configured, warm-up + cosine,
masked BCE with positive weights, the micro-batch shares of a distributed step, the augmentations."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from raddino.finetune import FinetuneAugment, FinetuneConfig
from raddino.finetune.augment import augment_batch
from raddino.finetune.data import load_finetune_data, preprocess_for
from raddino.finetune.task import FinetuneTaskRunner, classification_loss, positive_weights, rank_share
from raddino.io.failures import FailureLog
from raddino.training.distributed import DistributedContext

CPU = DistributedContext(0, 1, 0, torch.device("cpu"))


def _task(config: FinetuneConfig, mode: str) -> tuple[FinetuneTaskRunner, torch.optim.Optimizer]:
    data = load_finetune_data(config, preprocess_for(config), FailureLog(Path(config.out) / "errors.csv"))
    task = FinetuneTaskRunner(config, mode, data, CPU)  # type: ignore[arg-type]
    optimization = task.build(CPU.device)
    step = task.steps_per_epoch  # the first step after the one-epoch warm-up: the peak lr
    optimization.apply_schedules(optimization.optimizer, optimization.schedules.at(step))
    return task, optimization.optimizer


def test_learning_rate_per_depth_and_head_as_configured(make_config: Callable[..., FinetuneConfig]) -> None:
    config = make_config(
        lr=1e-3, layerwise_decay=0.5, head_lr_mult=10.0, patch_embed_lr_mult=0.2, warmup_epochs=1.0, epochs=2
    )
    task, optimizer = _task(config, "full")
    blocks = len(task.network.encoder.blocks)  # 2: depths 0 (embeddings), 1, 2 (blocks), 3 (final norm)
    peak = 1e-3  # cosine step 0 after the warm-up
    expected = {
        "encoder.embeddings": peak * 0.5 ** (blocks + 1),
        "encoder.patch_embed": peak * 0.5**3 * 0.2,
        "encoder.layer0": peak * 0.5**2,
        "encoder.layer1": peak * 0.5,
        "encoder.final": peak,
        "head": peak * 10,
    }
    seen = {}
    for group in optimizer.param_groups:
        scope = group["name"].split("/")[0]
        seen[scope] = group["lr"]
        assert group["lr"] == pytest.approx(expected[scope], rel=1e-9), group["name"]
        decayed = group["name"].endswith("/decay")
        assert group["weight_decay"] == (config.weight_decay if decayed else 0.0), group["name"]
    assert set(seen) == set(expected)


def test_last_k_optimises_only_the_last_blocks_and_the_head(
    make_config: Callable[..., FinetuneConfig],
) -> None:
    _, optimizer = _task(make_config(), "last-k")
    assert {g["name"].split("/")[0] for g in optimizer.param_groups} == {
        "encoder.layer1",
        "encoder.final",
        "head",
    }


def test_warmup_then_cosine(make_config: Callable[..., FinetuneConfig]) -> None:
    config = make_config(lr=1e-3, min_lr_ratio=0.1, warmup_epochs=1.0, epochs=2)
    data = load_finetune_data(config, preprocess_for(config), FailureLog(Path(config.out) / "e.csv"))
    task = FinetuneTaskRunner(config, "frozen", data, CPU)
    rates = task.build(CPU.device).schedules.arrays["learning_rate"]  # type: ignore[attr-defined]
    warm = task.steps_per_epoch
    assert rates[0] < rates[warm - 1] <= 1e-3
    assert rates[warm] == pytest.approx(1e-3)
    assert np.all(np.diff(rates[warm:]) < 0)
    assert rates[-1] > 1e-4


def test_masked_bce_counts_known_labels_only_and_weighs_positives() -> None:
    logits = torch.tensor([[0.0, 2.0], [1.0, -1.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    known = torch.tensor([[True, False], [True, True]])
    softplus = torch.nn.functional.softplus
    expected = (softplus(torch.tensor(-0.0)) + softplus(torch.tensor(1.0)) + softplus(torch.tensor(1.0))) / 3
    assert float(classification_loss(logits, targets, known, None)) == pytest.approx(float(expected))
    weighted = classification_loss(logits, targets, known, torch.tensor([3.0, 1.0]))
    expected_weighted = (3 * math.log(2) + 2 * float(softplus(torch.tensor(1.0)))) / 3
    assert float(weighted) == pytest.approx(expected_weighted, rel=1e-6)
    labels = torch.tensor([[1.0, 0.0], [0.0, float("nan")], [0.0, 0.0], [0.0, 0.0]])
    assert positive_weights(labels).tolist() == [3.0, 1.0]  # no positive: weight 1


def test_rank_shares_have_equal_counts_and_weights_summing_to_one() -> None:
    batch = np.arange(5)
    shares = [rank_share(batch, rank, 2, micro=2) for rank in range(2)]
    assert [len(share) for share in shares] == [2, 2]  # FSDP2: the same number of forwards
    for share in shares:
        assert sum(weight for _, weight in share) == pytest.approx(1.0)
    assert sorted(int(i) for share in shares for rows, w in share if w for i in rows) == list(range(5))
    lonely = rank_share(np.arange(1), 1, 2, micro=4)  # a rank without images: weight 0
    assert lonely[0][1] == 0.0


def test_augmentations_stay_in_range_and_never_flip_by_default() -> None:
    generator = torch.Generator().manual_seed(0)
    ramp = torch.linspace(-1, 1, 28).repeat(28, 1)  # (28, 28) dark left, bright right
    pixels = ramp.expand(64, 3, 28, 28).clone()
    settings = FinetuneAugment(crop_area=1.0, rotation=0.0, brightness=0.1, contrast=0.0)
    moved, _ = augment_batch(pixels, None, settings, generator)
    shift = (moved - pixels).mean(dim=(1, 2, 3))  # brightness × value range 2
    assert shift.abs().max() <= 0.1 * 2 + 1e-5
    assert shift.std() > 0.01
    tilted, _ = augment_batch(pixels, None, FinetuneAugment(), generator)
    left, right = tilted[..., :, :7].mean(dim=(1, 2, 3)), tilted[..., :, -7:].mean(dim=(1, 2, 3))
    assert bool((left < right).all())  # 10° rotations and crops keep the sides; no flip
    flipped, _ = augment_batch(pixels, None, FinetuneAugment(1.0, 0.0, 0.0, 0.0, hflip=1.0), generator)
    torch.testing.assert_close(flipped, pixels.flip(-1), atol=1e-5, rtol=0)


def test_masks_follow_the_image_geometry() -> None:
    generator = torch.Generator().manual_seed(1)
    pixels = torch.zeros(4, 3, 28, 28)
    pixels[..., 8:20, 8:20] = 1.0
    masks = (pixels[:, :1] > 0.5).float()
    moved, moved_masks = augment_batch(
        pixels, masks, FinetuneAugment(brightness=0.0, contrast=0.0), generator
    )
    assert moved_masks is not None
    agreement = ((moved[:, :1] > 0.5) == (moved_masks > 0.5)).float().mean()
    assert agreement > 0.97


def test_the_head_standardises_the_starting_encoders_training_features(
    make_config: Callable[..., FinetuneConfig],
) -> None:
    from raddino.finetune.network import pooled_features

    config = make_config()
    data = load_finetune_data(config, preprocess_for(config), FailureLog(Path(config.out) / "errors.csv"))
    task = FinetuneTaskRunner(config, "frozen", data, CPU)
    network, _ = task.make_network(CPU.device)
    with torch.no_grad():
        pooled = pooled_features(
            network.encoder.eval(), data.pixels[torch.as_tensor(task.train_rows)].float()
        )
        standardised = network.head[0](pooled)  # (N, 2D)
    varied = pooled.std(dim=0) > 1e-2  # near-constant dimensions of the random test encoder: rounding
    assert int(varied.sum()) >= pooled.shape[1] // 2  # the patch means at least
    means, stds = standardised.mean(dim=0)[varied], standardised.std(dim=0, unbiased=False)[varied]
    torch.testing.assert_close(means, torch.zeros_like(means), atol=1e-3, rtol=0)
    torch.testing.assert_close(stds, torch.ones_like(stds), atol=1e-3, rtol=0)


def test_best_epoch_is_kept_and_patience_ends_the_run(
    make_config: Callable[..., FinetuneConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(patience=2)
    data = load_finetune_data(config, preprocess_for(config), FailureLog(Path(config.out) / "errors.csv"))
    task = FinetuneTaskRunner(config, "frozen", data, CPU)
    task.build(CPU.device)
    scores = iter([0.5, 0.7, 0.6, 0.65])
    monkeypatch.setattr(task, "score", lambda split: {"macro_auprc": (s := next(scores)), "score": s})
    bias = task.network.head[-1].bias
    records = []
    for epoch in range(1, 5):
        with torch.no_grad():
            bias.fill_(float(epoch))  # the weights of this epoch, to see which are kept
        records.append(task.validate(epoch * task.steps_per_epoch))
    assert [r["val/best"] for r in records] == [1, 1, 0, 0]
    assert task.best["epoch"] == 2
    assert task.best["score"] == 0.7
    assert torch.all(task.best["state"]["head.1.bias"] == 2.0)
    assert task.finished  # two epochs without a better score
