"""A test-sized sweep end to end: point folders are run folders, reused on resume, and the outputs hold one
value per point; the command line refuses bad input in one line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from raddino.ablate import AblateRun, run_ablation
from raddino.cli import app
from raddino.config import load_config

TEST_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "test.yaml"


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from raddino.data.phantoms import generate_phantoms

    folder = tmp_path_factory.mktemp("phantoms")
    return generate_phantoms(folder, n=40, size=64, seed=0, workers=1, masks=False, progress=False)


def _settings(phantoms: Path, out: Path, sweep: str, values: list[str], *extra: str) -> AblateRun:
    return load_config(
        AblateRun,
        TEST_CONFIG,
        [
            f"train.dataset_path={phantoms}",
            f"evaluation={phantoms}",
            f"out={out}",
            f"sweep={sweep}",
            f"values={json.dumps(values)}",
            "optim.epochs=2",  # 4 iterations per point
            "probe_seeds=[0]",
            "probe_epochs=2",
            "probe_lrs=[0.001]",
            "labels=[cardiomegaly,pleural_effusion,nodule]",
            "groups=['large=cardiomegaly,pleural_effusion','small=nodule']",
            "progress=false",
            *extra,
        ],
    )


@pytest.mark.slow
def test_sweep_writes_run_folders_and_resumes_point_by_point(phantoms: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    result = run_ablation(_settings(phantoms, out, "resolution", ["42", "56"]))
    names = ["resolution-42_seed0", "resolution-56_seed0"]
    assert result.ran == names
    assert result.skipped == []
    for name in names:
        folder = out / "points" / name
        assert (folder / "config.yaml").is_file()
        assert (folder / "checkpoints" / "latest.txt").is_file()
        assert (folder / "export" / "teacher" / "model.safetensors").is_file()
    saved = (out / "points" / names[1] / "config.yaml").read_text()
    assert "global_crops_size: 56" in saved
    assert "local_crops_size: 28" in saved
    with open(out / "points.csv", newline="") as handle:
        points = list(csv.DictReader(handle))
    assert [row["point"] for row in points] == names
    assert all(row["group/large"] != "" for row in points)
    assert {row["iterations"] for row in points} == {"4"}
    # the pool: the 30 phantoms of the train split; val and test subjects are never pre-trained on
    assert {row["images"] for row in points} == {"30"}
    assert (out / "ablation.png").read_bytes()[:4] == b"\x89PNG"
    assert "resolution=42" in (out / "compare" / "compare.md").read_text()
    # resume: nothing runs again; a point whose record is gone runs its evaluation again from its checkpoint
    checkpoint = (out / "points" / names[0] / "checkpoints" / "latest.txt").read_text()
    again = run_ablation(_settings(phantoms, out, "resolution", ["42", "56"]))
    assert again.ran == []
    assert again.skipped == names
    (out / "points" / names[1] / "point.json").unlink()
    third = run_ablation(_settings(phantoms, out, "resolution", ["42", "56", "28"]))
    assert third.skipped == names[:1]
    assert third.ran == [names[1], "resolution-28_seed0"]
    assert (out / "points" / names[0] / "checkpoints" / "latest.txt").read_text() == checkpoint
    with open(out / "ablation.csv", newline="") as handle:
        macro = [row for row in csv.DictReader(handle) if row["metric"] == "macro_auprc"]
    assert [row["resolution"] for row in macro] == ["42", "56", "28"]
    # a finished point is not reused under other settings
    with pytest.raises(ValueError, match="finished with other pre-training or evaluation settings"):
        run_ablation(_settings(phantoms, out, "resolution", ["42"], "probe_epochs=3"))


@pytest.mark.slow
def test_data_size_points_pretrain_on_nested_subsets_with_early_stopping(
    phantoms: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sizes"
    early_stopping = ["validation.every=2", "validation.split=train", "validation.labels=[no_finding]"]
    run_ablation(_settings(phantoms, out, "data-size", ["0.5", "1.0"], "groups=[]", *early_stopping))
    subsets = {}
    for size in ("0.5", "1.0"):
        with open(out / "data" / f"data-size-{size}.csv", newline="") as handle:
            subsets[size] = {row["id"] for row in csv.DictReader(handle)}
    assert subsets["0.5"] < subsets["1.0"]
    assert len(subsets["1.0"]) == 30
    saved = (out / "points" / "data-size-0.5_seed0" / "config.yaml").read_text()
    assert "data-size-0.5.csv" in saved
    record = json.loads((out / "points" / "data-size-0.5_seed0" / "point.json").read_text())
    assert record["images"] == 15
    # early stopping on: the validation probe read the evaluation manifest, the best teacher is evaluated
    assert saved.count(f"labels_path: {phantoms}") == 1
    assert record["model"].endswith("export/best")
    assert (out / "points" / "data-size-0.5_seed0" / "validation.jsonl").is_file()


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["resolutoin", "224"], "not one of"),
        (["resolution", "4x"], "not a whole number"),
        (["optim.base_lrr", "1e-3"], "unknown key 'optim.base_lrr'"),
        (["resolution", "42", "--eval", "missing.csv"], "missing.csv"),
    ],
)
def test_bad_input_is_one_line(phantoms: Path, tmp_path: Path, words: list[str], message: str) -> None:
    words = [*words] if "--eval" in words else [*words, "--eval", str(phantoms)]
    command = ["ablate", *words, "-c", str(TEST_CONFIG), "--data", str(phantoms), "-o", str(tmp_path / "o")]
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error")]
    assert len(lines) == 1
    assert message in lines[0]


@pytest.mark.slow
def test_a_queue_of_two_processes_runs_the_points(phantoms: Path, tmp_path: Path) -> None:
    out = tmp_path / "queue"
    result = run_ablation(_settings(phantoms, out, "objective", ["full", "no-koleo"], "parallel=2"))
    assert result.ran == ["objective-full_seed0", "objective-no-koleo_seed0"]
    saved = (out / "points" / "objective-no-koleo_seed0" / "config.yaml").read_text()
    assert "koleo_loss_weight: 0.0" in saved
    with open(out / "points.csv", newline="") as handle:
        assert [row["objective"] for row in csv.DictReader(handle)] == ["full", "no-koleo"]
    assert (out / "ablation.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_a_sweep_with_segmentation_reports_dice_per_point(tmp_path: Path) -> None:
    from raddino.data.phantoms import generate_phantoms

    phantoms = generate_phantoms(tmp_path / "ph", n=40, size=64, seed=1, workers=1, progress=False)
    out = tmp_path / "seg"
    run_ablation(_settings(phantoms, out, "resolution", ["42", "56"], "segment=[heart]"))
    for name in ("resolution-42_seed0", "resolution-56_seed0"):
        record = json.loads((out / "points" / name / "point.json").read_text())
        summary = json.loads(Path(record["results"]["segment"]).read_text())["summary"]
        assert 0.0 <= summary["dice/linear"]["mean"] <= 1.0
    with open(out / "ablation.csv", newline="") as handle:
        dice = [row for row in csv.DictReader(handle) if row["metric"] == "dice/linear"]
    assert [row["resolution"] for row in dice] == ["42", "56"]
    assert all(0.0 <= float(row["mean"]) <= 1.0 for row in dice)
