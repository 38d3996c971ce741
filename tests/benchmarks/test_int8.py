"""benchmarks/int8.py's measures (raddino.models.int8, raddino.evaluate.int8_gate): static per-channel int8
of a test-sized ViT, and the gate's numbers on hand-made features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks import int8 as benchmark
from raddino.evaluate.int8_gate import centred_cosine, knn_overlap, probe_macro_auprc
from raddino.models.encoder import Encoder
from raddino.models.int8 import quantize_int8


def test_the_benchmark_measures_with_the_command_s_own_quantiser_and_gate() -> None:
    assert benchmark.quantize_int8 is quantize_int8
    assert benchmark.knn_overlap is knn_overlap
    assert benchmark.probe_macro_auprc is probe_macro_auprc


def test_probe_leaves_out_missing_labels_and_scores_a_separable_column_one() -> None:
    features = np.array([[0.0], [0.1], [1.0], [1.1], [0.05], [1.05]])
    labels = np.array([[0.0], [0.0], [1.0], [1.0], [np.nan], [np.nan]])  # last two missing
    assert probe_macro_auprc(features, labels, features[:4], labels[:4]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="both classes"):
        probe_macro_auprc(features, np.zeros((6, 1)), features, np.zeros((6, 1)))


def test_centred_cosine_ignores_a_shared_offset_and_sees_sign_flips() -> None:
    reference = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]) + 100.0  # raw cosines all ≈ 1
    assert centred_cosine(reference, reference + 5.0) == pytest.approx(1.0)
    flipped = 2 * reference.mean(axis=0) - reference  # each centred row negated
    assert centred_cosine(reference, flipped) == pytest.approx(-1.0)


def test_knn_overlap_counts_shared_neighbours() -> None:
    gallery = np.eye(4)  # 4 orthogonal items
    queries = np.array([[1.0, 0.5, 0.1, 0.0]])  # nearest: 0, then 1
    assert knn_overlap((queries, gallery), (queries, gallery), k=2) == 1.0
    other = np.array([[1.0, 0.0, 0.5, 0.1]])  # nearest: 0, then 2
    assert knn_overlap((queries, gallery), (other, gallery), k=2) == 0.5


def test_static_int8_keeps_a_layerscale_one_vit_close_and_leaves_the_original_alone() -> None:
    # LayerScale 1.0 so the blocks shape the CLS token (at 1e-5 every image's CLS is alike)
    encoder = Encoder.from_preset("test", seed=0, layerscale_value=1.0).eval()
    pixels = torch.randn(16, 3, 56, 56, generator=torch.Generator().manual_seed(0))
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    int8 = quantize_int8(encoder, [pixels[:8]], full_range=False)
    fc1 = int8.blocks[0].mlp.fc1.module
    assert isinstance(fc1, torch.ao.nn.quantized.Linear)
    assert fc1.weight().qscheme() == torch.per_channel_affine  # one scale per output channel
    assert fc1.weight().q_per_channel_scales().shape == (fc1.out_features,)
    with torch.inference_mode():
        reference, quantised = encoder(pixels).cls.numpy(), int8(pixels).cls.numpy()
    assert quantised.shape == reference.shape == (16, encoder.embed_dim)
    assert centred_cosine(reference, quantised) > 0.95
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())
