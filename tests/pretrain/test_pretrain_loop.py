"""The single-process loop: exact resume, frozen last layer, non-finite losses, logs, export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from pretrain_helpers import make_config, make_phantoms

from raddino.data.preprocess import PreprocessConfig
from raddino.models import load_dino_head, load_encoder
from raddino.pretrain.checkpoint import latest_checkpoint, read_checkpoint
from raddino.pretrain.export import export_run
from raddino.pretrain.losses import KoLeoLoss
from raddino.pretrain.meta_arch import SSLMetaArch
from raddino.pretrain.metrics import read_metrics
from raddino.pretrain.train import NonFiniteLossError, pretrain


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_phantoms(tmp_path_factory.mktemp("loop") / "phantoms")


@pytest.fixture(scope="module")
def full_run(manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 uninterrupted iterations (4 "epochs" of 2), checkpoints at 2, 4, 6, 8, keeping 2."""
    run = tmp_path_factory.mktemp("full") / "run"
    pretrain(make_config(manifest, "train.checkpoint_period=2"), run, progress=False)
    return run


class _Interrupt(Exception):
    pass


def _stop_after(iteration: int):  # type: ignore[no-untyped-def]
    def on_step(done: int, values: dict[str, float]) -> None:
        if done == iteration:
            raise _Interrupt

    return on_step


def _assert_same_states(left: dict, right: dict) -> None:
    assert left.keys() == right.keys()
    for key in left:
        assert torch.equal(left[key], right[key]), key


def test_resume_is_exact(full_run: Path, manifest: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = make_config(manifest, "train.checkpoint_period=2")
    with pytest.raises(_Interrupt):  # killed one step after the checkpoint at iteration 4
        pretrain(config, run, progress=False, on_step=_stop_after(5))
    assert latest_checkpoint(run).name == "iteration_0000004.pt"  # type: ignore[union-attr]
    result = pretrain(config, run, progress=False)
    assert result.iterations == 8
    resumed, uninterrupted = (read_checkpoint(latest_checkpoint(r)) for r in (run, full_run))  # type: ignore[arg-type]
    for part in ("student", "teacher", "objective"):
        _assert_same_states(resumed[part], uninterrupted[part])
    for index, state in uninterrupted["optimizer"]["state"].items():
        _assert_same_states(resumed["optimizer"]["state"][index], state)
    # The metrics log reads as one run: iterations 1..8 once each, the same losses.
    logged = read_metrics(run)
    assert [record["iteration"] for record in logged] == list(range(1, 9))
    assert [r["loss"] for r in logged] == [r["loss"] for r in read_metrics(full_run)]


def test_run_outputs_and_schedules(full_run: Path, manifest: Path) -> None:
    records = read_metrics(full_run)
    assert len(records) == 8
    assert all(set(r) >= {"loss", "dino", "ibot", "koleo", "lr", "momentum"} for r in records)
    # Last head layer frozen for the first epoch (2 iterations): lr 0 there, the cosine lr afterwards.
    assert [r["last_layer_lr"] for r in records[:2]] == [0.0, 0.0]
    assert records[2]["last_layer_lr"] == records[2]["lr"] > 0
    # Teacher temperature warms up from 0.04 and the EMA momentum rises from 0.992 towards 1.
    assert records[0]["teacher_temp"] == pytest.approx(0.04)
    assert records[0]["momentum"] == pytest.approx(0.992)
    assert records[-1]["momentum"] > 0.999
    checkpoints = sorted(p.name for p in (full_run / "checkpoints").glob("iteration_*.pt"))
    assert checkpoints == ["iteration_0000006.pt", "iteration_0000008.pt"]  # keep_checkpoints: 2
    assert (full_run / "config.yaml").read_text().count("OFFICIAL_EPOCH_LENGTH: 2") == 1


def test_last_layer_frozen_in_first_epoch(manifest: Path, tmp_path: Path) -> None:
    config = make_config(manifest, "train.checkpoint_period=2", "optim.epochs=2")
    initial = SSLMetaArch(config).student.state_dict()
    run = tmp_path / "run"
    with pytest.raises(_Interrupt):
        pretrain(config, run, progress=False, on_step=_stop_after(2))
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
    assert caught.value.iteration == 3
    assert caught.value.term == "koleo"
    assert "iteration 3" in str(caught.value)
    assert "'koleo'" in str(caught.value)
    last = latest_checkpoint(run)
    assert last is not None
    assert last.name == "iteration_0000002.pt"
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
    losses = [record["loss"] for record in read_metrics(tmp_path / "run")]
    assert losses == pytest.approx([record["loss"] for record in read_metrics(full_run)], rel=1e-5)


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
