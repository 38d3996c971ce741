from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from synthetic_sets import write_csv

from raddino.data.preprocess import InferencePreprocessor, PreprocessConfig
from raddino.evaluate.metrics import dice_per_image
from raddino.evaluate.segmentation import SegmentConfig, run_segment
from raddino.evaluate.segmentation.data import MaskPreprocessor, check_flip, random_affine
from raddino.evaluate.segmentation.heads import HEAD_NAMES, default_layers, make_head
from raddino.evaluate.segmentation.train import SegTraining, segmentation_loss


@pytest.mark.parametrize("name", HEAD_NAMES)
def test_heads_predict_at_image_size_and_every_parameter_learns(name: str) -> None:
    torch.manual_seed(0)
    head = make_head(name, embed_dim=16, classes=3, channels=8)  # type: ignore[arg-type]
    maps = [torch.randn(2, 16, 4, 4) for _ in range(4 if name == "upernet" else 1)]
    logits = head(maps, (56, 56))
    assert logits.shape == (2, 3, 56, 56)
    logits.square().mean().backward()
    for parameter_name, parameter in head.named_parameters():
        assert parameter.grad is not None, parameter_name
        assert torch.isfinite(parameter.grad).all(), parameter_name


def test_upernet_default_layers_are_the_papers_for_twelve_blocks() -> None:
    assert default_layers(12) == [3, 5, 7, 11]
    assert default_layers(24) == [7, 11, 15, 23]  # ViT-L's in BEiT / MMSegmentation
    assert default_layers(2) == [0, 0, 0, 1]


def test_loss_ignores_unannotated_structures_and_prefers_the_truth() -> None:
    masks = torch.zeros(1, 2, 8, 8)
    masks[0, 0, 2:6, 2:6] = 1
    truth_logits = (masks * 2 - 1) * 10
    wrong_logits = -truth_logits
    known = torch.tensor([[True, True]])
    assert segmentation_loss(truth_logits, masks, known) < 0.01
    assert segmentation_loss(wrong_logits, masks, known) > 1.0
    only_first = torch.tensor([[True, False]])
    mixed = torch.stack([truth_logits[0, 0], wrong_logits[0, 1]])[None]  # second structure wrong but unknown
    assert segmentation_loss(mixed, masks, only_first) < 0.01


def test_masks_follow_the_image_geometry() -> None:
    config = PreprocessConfig(shortest_edge=28, crop_size=(28, 28))
    picture = np.zeros((60, 40), np.float32)
    picture[10:30, 5:20] = 1.0  # a bright rectangle
    image = InferencePreprocessor(config).from_array(picture)[0]  # (28, 28)
    mask = MaskPreprocessor(config)(picture > 0.5)
    assert mask.shape == (28, 28)
    bright = image > image.mean()
    assert (bright == mask).float().mean() > 0.97


def test_affine_moves_images_and_masks_together() -> None:
    pixels = torch.zeros(1, 3, 32, 32)
    pixels[:, :, 8:16, 8:16] = 1.0
    masks = (pixels[:, :1] > 0.5).float()
    moved, moved_masks = random_affine(pixels, masks, torch.Generator().manual_seed(0), degrees=20, shift=0.1)
    assert ((moved[:, :1] > 0.5).float() == moved_masks).float().mean() > 0.97
    assert not torch.equal(moved_masks, masks)


def test_horizontal_flip_is_refused_for_sided_structures() -> None:
    check_flip(["heart", "nodule"])
    with pytest.raises(ValueError, match="left_lung"):
        check_flip(["left_lung", "heart"])


@pytest.fixture
def masked_pngs(tmp_path: Path) -> Path:
    """20 images of 10 subjects with a bright square (mask_square) and an often-empty 'spot' structure."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "seg"
    folder.mkdir()
    rows: list[dict[str, object]] = []
    for index in range(20):
        pixels = rng.integers(0, 60, (56, 56)).astype(np.uint8)
        square = np.zeros((56, 56), bool)
        top, left = rng.integers(4, 26, 2)
        square[top : top + 24, left : left + 24] = True
        pixels[square] = 220
        spot = np.zeros((56, 56), bool)
        if index % 3 == 0:
            spot[2:6, 2:6] = True
            pixels[spot] = 250
        Image.fromarray(pixels).save(folder / f"{index}.png")
        Image.fromarray(square.astype(np.uint8) * 255).save(folder / f"{index}_square.png")
        Image.fromarray(spot.astype(np.uint8) * 255).save(folder / f"{index}_spot.png")
        rows.append(
            {
                "path": f"{index}.png",
                "subject_id": f"s{index // 2}",
                "mask_square": f"{index}_square.png",
                "mask_spot": f"{index}_spot.png" if index != 5 else "",
            }
        )
    rows.append({"path": "missing.png", "subject_id": "s99", "mask_square": "x.png", "mask_spot": ""})
    return write_csv(folder / "manifest.csv", rows)


def test_segment_end_to_end_with_every_head(
    masked_pngs: Path, tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    config = SegmentConfig(
        input=str(masked_pngs),
        model=str(tiny_encoder_dir),
        out=str(out),
        resolution=56,
        device="cpu",
        training=SegTraining(epochs=4, batch_size=4, channels=8, lr=5e-3),
        progress=False,
    )
    result = run_segment(config)
    assert set(result.heads) == {"linear", "vitdet", "upernet"}
    payload = json.loads((out / "segment.json").read_text())
    assert payload["structures"] == ["square", "spot"]
    assert payload["failed_images"] == 1  # missing.png is recorded, not fatal
    assert "missing.png" in (out / "errors.csv").read_text()
    for head in HEAD_NAMES:
        assert 0.0 <= result.summary[f"dice/{head}"].mean <= 1.0
        assert 0 <= payload["heads"][head]["best_epoch"] < 4
    # The reported Dice is the Dice of the saved masks against the targets.
    test_ids = sorted(p.name for p in (out / "predictions" / "linear").iterdir())
    assert len(test_ids) == payload["splits"]["test"]
    predicted, target = [], []
    for image_id in test_ids:
        predicted.append(np.asarray(Image.open(out / "predictions" / "linear" / image_id / "square.png")) > 0)
        square = np.asarray(Image.open(masked_pngs.parent / f"{image_id}_square.png")) > 0
        target.append(
            MaskPreprocessor(PreprocessConfig(shortest_edge=56, crop_size=(56, 56)))(square).numpy()
        )
    dice = dice_per_image(
        torch.from_numpy(np.stack(predicted))[:, None], torch.from_numpy(np.stack(target))[:, None]
    )
    assert payload["summary"]["dice/linear/square"]["mean"] == pytest.approx(dice.mean().item(), abs=1e-6)
    assert (out / "overlays" / "linear" / f"{test_ids[0]}.png").exists()
    for suffix in ("md", "csv"):
        assert (out / f"segment.{suffix}").stat().st_size > 0
    checkpoint = out / "checkpoints" / "linear.pt"
    stamp = checkpoint.stat().st_mtime_ns
    again = run_segment(config)  # resumed: the heads come from their checkpoints
    assert checkpoint.stat().st_mtime_ns == stamp
    assert again.summary["dice/linear"].mean == result.summary["dice/linear"].mean


def test_fewshot_curve(masked_pngs: Path, tiny_encoder_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "few"
    config = SegmentConfig(
        input=str(masked_pngs),
        model=str(tiny_encoder_dir),
        out=str(out),
        resolution=56,
        device="cpu",
        heads=["linear"],
        fewshot=[1, 2, 100],
        fewshot_seeds=[0, 1],
        save_predictions=False,
        progress=False,
        training=SegTraining(epochs=3, batch_size=4, lr=5e-3),
    )
    result = run_segment(config)
    train_size = json.loads((out / "segment.json").read_text())["splits"]["train"]
    assert result.fewshot["sizes"] == [1, 2, train_size]  # sizes beyond the training set are capped
    assert len(result.fewshot["curves"]["linear"]) == 3
    assert (out / "fewshot.png").stat().st_size > 0
    summary = json.loads((out / "fewshot.json").read_text())["summary"]
    assert summary["dice/linear@1"]["count"] == 2  # two seeds


def test_augmented_training_runs_the_encoder_on_moved_images_and_masks(
    masked_pngs: Path, tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    config = SegmentConfig(
        input=str(masked_pngs),
        model=str(tiny_encoder_dir),
        out=str(tmp_path / "aug"),
        resolution=56,
        device="cpu",
        heads=["linear"],
        save_predictions=False,
        progress=False,
        training=SegTraining(epochs=2, batch_size=4, lr=5e-3, augment=True),
    )
    result = run_segment(config)
    history = result.heads["linear"]["val_loss"]
    assert len(history) == 2
    assert all(np.isfinite(history))
