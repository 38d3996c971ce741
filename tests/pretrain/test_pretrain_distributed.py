"""torchrun with 2 gloo processes on CPU gives the teacher of one process with the same global batch.

KoLeo is computed per process in DINOv2 (nearest neighbours within a rank's batch), so it is switched off
here; drop-path draws differ per process, so it is off too. Everything else (DINO centring over all ranks,
iBOT masks planned over the whole micro-batch, per-rank loss means averaged by DDP/FSDP) matches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from pretrain_helpers import make_config, make_phantoms, run_torchrun

from raddino.pretrain.checkpoint import latest_checkpoint, read_checkpoint
from raddino.pretrain.meta_arch import SSLMetaArch
from raddino.pretrain.train import pretrain

# A high lr and a low teacher momentum make 4 steps move the weights by ~1e-2, well above TOLERANCE.
COMMON = (
    "dino.koleo_loss_weight=0",
    "student.drop_path_rate=0",
    "optim.epochs=2",
    "optim.base_lr=0.05",
    "teacher.momentum_teacher=0.5",
)
# Float sums in a different order (2 partial means all-reduced), amplified a little by AdamW's
# normalisation over 4 steps: measured differences are ~2e-7; 1e-4 still catches any real mismatch
# (a wrong mask, a missing rank's gradient or an unsynchronised centre moves weights by > 1e-3).
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def single_process(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("distributed")
    manifest = make_phantoms(folder / "phantoms")
    config = make_config(manifest, *COMMON, "train.batch_size_per_gpu=4")
    pretrain(config, folder / "single", progress=False)
    checkpoint = latest_checkpoint(folder / "single")
    assert checkpoint is not None
    initial = SSLMetaArch(config).teacher.state_dict()
    return manifest, {"final": read_checkpoint(checkpoint), "initial": initial}


def _max_difference(left: dict[str, torch.Tensor], right: dict[str, torch.Tensor]) -> float:
    assert left.keys() == right.keys()
    return max(float((left[key] - right[key]).abs().max()) for key in left)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_match_one(
    strategy: str, single_process: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    manifest, reference = single_process
    result = run_torchrun(
        tmp_path / "run", manifest, *COMMON, "train.batch_size_per_gpu=2", f"compute.strategy={strategy}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("done: 4 iterations") == 1, result.stdout  # rank 0 reports, not every rank
    payload = read_checkpoint(latest_checkpoint(tmp_path / "run"))  # type: ignore[arg-type]
    assert payload["world_size"] == 2
    assert payload["step"] == 4
    for network in ("teacher", "student"):
        difference = _max_difference(payload[network], reference["final"][network])
        assert difference < TOLERANCE, (network, difference)
    # The comparison has teeth: the teacher moved away from its initialisation by far more.
    assert _max_difference(payload["teacher"], reference["initial"]) > 20 * TOLERANCE
    centre = payload["objective"]["dino_loss.center"]
    assert torch.allclose(centre, reference["final"]["objective"]["dino_loss.center"], atol=TOLERANCE)


# Gram anchoring on a DINOv3 encoder: per-image Gram matrices (img_level), so the mean over two ranks'
# images is the one process's mean; the Gram teacher is loaded before iteration 1 and refreshed after 2.
# DINOv3's RoPE coordinate rescaling (a random factor in [1/2, 2] per forward in training mode) draws per
# process like drop-path, so it is off here (with it, weights differ by ~1e-3 after 4 steps).
GRAM = (
    *COMMON,
    "student.arch=test16",
    "student.arch_overrides={pos_embed_rescale: null}",
    "crops.global_crops_size=64",
    "crops.local_crops_size=32",
    "ibot.separate_head=true",
    "gram.use_loss=true",
    "gram.img_level=true",
    "gram.it_load_ema_teacher=1",
    "gram.it_first_update=2",
    "gram.update_frequency=2",
    "gram.max_updates=1",
)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_match_one_with_gram(
    strategy: str, single_process: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    manifest, _ = single_process
    pretrain(make_config(manifest, *GRAM, "train.batch_size_per_gpu=4"), tmp_path / "single", progress=False)
    reference = read_checkpoint(latest_checkpoint(tmp_path / "single"))  # type: ignore[arg-type]
    result = run_torchrun(
        tmp_path / "run", manifest, *GRAM, "train.batch_size_per_gpu=2", f"compute.strategy={strategy}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    payload = read_checkpoint(latest_checkpoint(tmp_path / "run"))  # type: ignore[arg-type]
    assert payload["gram"] == reference["gram"] == {"loaded": True, "updates": 1}
    for network in ("teacher", "student", "gram_teacher"):
        difference = _max_difference(payload[network], reference[network])
        assert difference < TOLERANCE, (network, difference)
