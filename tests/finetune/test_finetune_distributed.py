"""torchrun with 2 gloo processes on CPU fine-tunes to the weights of one process with the same global
batch: LoRA under DDP, full fine-tuning under FSDP2.

Augmentations, drop-path and adapter dropout draw per process, so they are off; every label of the three
findings is known, so a rank's mean loss over its share, averaged over ranks, is the batch's mean.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from raddino.finetune import EncoderLora, FinetuneAugment, FinetuneConfig, run_finetune

# Sums over ranks in another order, amplified a little by AdamW over 4 steps; a missing rank's gradient
# or a wrong share moves the weights by far more (checked below against the starting weights).
TOLERANCE = 1e-4
SETTINGS = (
    "epochs=1",
    "drop_path=0",
    "lora.dropout=0",
    "augment.crop_area=1",
    "augment.rotation=0",
    "augment.brightness=0",
    "augment.contrast=0",
    "lr=0.01",
    "bootstrap=0",
    "progress=false",
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _weights(out: Path, mode: str) -> dict[str, torch.Tensor]:
    encoder = load_file(str(out / mode / "encoder" / "model.safetensors"))
    head = load_file(str(out / mode / "head.safetensors"))
    return {f"encoder.{k}": v for k, v in encoder.items()} | {f"head.{k}": v for k, v in head.items()}


def _max_difference(left: dict[str, torch.Tensor], right: dict[str, torch.Tensor]) -> float:
    assert left.keys() == right.keys()
    return max(float((left[key] - right[key]).abs().max()) for key in left)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["lora", "full"])
def test_two_processes_match_one(
    make_config: Callable[..., FinetuneConfig],
    tiny_encoder_dir: Path,
    tmp_path: Path,
    mode: str,
) -> None:
    single = make_config(
        modes=[mode], epochs=1, drop_path=0.0, lora=EncoderLora(dropout=0.0), lr=0.01, bootstrap=0,
        augment=FinetuneAugment(crop_area=1.0, rotation=0.0, brightness=0.0, contrast=0.0),
        out=str(tmp_path / "single"),
    )  # fmt: skip
    run_finetune(single)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(_free_port()), "-m", "raddino", "finetune", single.input, "--model", single.model,
               "--out", str(tmp_path / "two"), "--mode", mode, "--device", "cpu", "--batch-size", "8",
               "--micro-batch-size", "4", *(w for name in single.labels for w in ("--labels", name)),
               *(w for setting in SETTINGS for w in ("--set", setting))]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count(f"{mode}: macro_auprc") == 1, result.stdout  # rank 0 reports
    expected, found = _weights(tmp_path / "single", mode), _weights(tmp_path / "two", mode)
    assert _max_difference(found, expected) < TOLERANCE
    start = load_file(str(tiny_encoder_dir / "model.safetensors"))
    moved = max(float((expected[f"encoder.{k}"] - v).abs().max()) for k, v in start.items())
    assert moved > 20 * TOLERANCE  # the comparison has teeth
