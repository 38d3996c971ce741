"""The GPU check's tiny CPU mode runs end to end, so the script cannot rot before a GPU runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from benchmarks.gpu import SETTINGS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # about 10 s on a free core: six pre-training settings and three embed paths
def test_tiny_mode_measures_every_setting_and_writes_its_section(tmp_path: Path) -> None:
    results_file, benchmarks_file = tmp_path / "gpu.json", tmp_path / "BENCHMARKS.md"
    benchmarks_file.write_text("# Benchmarks\n\n<!-- BEGIN other -->\nkept\n<!-- END other -->\n")
    command = [sys.executable, "benchmarks/gpu.py", "--tiny", "--json", str(results_file), "--settings"]
    command += list(SETTINGS)
    command += ["--benchmarks-file", str(benchmarks_file)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(results_file.read_text())
    assert set(results["pretrain"]) == set(SETTINGS)  # FSDP2 on/off x compile on/off, and DINOv3
    for name, row in results["pretrain"].items():
        assert "error" not in row, (name, row)
        assert row["step_s"] > 0, name
        assert row["tflop_per_step"] > 0, name
    # The same model and batch with and without FSDP2 or compilation: the same FLOPs.
    flops = {results["pretrain"][name]["tflop_per_step"] for name in SETTINGS if name.startswith("vitb14")}
    assert len(flops) == 1
    embed = results["embed"]["fp32"]
    assert embed["same_image_min"] > 0.999  # embed and the official path agree image by image
    assert embed["other_images_median"] < 0.9  # and the images differ, so the agreement means something
    section = benchmarks_file.read_text()
    assert "<!-- BEGIN gpu -->" in section
    assert "The GPU rows are unmeasured" in section
    assert "kept" in section  # other sections untouched


def test_without_cuda_and_without_tiny_it_says_so_in_one_line() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the full check would run")
    done = subprocess.run(
        [sys.executable, "benchmarks/gpu.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == "benchmarks/gpu.py: no CUDA device here (use --tiny for the CPU check)"
