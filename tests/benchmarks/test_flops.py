"""The architecture FLOP counter: a hand count, and PyTorch's own count where it sees every product."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from benchmarks.flops import (
    StepShape,
    ViTShape,
    config_step_flops,
    head_forward_flops,
    pretrain_step_flops,
    vit_forward_flops,
)
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from raddino.models import Encoder
from raddino.pretrain.config import load_pretrain_config
from raddino.pretrain.meta_arch import SSLMetaArch

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_vit_flops_match_a_hand_count() -> None:
    # 32 wide, 2 blocks, MLP 128, patch 14 at 56 px: 16 patches + CLS = 17 tokens.
    shape = ViTShape(width=32, depth=2, mlp_hidden=128, patch_size=14, extra_tokens=1)
    patch_embed = 2 * 16 * (3 * 14 * 14) * 32  # 602,112
    qkv = 2 * 17 * 32 * 96  # 104,448
    scores_and_values = 2 * (2 * 17 * 17 * 32)  # 36,992 (the SDPA products)
    projection = 2 * 17 * 32 * 32  # 34,816
    mlp = 2 * (2 * 17 * 32 * 128)  # 278,528
    expected = patch_embed + 2 * (qkv + scores_and_values + projection + mlp)
    assert expected == 1_511_680
    assert vit_forward_flops(shape, 56) == expected
    assert vit_forward_flops(shape, 56, images=3) == 3 * expected


def test_vit_b14_image_at_518_px_is_303_gflop() -> None:
    shape = ViTShape(width=768, depth=12, mlp_hidden=3072, patch_size=14, extra_tokens=1)
    assert vit_forward_flops(shape, 518) / 1e9 == pytest.approx(303.1, abs=0.1)  # the 303 GFLOP


def test_head_flops_match_a_hand_count() -> None:
    # 768 → 2048 → 2048 → 256 → 65536 on 10 tokens.
    expected = 2 * 10 * (768 * 2048 + 2048 * 2048 + 2048 * 256 + 256 * 65536)
    assert head_forward_flops(10, 768, 2048, 256, 3, 65536) == expected


@pytest.mark.parametrize(
    ("preset", "size", "overrides"),
    [
        ("test", 56, {}),
        ("test16", 64, {}),  # DINOv3: 4 registers, RoPE (no products)
        ("vitg14", 56, {"num_hidden_layers": 1}),  # SwiGLU
    ],
)
def test_vit_flops_equal_pytorch_count_with_attention_as_matmuls(
    preset: str, size: int, overrides: dict
) -> None:
    encoder = Encoder.from_preset(preset, **overrides).eval()
    pixels = torch.randn(2, 3, size, size)
    # The math backend runs attention as two bmm's, which FlopCounterMode counts (the CPU fused kernel
    # is not counted: the reason this counter exists).
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        encoder(pixels)
    assert (
        vit_forward_flops(ViTShape.from_config(encoder.config), size, images=2) == counter.get_total_flops()
    )


def test_step_flops_agree_with_pytorch_count_of_a_training_step() -> None:
    config = load_pretrain_config(
        CONFIGS / "test.yaml", ["train.dataset_path=synthetic", "student.drop_path_rate=0.0"]
    )
    meta = SSLMetaArch(config)
    batch_size, crops = config.train.batch_size_per_gpu, config.crops
    masks = torch.zeros(2 * batch_size, 16, dtype=torch.bool)
    masks[:, :5] = True
    batch = {
        "global_crops": torch.randn(2 * batch_size, 3, 56, 56),
        "local_crops": torch.randn(crops.local_crops_number * batch_size, 3, 28, 28),
        "masks": masks,
        "mask_indices": masks.flatten().nonzero().flatten(),
        "masks_weight": torch.full((int(masks.sum()),), 0.2),
        "n_masked_patches": torch.tensor(int(masks.sum())),
    }
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        meta.forward_losses(batch, 0.04).total.backward()
    counted = config_step_flops(config, meta.student.encoder.config, masked_patches=int(masks.sum()))
    # KoLeo's pairwise similarities (2 × (B, B, D) products) are the only products not counted.
    assert counted == pytest.approx(counter.get_total_flops(), rel=1e-3)


def test_separate_ibot_head_adds_its_own_cost() -> None:
    shape = ViTShape(width=32, depth=2, mlp_hidden=128, patch_size=14, extra_tokens=1)
    shared = StepShape(2, 56, 28, 2, masked_patches=10, head=(32, 16, 3, 64))
    separate = StepShape(2, 56, 28, 2, masked_patches=10, head=(32, 16, 3, 64), ibot_head=(32, 16, 3, 256))
    extra = 4 * (head_forward_flops(10, 32, 32, 16, 3, 256) - head_forward_flops(10, 32, 32, 16, 3, 64))
    assert pretrain_step_flops(shape, separate) - pretrain_step_flops(shape, shared) == extra
