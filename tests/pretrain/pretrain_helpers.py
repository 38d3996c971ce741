"""Shared pieces of the pre-training loop tests: phantom data, test configs, a 2-process launcher."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from raddino.pretrain.config import PretrainConfig, load_pretrain_config

TEST_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "test.yaml"


def make_phantoms(folder: Path, n: int = 12) -> Path:
    """A manifest of ``n`` small synthetic chest X-rays."""
    from raddino.data.phantoms import generate_phantoms

    return generate_phantoms(folder, n=n, size=64, seed=0, workers=1, masks=False, progress=False)


def make_config(manifest: Path, *overrides: str) -> PretrainConfig:
    """``configs/test.yaml`` on ``manifest`` with extra ``key=value`` overrides."""
    return load_pretrain_config(TEST_CONFIG, [f"train.dataset_path={manifest}", *overrides])


def run_torchrun(
    run: Path, manifest: Path, *overrides: str, world_size: int = 2
) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node N -m raddino pretrain`` on CPU (gloo), as a user launches it."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(world_size),
        "--master_port",
        str(_free_port()),
        "-m",
        "raddino",
        "pretrain",
        "--config",
        str(TEST_CONFIG),
        "--out",
        str(run),
        "--data",
        str(manifest),
    ]
    for override in overrides:
        command += ["--set", override]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Interrupt(Exception):
    """Raised by :func:`stop_after`'s callback: a run killed after a given iteration."""


def stop_after(iteration: int):  # type: ignore[no-untyped-def]
    """A step callback that interrupts the run once ``iteration`` iterations are done."""

    def on_step(done: int, values: dict[str, float]) -> None:
        if done == iteration:
            raise Interrupt

    return on_step


def assert_same_states(left: dict, right: dict) -> None:
    """Two state dicts hold the same keys and bitwise-equal tensors."""
    assert left.keys() == right.keys()
    for key in left:
        assert torch.equal(left[key], right[key]), key
