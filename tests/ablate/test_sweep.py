"""The points of each sweep, the pool and nested data-size subsets, and the tables / figure of a sweep."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from raddino.ablate.config import point_config
from raddino.ablate.figure import sweep_figure
from raddino.ablate.results import by_value, parse_groups, point_metrics, write_tables
from raddino.ablate.subsets import held_out_subjects, nested_subset, write_pool, write_subset
from raddino.ablate.sweep import SweepError, make_points
from raddino.config import ConfigError, config_to_dict
from raddino.data.splits import subject_key
from raddino.io.manifest import read_manifest, write_manifest
from raddino.pretrain.config import PretrainConfig


def test_resolution_points_set_both_crops_keeping_the_local_ratio() -> None:
    points = make_points(
        "resolution", ["224", "518"], [0, 1], {"crops.global_crops_size": 224, "crops.local_crops_size": 98}
    )
    assert [p.name for p in points] == [
        "resolution-224_seed0",
        "resolution-224_seed1",
        "resolution-518_seed0",
        "resolution-518_seed1",
    ]
    assert points[0].overrides == {
        "crops.global_crops_size": 224,
        "crops.local_crops_size": 98,
        "train.seed": 0,
    }
    # 518 * 98 / 224 = 226.6 -> the nearest multiple of 14 is 224 (16 patches)
    assert points[2].overrides["crops.local_crops_size"] == 224


def test_resolution_sets_the_position_grid_where_the_config_sizes_it() -> None:
    base = {"student.arch_overrides": {"hidden_size": 64, "image_size": 112}}
    point = make_points("resolution", ["224"], [0], base)[0]
    assert point.overrides["student.arch_overrides"] == {"hidden_size": 64, "image_size": 224}
    config = point_config(config_to_dict(PretrainConfig()), point.overrides)
    assert config.student.arch_overrides["image_size"] == 224
    assert "student.arch_overrides" not in make_points("resolution", ["224"], [0], {})[0].overrides


def test_objective_init_and_dotted_points() -> None:
    objective = {p.value: p.overrides for p in make_points("objective", ["full", "no-ibot", "no-koleo"], [0])}
    assert objective["no-ibot"]["ibot.loss_weight"] == 0.0
    assert objective["no-koleo"]["dino.koleo_loss_weight"] == 0.0
    assert set(objective["full"]) == {"train.seed"}
    init = {p.value: p.overrides for p in make_points("init", ["random", "runs/x/export/teacher"], [0])}
    assert init["random"]["student.pretrained_weights"] is None
    assert init["runs/x/export/teacher"]["student.pretrained_weights"] == "runs/x/export/teacher"
    lr = make_points("optim.base_lr", ["1e-3", "5e-4"], [0])
    base = config_to_dict(PretrainConfig())
    assert [point_config(base, p.overrides).optim.base_lr for p in lr] == [1e-3, 5e-4]


def test_random_init_clears_the_base_config_weights() -> None:
    base = config_to_dict(PretrainConfig())
    base["student"]["pretrained_weights"] = "preset:test"
    config = point_config(base, make_points("init", ["random"], [3])[0].overrides)
    assert config.student.pretrained_weights is None
    assert config.train.seed == 3
    assert base["student"]["pretrained_weights"] == "preset:test"  # the base is left as it was


@pytest.mark.parametrize(
    ("sweep", "values", "message"),
    [
        ("resolutoin", ["224"], "not one of"),
        ("resolution", ["4x"], "not a whole number"),
        ("resolution", ["224", "224"], "given twice"),
        ("data-size", ["1.5"], "whole count above 1"),
        ("objective", ["no-mim"], "not one of"),
        ("resolution", [], "no values"),
    ],
)
def test_bad_sweeps_are_one_line_naming_the_value(sweep: str, values: list[str], message: str) -> None:
    with pytest.raises(SweepError, match=message) as caught:
        make_points(sweep, values, [0])
    assert "\n" not in str(caught.value)


def test_misspelt_dotted_key_fails_with_its_name() -> None:
    point = make_points("optim.base_lrr", ["1e-3"], [0])[0]
    with pytest.raises(ConfigError, match="base_lrr"):
        point_config(config_to_dict(PretrainConfig()), point.overrides)


def _manifest(tmp_path: Path, subjects: int = 40, per_subject: int = 2) -> Path:
    rows = []
    for subject in range(subjects):
        split = "train" if subject % 4 else ("val" if subject % 8 else "test")
        for image in range(per_subject):
            rows.append(
                {
                    "path": f"img/s{subject}_{image}.png",
                    "id": f"s{subject}_{image}",
                    "subject_id": f"s{subject}",
                    "split": split,
                    "nodule": str(subject % 2),
                }
            )
    return write_manifest(rows, tmp_path / "manifest.csv")


def test_pool_leaves_out_the_evaluation_subjects_and_subsets_are_nested(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path)
    held_out = held_out_subjects(manifest)
    assert held_out == {f"s{s}" for s in range(0, 40, 4)}
    pool, images, left_out = write_pool(manifest, tmp_path / "pool.csv", held_out)
    assert (images, left_out) == (60, 20)
    assert Path(read_manifest(pool).rows[0]["path"]).is_absolute()  # the pool lives in another folder
    subsets = []
    for size in ("0.1", "0.5", "1.0", "31"):
        path, count = write_subset(pool, tmp_path / f"subset-{size}.csv", float(size), seed=0)
        rows = read_manifest(path).rows
        subsets.append({row["id"] for row in rows})
        assert count == len(rows)
        assert not {subject_key(row) for row in rows} & held_out
    small, half, full, count31 = subsets
    assert small <= half <= full
    assert count31 <= full
    # whole subjects of 2 images each
    assert [len(small), len(half), len(full)] == [6, 30, 60]
    assert len(count31) == 32  # 31 images asked: the 16th subject is taken whole
    assert small <= count31 <= full


def test_nested_subset_does_not_depend_on_row_order(tmp_path: Path) -> None:
    rows = read_manifest(_manifest(tmp_path)).rows
    forward = {r["id"] for r in nested_subset(rows, 0.3, seed=1)}
    backward = {r["id"] for r in nested_subset(list(reversed(rows)), 0.3, seed=1)}
    assert forward == backward


def test_a_pool_without_images_left_is_one_line(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, subjects=4)
    everyone = {f"s{s}" for s in range(4)}
    with pytest.raises(ValueError, match="no pre-training image left"):
        write_pool(manifest, tmp_path / "pool.csv", everyone)


def _fake_point(tmp_path: Path, value: str, seed: int, auprc: dict[str, list[float]]) -> dict:
    """A finished point's record with a probe.json whose per-seed AUPRC are given."""
    folder = tmp_path / f"{value}_{seed}"
    folder.mkdir()
    seeds = [{"seed": i, "test": {"auprc": {f: v[i] for f, v in auprc.items()}}} for i in range(2)]
    summary = {
        "macro_auprc": {"mean": sum(sum(v) for v in auprc.values()) / 2 / len(auprc), "std": 0.0, "count": 2}
    }
    for finding, values in auprc.items():
        mean = sum(values) / 2
        summary[f"auprc/{finding}"] = {"mean": mean, "std": abs(values[0] - mean), "count": 2}
    probe = folder / "probe.json"
    probe.write_text(json.dumps({"summary": summary, "findings": list(auprc), "seeds": seeds}))
    return {
        "point": f"p-{value}_{seed}",
        "value": value,
        "seed": seed,
        "images": 100,
        "iterations": 4,
        "seconds": {"total": 2.0},
        "results": {"probe": str(probe)},
    }


@pytest.mark.parametrize("sweep", ["resolution", "objective", "data-size"])
def test_tables_and_figure_hold_one_value_per_point(tmp_path: Path, sweep: str) -> None:
    values = ["112", "224"] if sweep != "objective" else ["full", "no-ibot"]
    records = [
        _fake_point(
            tmp_path, value, seed, {"cardiomegaly": [0.8, 0.9], "nodule": [0.2 + 0.2 * i, 0.4 + 0.2 * i]}
        )
        for i, value in enumerate(values)
        for seed in (0, 1)
    ]
    groups = parse_groups(["large=cardiomegaly", "small=nodule"])
    rows = [{**record, "metrics": point_metrics(record, groups)} for record in records]
    # group/small of value 0: mean over probe seeds of nodule's AUPRC (0.2, 0.4) = 0.3
    assert rows[0]["metrics"]["group/small"]["mean"] == pytest.approx(0.3)
    table = by_value(rows)
    outputs = write_tables(tmp_path, sweep, rows, table)
    with open(outputs["points"], newline="") as handle:
        points = list(csv.DictReader(handle))
    assert [row["point"] for row in points] == [r["point"] for r in records]
    assert [float(row["group/small"]) for row in points] == pytest.approx([0.3, 0.3, 0.5, 0.5])
    with open(outputs["csv"], newline="") as handle:
        long = [row for row in csv.DictReader(handle) if row["metric"] == "group/small"]
    assert [row[sweep] for row in long] == values
    assert [row["over"] for row in long] == ["pre-training seeds"] * 2
    figure = sweep_figure(tmp_path / "ablation.png", sweep, table, groups, ["cardiomegaly", "nodule"])
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_groups_from_a_file_and_a_group_naming_an_unknown_finding(tmp_path: Path) -> None:
    path = tmp_path / "groups.csv"
    path.write_text("finding,size\ncardiomegaly,large\nnodule,small\npneumothorax,small\n")
    assert parse_groups([], str(path), "size") == {
        "large": ["cardiomegaly"],
        "small": ["nodule", "pneumothorax"],
    }
    with pytest.raises(ValueError, match="no column 'group'"):
        parse_groups([], str(path))
    with pytest.raises(ValueError, match="NAME=finding"):
        parse_groups(["large"])
    record = _fake_point(tmp_path, "1", 0, {"nodule": [0.5, 0.5]})
    with pytest.raises(ValueError, match="'pneumothorax', not a probed finding"):
        point_metrics(record, {"small": ["pneumothorax"]})
