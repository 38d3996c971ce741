"""Single-process pre-training on the engine: exact resume, frozen last layer, non-finite losses, logs,
progress, export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from pretrain_helpers import Interrupt, assert_same_states, make_config, make_phantoms, stop_after

from raddino.data.preprocess import PreprocessConfig
from raddino.io.manifest import read_manifest, write_manifest
from raddino.models import load_dino_head, load_encoder
from raddino.pretrain.checkpoint import latest_checkpoint, read_checkpoint
from raddino.pretrain.export import export_run
from raddino.pretrain.losses import KoLeoLoss
from raddino.pretrain.meta_arch import SSLMetaArch
from raddino.pretrain.train import pretrain
from raddino.training import NonFiniteLossError, read_metrics


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_phantoms(tmp_path_factory.mktemp("loop") / "phantoms")


@pytest.fixture(scope="module")
def full_run(manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 uninterrupted iterations (4 "epochs" of 2), checkpoints at 2, 4, 6, 8, keeping 2."""
    run = tmp_path_factory.mktemp("full") / "run"
    pretrain(make_config(manifest, "train.checkpoint_period=2"), run, progress=False)
    return run


def test_resume_is_exact(full_run: Path, manifest: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = make_config(manifest, "train.checkpoint_period=2")
    with pytest.raises(Interrupt):  # killed one step after the checkpoint at iteration 4
        pretrain(config, run, progress=False, on_step=stop_after(5))
    assert latest_checkpoint(run).name == "step_0000004.pt"  # type: ignore[union-attr]
    result = pretrain(config, run, progress=False)
    assert result.iterations == 8
    resumed, uninterrupted = (read_checkpoint(latest_checkpoint(r)) for r in (run, full_run))  # type: ignore[arg-type]
    for part in ("student", "teacher", "objective"):
        assert_same_states(resumed[part], uninterrupted[part])
    for index, state in uninterrupted["optimizer"]["state"].items():
        assert_same_states(resumed["optimizer"]["state"][index], state)
    # The metrics log reads as one run: iterations 1..8 once each, the same losses.
    logged = read_metrics(run)
    assert [record["iteration"] for record in logged] == list(range(1, 9))
    assert logged == read_metrics(full_run)  # every value, bit for bit (no timings in the log)


def test_run_outputs_and_schedules(full_run: Path, manifest: Path) -> None:
    records = [
        {key.removeprefix("train/"): value for key, value in r.items()} for r in read_metrics(full_run)
    ]
    assert len(records) == 8
    logged = {"loss", "dino", "ibot", "koleo", "learning_rate", "weight_decay", "momentum"}
    logged |= {"teacher_temperature", "last_layer_learning_rate", "grad_norm_backbone", "grad_norm_dino_head"}
    assert all(set(r) == {"iteration", *logged} for r in records)
    # Last head layer frozen for the first epoch (2 iterations): lr 0 there, the cosine lr afterwards.
    assert [r["last_layer_learning_rate"] for r in records[:2]] == [0.0, 0.0]
    assert records[2]["last_layer_learning_rate"] == records[2]["learning_rate"] > 0
    # Teacher temperature warms up from 0.04 and the EMA momentum rises from 0.992 towards 1.
    assert records[0]["teacher_temperature"] == pytest.approx(0.04)
    assert records[0]["momentum"] == pytest.approx(0.992)
    assert records[-1]["momentum"] > 0.999
    checkpoints = sorted(p.name for p in (full_run / "checkpoints").glob("step_*.pt"))
    assert checkpoints == ["step_0000006.pt", "step_0000008.pt"]  # keep_checkpoints: 2
    assert (full_run / "config.yaml").read_text().count("OFFICIAL_EPOCH_LENGTH: 2") == 1


def test_last_layer_frozen_in_first_epoch(manifest: Path, tmp_path: Path) -> None:
    config = make_config(manifest, "train.checkpoint_period=2", "optim.epochs=2")
    initial = SSLMetaArch(config).student.state_dict()
    run = tmp_path / "run"
    with pytest.raises(Interrupt):
        pretrain(config, run, progress=False, on_step=stop_after(2))
    after_epoch = read_checkpoint(latest_checkpoint(run))["student"]  # type: ignore[arg-type]
    for name in ("dino_head.last_layer.weight_v", "dino_head.last_layer.weight_g"):
        assert torch.equal(after_epoch[name], initial[name]), name
    assert not torch.equal(after_epoch["dino_head.mlp.0.weight"], initial["dino_head.mlp.0.weight"])


def test_non_finite_loss_stops_and_keeps_last_checkpoint(
    manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    original = KoLeoLoss.forward

    def koleo_goes_nan(self: KoLeoLoss, features: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
        calls["n"] += 1
        value = original(self, features, eps)
        return value * float("nan") if calls["n"] > 6 else value  # 2 calls per step: NaN at step 4

    monkeypatch.setattr(KoLeoLoss, "forward", koleo_goes_nan)
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLossError) as caught:
        pretrain(make_config(manifest, "train.checkpoint_period=2"), run, progress=False)
    assert caught.value.step == 3  # 0-based: the fourth step
    assert caught.value.term == "koleo"
    assert str(caught.value).startswith("step 4: loss term 'koleo' is nan; stopping before the optimiser")
    assert str(caught.value).endswith("lower optim.base_lr, raise optim.warmup_epochs or use bf16/fp32)")
    last = latest_checkpoint(run)
    assert last is not None
    assert last.name == "step_0000002.pt"
    assert all(torch.isfinite(t).all() for t in read_checkpoint(last)["student"].values())


def test_export_teacher_transformers_and_dinov2(full_run: Path, tmp_path: Path) -> None:
    payload = read_checkpoint(latest_checkpoint(full_run))  # type: ignore[arg-type]
    result = export_run(full_run, tmp_path / "hf")
    encoder = load_encoder(tmp_path / "hf")
    exported = encoder.backbone.state_dict()
    for key, value in exported.items():
        assert torch.equal(value, payload["teacher"][f"encoder.backbone.{key}"]), key
    processor = json.loads((tmp_path / "hf" / "preprocessor_config.json").read_text())
    assert processor["image_mean"] == [0.5307] * 3
    assert processor["crop_size"]["height"] == 56
    assert PreprocessConfig.from_model_folder(tmp_path / "hf").image_std == (0.2583,) * 3
    head = load_dino_head(tmp_path / "hf" / "dino_head.safetensors")
    assert head.out_dim == 64
    assert torch.equal(head.last_layer.weight_v, payload["teacher"]["dino_head.last_layer.weight_v"])
    assert any(path.name == "model.safetensors" for path in result.files)

    export_run(full_run, tmp_path / "dv2", format="dinov2", which="student")
    student = load_encoder(tmp_path / "dv2" / "backbone_compatible.safetensors")
    pixels = torch.rand(1, 3, 56, 56)
    reference = load_encoder(tmp_path / "hf")
    assert not torch.allclose(student.forward_features(pixels).cls, reference.forward_features(pixels).cls)
    with pytest.raises(FileExistsError):
        export_run(full_run, tmp_path / "hf")


def test_activation_checkpointing_trains_the_same(full_run: Path, manifest: Path, tmp_path: Path) -> None:
    config = make_config(manifest, "train.checkpoint_period=2", "student.activation_checkpointing=true")
    pretrain(config, tmp_path / "run", progress=False)
    losses = [record["train/loss"] for record in read_metrics(tmp_path / "run")]
    assert losses == pytest.approx([record["train/loss"] for record in read_metrics(full_run)], rel=1e-5)


def test_start_from_exported_encoder_and_head(full_run: Path, manifest: Path, tmp_path: Path) -> None:
    export_run(full_run, tmp_path / "hf")
    folder = tmp_path / "hf"
    config = make_config(
        manifest,
        f"student.pretrained_weights={folder}",
        f"student.dino_head_weights={folder}/dino_head.safetensors",
    )
    model = SSLMetaArch(config)
    exported = load_encoder(folder).backbone.state_dict()
    for key, value in exported.items():
        assert torch.equal(model.student.encoder.backbone.state_dict()[key], value), key
        assert torch.equal(model.teacher.encoder.backbone.state_dict()[key], value), key
    head = load_dino_head(folder / "dino_head.safetensors")
    assert torch.equal(model.student.dino_head.last_layer.weight_v, head.last_layer.weight_v)
    assert model.student.encoder.config.drop_path_rate == 0.1  # the student's rate, not the file's 0
    wrong = make_config(
        manifest, f"student.dino_head_weights={folder}/dino_head.safetensors", "dino.head_n_prototypes=32"
    )
    with pytest.raises(ValueError, match=r"dino\.head_n_prototypes"):
        SSLMetaArch(wrong)


def test_split_spellings_count_and_unreadable_images_go_to_errors_csv(
    manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``train.split: train`` keeps the rows spelled ``Training`` and ``train``; an unreadable one of them is
    replaced, listed in ``RUN/errors.csv`` and counted, and the run goes on."""
    rows = read_manifest(manifest)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    listed = [{"path": str(broken), "id": "broken", "split": "Training"}]
    spellings = ["Training", "train", "valid", "test"]
    for index, row in enumerate(rows.rows):
        listed.append({"path": str(rows.resolve(row)), "id": row["id"], "split": spellings[index % 4]})
    csv = write_manifest(listed, tmp_path / "manifest.csv", columns=["path", "id", "split"])
    config = make_config(Path(csv), "train.split=train", "optim.epochs=1")
    result = pretrain(config, tmp_path / "run", progress=False)
    assert result.failures >= 1
    errors = (tmp_path / "run" / "errors.csv").read_text().splitlines()
    assert errors[0] == "path,stage,reason"
    assert all(line.startswith(f'{broken},read,"not an image') for line in errors[1:])
    assert len(errors) - 1 == result.failures
    kept = 1 + sum(1 for index in range(len(rows.rows)) if index % 4 < 2)  # the broken one, Training, train
    assert capsys.readouterr().out.splitlines()[0].endswith(f"; {kept} images")


def test_a_split_no_row_has_is_one_line(manifest: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"train\.split: split 'tset' is not one of"):
        pretrain(make_config(manifest, "train.split=tset"), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # nothing written before the data is known


def test_a_run_whose_dino_head_is_never_stepped_resumes_exactly(manifest: Path, tmp_path: Path) -> None:
    """iBOT alone with its own head: the DINO head gets no gradient, so AdamW keeps no state for it; a
    resumed run does not ask for one (it used to stop with 'Missing optimizer state') and goes on exactly."""
    options = ("dino.loss_weight=0", "dino.koleo_loss_weight=0", "ibot.separate_head=true", "optim.epochs=2")
    config = make_config(manifest, *options, "train.checkpoint_period=2")
    pretrain(config, tmp_path / "whole", progress=False)
    with pytest.raises(Interrupt):
        pretrain(config, tmp_path / "resumed", progress=False, on_step=stop_after(3))
    pretrain(config, tmp_path / "resumed", progress=False)
    whole, resumed = (read_checkpoint(latest_checkpoint(tmp_path / r)) for r in ("whole", "resumed"))  # type: ignore[arg-type]
    for part in ("student", "teacher"):
        assert_same_states(resumed[part], whole[part])
    assert not any(name.startswith("dino_head.") for name in whole["optimizer"]["state"])
    assert resumed["optimizer"]["state"].keys() == whole["optimizer"]["state"].keys()
    for name, state in whole["optimizer"]["state"].items():
        assert_same_states(resumed["optimizer"]["state"][name], state)
