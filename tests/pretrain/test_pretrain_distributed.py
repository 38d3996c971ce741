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
