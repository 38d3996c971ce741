"""The cheaper head and teacher targets give the previous computation's numbers.

The weight-normalised prototype matrix is formed once per network per step (one DINO head call over every
crop's tokens), its scale ``g / ‖v‖`` applied by one multiplication, and the Sinkhorn-Knopp and temperature
paths multiply by reciprocals. Each test compares against the previous computation, written out here as it
was (``g · v / ‖v‖`` per head call, divisions, the transposed Sinkhorn-Knopp), to 1e-6 in float32
relative to each tensor's largest value (gradients of a weight-normalised layer cancel, so an entry near 0
carries the rounding of its larger neighbours: the old and the new computation are equally far from a
float64 one there).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from raddino.data.collate import collate_multicrop
from raddino.models import DINOHead
from raddino.models.dino_head import WeightNormLinear
from raddino.pretrain.config import PretrainConfig, load_pretrain_config
from raddino.pretrain.dataset import MaskPlanner
from raddino.pretrain.losses.collective import sinkhorn_knopp
from raddino.pretrain.meta_arch import SSLMetaArch, SSLNetwork

TEST_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "test.yaml"
TOLERANCE = {"rtol": 1e-6, "atol": 1e-6}


def assert_parity(actual: torch.Tensor, expected: torch.Tensor, name: str = "") -> None:
    """Every entry within 1e-6 of the tensor's largest magnitude (and 1e-12: a gradient that is 0 in exact
    arithmetic, such as the key bias's, is rounding noise on either side)."""
    scale = float(expected.abs().max())
    difference = float((actual - expected).abs().max())
    assert difference <= 1e-6 * scale + 1e-12, f"{name}: {difference:.3g} off at scale {scale:.3g}"


def previous_sinkhorn(logits: torch.Tensor, temp: float, n_samples: float, n_iterations: int) -> torch.Tensor:
    """Single-process Sinkhorn-Knopp as computed before: (K, N) layout, two divisions per step."""
    scaled = logits.float() / temp  # (N, K)
    assignments = torch.exp(scaled - scaled.max()).t()  # (K, N)
    assignments = assignments / assignments.sum()
    tiny = torch.finfo(torch.float32).tiny
    for _ in range(n_iterations):
        assignments = (
            assignments / assignments.sum(dim=1, keepdim=True).clamp_min(tiny) / assignments.shape[0]
        )
        assignments = assignments / assignments.sum(dim=0, keepdim=True).clamp_min(tiny) / n_samples
    return (assignments * n_samples).t()


def previous_head(head: DINOHead, tokens: torch.Tensor) -> torch.Tensor:
    """One head call as before: the effective weight ``g · v / ‖v‖`` formed in this call."""
    projected = F.normalize(head.mlp(tokens), dim=-1, p=2, eps=1e-12)  # (n, bottleneck)
    last = head.last_layer
    if isinstance(last, WeightNormLinear):
        weight = last.weight_g * last.weight_v / last.weight_v.norm(dim=1, keepdim=True)  # (K, bottleneck)
    else:
        weight = last.weight
    return F.linear(projected, weight)  # (n, K)


def previous_network(network: SSLNetwork, batch: dict[str, torch.Tensor], student: bool) -> dict:
    """SSLNetwork's forward as before: a head call for the global crops (and patches), one for the local."""
    masks = batch["masks"] if student else None
    features = network.encoder(batch["global_crops"], masks)
    patches = features.patch_sequence.flatten(0, 1).index_select(0, batch["mask_indices"])  # (M, D)
    if network.ibot_head is not None:
        global_logits, patch_logits = (
            previous_head(network.dino_head, features.cls),
            previous_head(network.ibot_head, patches),
        )
    else:
        logits = previous_head(network.dino_head, torch.cat([features.cls, patches]))
        global_logits, patch_logits = logits[: features.cls.shape[0]], logits[features.cls.shape[0] :]
    outputs = {"global_cls": features.cls, "global_logits": global_logits, "patch_logits": patch_logits}
    if student:
        outputs["local_logits"] = previous_head(network.dino_head, network.encoder(batch["local_crops"]).cls)
    return outputs


def previous_targets(
    meta: SSLMetaArch, logits: torch.Tensor, temp: float, patch: bool, n: float
) -> torch.Tensor:
    loss = meta.objective.ibot_loss if patch else meta.objective.dino_loss
    if meta.config.train.centering == "sinkhorn_knopp":
        return previous_sinkhorn(logits, temp, n, 3)
    return F.softmax((logits.float() - loss.center) / temp, dim=-1)


def previous_loss(meta: SSLMetaArch, batch: dict[str, torch.Tensor], temp: float) -> torch.Tensor:
    """DINO + KoLeo + iBOT exactly as computed before (divisions by the temperatures)."""
    config = meta.config
    with torch.no_grad():
        teacher = previous_network(meta.teacher, batch, student=False)
        cls_targets = previous_targets(meta, teacher["global_logits"], temp, False, 2 * 4).chunk(2)
        n_masked = float(batch["n_masked_patches"])
        patch_targets = previous_targets(meta, teacher["patch_logits"], temp, True, n_masked)
    student = previous_network(meta.student, batch, student=True)
    crops = [
        *student["global_logits"].chunk(2),
        *student["local_logits"].chunk(config.crops.local_crops_number),
    ]
    log_probs = [F.log_softmax(crop.float() / 0.1, dim=-1) for crop in crops]
    pairs = [
        -(targets * log_probs[s]).sum(-1).mean()
        for t, targets in enumerate(cls_targets)
        for s in range(len(crops))
        if s != t
    ]
    dino = sum(pairs, start=torch.zeros(())) / len(pairs)
    koleo = sum(
        (meta.objective.koleo_loss(cls) for cls in student["global_cls"].chunk(2)), start=torch.zeros(())
    )
    patch_log_probs = F.log_softmax(student["patch_logits"].float() / 0.1, dim=-1)  # (M, K)
    per_patch = -(patch_targets * patch_log_probs).sum(-1)  # (M,)
    ibot = (per_patch * batch["masks_weight"]).sum() / batch["masks"].shape[0]
    return (
        config.dino.loss_weight * dino
        + config.dino.koleo_loss_weight * koleo
        + config.ibot.loss_weight * ibot
    )


def _config(*overrides: str) -> PretrainConfig:
    base = ["train.dataset_path=synthetic", "student.drop_path_rate=0.0", "dino.head_n_prototypes=2048"]
    return load_pretrain_config(TEST_CONFIG, [*base, *overrides])


def _batch(config: PretrainConfig) -> dict[str, torch.Tensor]:
    crops, size = config.crops, config.train.batch_size_per_gpu
    generator = torch.Generator().manual_seed(1)
    samples = [
        {
            "global_crops": [
                torch.randn(3, crops.global_crops_size, crops.global_crops_size, generator=generator)
            ]
            * 2,
            "local_crops": [
                torch.randn(3, crops.local_crops_size, crops.local_crops_size, generator=generator)
            ]
            * crops.local_crops_number,
        }
        for _ in range(size)
    ]
    side = crops.global_crops_size // 14
    planner = MaskPlanner((side, side), (0.3, 0.5), 1.0, size)
    return collate_multicrop(samples, planner.masks(list(range(size))))


def test_weight_norm_weight_and_gradients_match_g_v_over_norm() -> None:
    torch.manual_seed(0)
    layer = WeightNormLinear(64, 4096)
    with torch.no_grad():
        layer.weight_g.uniform_(0.5, 2.0)  # g away from 1, so its gradient is checked too
    features, upstream = torch.randn(37, 64), torch.randn(37, 4096)  # (B, in), (B, out)
    reference = copy.deepcopy(layer)
    weight = reference.weight_g * reference.weight_v / reference.weight_v.norm(dim=1, keepdim=True)
    (F.linear(features, weight) * upstream).sum().backward()
    (layer(features) * upstream).sum().backward()
    torch.testing.assert_close(layer.weight, weight, **TOLERANCE)
    assert reference.weight_v.grad is not None
    assert reference.weight_g.grad is not None
    assert layer.weight_v.grad is not None
    assert layer.weight_g.grad is not None
    assert_parity(layer.weight_v.grad, reference.weight_v.grad, "weight_v")
    assert_parity(layer.weight_g.grad, reference.weight_g.grad, "weight_g")
    assert set(layer.state_dict()) == {"weight_g", "weight_v"}  # DINOv2's names: checkpoints load as before


@pytest.mark.parametrize("teacher_temp", [0.04, 0.07])  # DINOv2's teacher temperature range
@pytest.mark.parametrize("n_iterations", [0, 1, 3])
def test_sinkhorn_knopp_matches_the_previous_algorithm(n_iterations: int, teacher_temp: float) -> None:
    # A weight-normalised head's logits are cosines: (N, K) in [-1, 1].
    logits = torch.rand(40, 65536, generator=torch.Generator().manual_seed(0)) * 2 - 1
    expected = previous_sinkhorn(logits, teacher_temp, 40, n_iterations)
    assignments = sinkhorn_knopp(logits, teacher_temp, 40, n_iterations)
    assert_parity(assignments, expected)
    if n_iterations:
        torch.testing.assert_close(assignments.sum(dim=1), torch.ones(40))


@pytest.mark.parametrize(
    "overrides",
    [
        ("train.centering=sinkhorn_knopp",),
        ("train.centering=centering",),
        ("train.centering=sinkhorn_knopp", "ibot.separate_head=true", "ibot.head_n_prototypes=1024"),
    ],
    ids=["shared-head-sinkhorn", "shared-head-centring", "separate-heads"],
)
def test_step_loss_and_gradients_match_the_previous_computation(overrides: tuple[str, ...]) -> None:
    config = _config(*overrides)
    meta = SSLMetaArch(config)
    batch = _batch(config)
    reference = copy.deepcopy(meta)
    expected = previous_loss(reference, batch, 0.04)
    expected.backward()
    losses = meta.forward_losses(batch, 0.04)
    losses.total.backward()
    torch.testing.assert_close(losses.total, expected, **TOLERANCE)
    # Encoder gradients behind a LayerScale of 1e-5 are ~1e-7 and mostly rounding noise, and one head call
    # over every token sums the prototype gradient in another order, so every gradient is held to 1e-6 of
    # the network's largest one.
    gradients = {name: param.grad for name, param in reference.student.named_parameters()}
    network_scale = max(float(grad.abs().max()) for grad in gradients.values() if grad is not None)
    for name, parameter in meta.student.named_parameters():
        expected_gradient = gradients[name]
        if parameter.grad is None or expected_gradient is None:
            assert parameter.grad is None, name
            assert expected_gradient is None, name
            continue
        difference = float((parameter.grad - expected_gradient).abs().max())
        assert difference <= 1e-6 * network_scale, f"{name}: {difference:.3g} off"


def test_the_dino_head_is_called_once_per_network() -> None:
    config = _config()
    meta = SSLMetaArch(config)
    calls: list[int] = []
    meta.student.dino_head.register_forward_hook(
        lambda module, inputs, output: calls.append(inputs[0].shape[0])
    )
    meta.forward_losses(_batch(config), 0.04)
    n_masked = int(_batch(config)["n_masked_patches"])
    assert calls == [2 * 4 + 2 * 4 + n_masked]  # global CLS + local CLS + masked patches, one batch
