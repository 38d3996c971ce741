"""Pre-training a DINOv3 encoder with Gram anchoring: the Gram teacher's load and refresh schedule, never
in the optimiser, exact across a kill and resume; the gram config block and its weight schedule; the
DINOv3 configs; continuing from DINOv3 weights and exporting the run in both formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pretrain_helpers import make_config, make_phantoms
from transformers import AutoModel

from raddino.config import ConfigError
from raddino.models import Encoder, load_dino_head, load_encoder, save_original_weights
from raddino.pretrain.checkpoint import latest_checkpoint, read_checkpoint
from raddino.pretrain.config import GramConfig, LossWeightSchedule, load_pretrain_config
from raddino.pretrain.export import export_run
from raddino.pretrain.gram_teacher import GramTeacher
from raddino.pretrain.losses import GramLoss
from raddino.pretrain.meta_arch import SSLMetaArch, split_network_state
from raddino.pretrain.task import gram_weight_schedule
from raddino.pretrain.train import pretrain
from raddino.training import read_metrics

# Load before iteration 1 (0-based); refresh after 0-based iterations 3 and 5 (i + 1 = 4, 6: multiples of
# 2 from 3 on), not after 7: max_updates is 2.
GRAM = (
    "student.arch=test16",
    "crops.global_crops_size=64",  # 4 × 4 patches of 16 px
    "crops.local_crops_size=32",
    "ibot.separate_head=true",
    "ibot.head_n_prototypes=64",
    "ibot.head_hidden_dim=32",
    "ibot.head_bottleneck_dim=16",
    "train.centering=sinkhorn_knopp",
    "gram.use_loss=true",
    "gram.it_load_ema_teacher=1",
    "gram.it_first_update=3",
    "gram.update_frequency=2",
    "gram.max_updates=2",
    "train.checkpoint_period=2",
    "train.keep_checkpoints=10",
)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_phantoms(tmp_path_factory.mktemp("gram") / "phantoms")


@pytest.fixture(scope="module")
def gram_run(manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("gram_full") / "run"
    pretrain(make_config(manifest, *GRAM), run, progress=False)
    return run


def _checkpoint(run: Path, done: int) -> dict:
    return read_checkpoint(run / "checkpoints" / f"step_{done:07d}.pt")


def _equals_teacher(checkpoint: dict) -> bool:
    teacher = checkpoint["teacher"]
    return all(
        torch.equal(value, teacher[f"encoder.{key}"]) for key, value in checkpoint["gram_teacher"].items()
    )


@pytest.mark.slow
def test_gram_teacher_refresh_schedule(gram_run: Path) -> None:
    states = {done: _checkpoint(gram_run, done) for done in (2, 4, 6, 8)}
    assert [states[d]["gram"] for d in (2, 4, 6, 8)] == [
        {"loaded": True, "updates": 0},
        {"loaded": True, "updates": 1},
        {"loaded": True, "updates": 2},
        {"loaded": True, "updates": 2},
    ]
    # Refreshed right after the EMA update of iterations 4 and 6: equal to the teacher saved with them.
    assert _equals_teacher(states[4])
    assert _equals_teacher(states[6])
    assert not _equals_teacher(states[2])  # loaded before iteration 2, the teacher moved on since
    assert not _equals_teacher(states[8])  # max_updates reached: still the snapshot of iteration 6
    assert all(torch.equal(v, states[6]["gram_teacher"][k]) for k, v in states[8]["gram_teacher"].items())
    records = read_metrics(gram_run)
    assert "train/gram" not in records[0]  # no Gram teacher during the first iteration
    assert all(record["train/gram"] > 0 for record in records[1:])  # the student sees masked crops
    assert all(record["train/gram_loss_weight"] == 1.0 for record in records)


class _Interrupt(Exception):
    pass


@pytest.mark.slow
def test_gram_resume_is_exact(gram_run: Path, manifest: Path, tmp_path: Path) -> None:
    def stop_after_5(done: int, values: dict[str, float]) -> None:
        if done == 5:
            raise _Interrupt

    run = tmp_path / "run"
    with pytest.raises(_Interrupt):  # killed after the checkpoint at 4, before the refresh after 6
        pretrain(make_config(manifest, *GRAM), run, progress=False, on_step=stop_after_5)
    pretrain(make_config(manifest, *GRAM), run, progress=False)
    resumed, uninterrupted = _checkpoint(run, 8), _checkpoint(gram_run, 8)
    assert resumed["gram"] == uninterrupted["gram"]
    for part in ("gram_teacher", "student", "teacher"):
        for key, value in uninterrupted[part].items():
            assert torch.equal(resumed[part][key], value), f"{part}.{key}"
    assert read_metrics(run) == read_metrics(gram_run)


def test_gram_teacher_is_frozen_and_outside_the_optimiser(manifest: Path) -> None:
    model = SSLMetaArch(make_config(manifest, *GRAM))
    assert model.gram_teacher is not None
    assert not any(param.requires_grad for param in model.gram_teacher.parameters())
    student_ids = {id(param) for param in model.student.parameters()}
    assert not student_ids & {id(param) for param in model.gram_teacher.parameters()}
    model.train()
    assert not model.gram_teacher.training  # no drop-path in the snapshot
    assert SSLMetaArch(make_config(manifest, "student.arch=test16")).gram_teacher is None  # off by default


def test_gram_weight_schedule_is_dinov3s() -> None:
    # DINOv3's linear_warmup_cosine_decay(start 0, peak 1, end 2, warmup 1, cosine 3) over 6 iterations.
    schedule = LossWeightSchedule(start=0.0, peak=1.0, end=2.0, warmup_epochs=1, cosine_epochs=3)
    weights = gram_weight_schedule(GramConfig(use_loss=True, loss_weight_schedule=schedule), 1, 6)
    np.testing.assert_allclose(weights, [0.0, 1.0, 1.5, 2.0, 2.0, 2.0])
    constant = gram_weight_schedule(GramConfig(use_loss=True, loss_weight=0.5), 10, 4)
    np.testing.assert_allclose(constant, [0.5] * 4)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("gram.it_load_ema_teacher=-1", "gram.it_load_ema_teacher"),
        ("gram.update_frequency=0", "gram.update_frequency"),
        ("gram.tokens_used=masked", "gram.tokens_used"),
        ("gram.loss_weight_schedule.warmup_epochs=10", "gram.loss_weight_schedule"),
    ],
)
def test_bad_gram_settings_name_the_key(manifest: Path, override: str, message: str) -> None:
    extra = ["gram.img_level=true"] if "tokens_used" in override else []
    with pytest.raises(ConfigError, match=message):
        make_config(manifest, "gram.use_loss=true", *extra, override)


CONFIGS = Path(__file__).resolve().parents[2] / "configs"
# The demo's recipe (separate heads, Sinkhorn-Knopp, KoLeo, Gram) on a test-sized DINOv3 ViT/16.
DEMO_TEST_SIZE = (
    "student.arch_overrides={hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, "
    "intermediate_size: 64, image_size: 64}",
    "dino.head_n_prototypes=64",
    "ibot.head_n_prototypes=64",
    "crops.global_crops_size=64",
    "crops.local_crops_size=32",
    "crops.local_crops_number=2",
    "optim.epochs=4",
    "optim.warmup_epochs=1",
    "teacher.warmup_teacher_temp_epochs=1",
    "train.OFFICIAL_EPOCH_LENGTH=2",
    "train.batch_size_per_gpu=4",
    "train.num_workers=0",
    "train.checkpoint_period=2",
    "train.log_period=1",
    "train.export_at_end=false",
    "gram.it_load_ema_teacher=1",
    "gram.it_first_update=2",
    "gram.update_frequency=2",
)


def test_dinov3_configs_load(manifest: Path) -> None:
    full = load_pretrain_config(CONFIGS / "rad_dinov3_vitb16.yaml", [f"train.dataset_path={manifest}"])
    assert (full.student.arch, full.crops.global_crops_size, full.run_iterations) == ("vitb16", 512, 100_000)
    assert full.gram.use_loss
    assert full.ibot.separate_head
    assert full.dino.head_weight_norm is False
    weights = gram_weight_schedule(full.gram, full.train.OFFICIAL_EPOCH_LENGTH, full.total_iterations)
    assert (weights[0], weights[1249], weights[-1]) == (0.0, 2.0, 2.0)  # DINOv3's ramp, then its 2.0
    demo = load_pretrain_config(CONFIGS / "demo_cpu_dinov3.yaml", [f"train.dataset_path={manifest}"])
    assert demo.run_iterations == 900
    assert demo.gram.use_loss


@pytest.mark.slow
def test_cpu_demo_runs_and_resumes_exactly(manifest: Path, tmp_path: Path) -> None:
    def config():  # type: ignore[no-untyped-def]
        overrides = [f"train.dataset_path={manifest}", *DEMO_TEST_SIZE]
        return load_pretrain_config(CONFIGS / "demo_cpu_dinov3.yaml", overrides)

    def stop_after_3(done: int, values: dict[str, float]) -> None:
        if done == 3:
            raise _Interrupt

    pretrain(config(), tmp_path / "full", progress=False)
    with pytest.raises(_Interrupt):
        pretrain(config(), tmp_path / "resumed", progress=False, on_step=stop_after_3)
    pretrain(config(), tmp_path / "resumed", progress=False)
    full, resumed = _checkpoint(tmp_path / "full", 8), _checkpoint(tmp_path / "resumed", 8)
    assert full["gram"] == resumed["gram"] == {"loaded": True, "updates": 3}  # after 2, 4, 6 (max 3)
    for part in ("gram_teacher", "student", "teacher", "objective"):
        for key, value in full[part].items():
            assert torch.equal(resumed[part][key], value), f"{part}.{key}"
    assert read_metrics(tmp_path / "resumed") == read_metrics(tmp_path / "full")
    assert all(np.isfinite(record["train/loss"]) for record in read_metrics(tmp_path / "full"))


@pytest.mark.slow
def test_continue_from_dinov3_weights_and_export_both_formats(manifest: Path, tmp_path: Path) -> None:
    encoder = Encoder.from_preset("test16", seed=3)
    folder = encoder.save_pretrained(tmp_path / "dinov3-hf")
    original = save_original_weights(encoder, tmp_path / "dinov3_test16.pth")
    for source in (folder, original):
        run = tmp_path / f"run-{Path(source).suffix or 'hf'}"
        config = make_config(manifest, *GRAM, f"student.pretrained_weights={source}", "optim.epochs=1")
        model = SSLMetaArch(config)
        assert model.student.encoder.family.name == "dinov3"
        assert not model.student.dino_head.weight_norm  # DINOv3's plain last layer by default
        start = encoder.state_dict()
        assert all(torch.equal(value, model.student.encoder.state_dict()[k]) for k, value in start.items())
        pretrain(config, run, progress=False)
    export_run(run, tmp_path / "hf")
    assert AutoModel.from_pretrained(tmp_path / "hf").config.model_type == "dinov3_vit"
    result = export_run(run, tmp_path / "original", format="dinov3")
    names = sorted(path.name for path in result.files)
    assert names == [
        "backbone_compatible.safetensors",
        "dino_head.safetensors",
        "ibot_head.safetensors",
        "preprocessor_config.json",
    ]
    exported = load_encoder(tmp_path / "original" / "backbone_compatible.safetensors")
    teacher = split_network_state(read_checkpoint(latest_checkpoint(run))["teacher"])["encoder"]  # type: ignore[arg-type]
    assert all(torch.equal(value, teacher[key]) for key, value in exported.state_dict().items())
    assert load_dino_head(tmp_path / "original" / "ibot_head.safetensors").out_dim == 64
    with pytest.raises(ValueError, match="--format dinov3, not dinov2"):
        export_run(run, tmp_path / "wrong", format="dinov2")


def test_resuming_a_run_without_gram_teacher_is_one_line(manifest: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = make_config(manifest, "train.max_iterations=2", "train.checkpoint_period=2")
    pretrain(config, run, progress=False)
    with pytest.raises(Exception, match=r"no Gram teacher .*turn gram\.use_loss off") as error:
        pretrain(make_config(manifest, "gram.use_loss=true"), run, progress=False)
    assert "\n" not in str(error.value)


def test_gram_teacher_selects_masked_or_visible_patches() -> None:
    encoder = Encoder.from_preset("test16", seed=1)
    crops = torch.randn(2, 3, 32, 32)  # (2B, 3, S, S): 2 × 2 patches each
    masks = torch.tensor([[True, False, False, True], [False, False, True, False]])  # (2B, N)
    student = torch.randn(2, 4, encoder.embed_dim)  # (2B, N, D)
    for tokens in ("masked", "unmasked"):
        config = GramConfig(use_loss=True, img_level=False, tokens_used=tokens)  # type: ignore[arg-type]
        gram = GramTeacher(encoder, config)
        with pytest.raises(RuntimeError, match="not loaded"):
            gram(student, crops, masks)
        gram.copy_from(encoder, count=False)
        assert gram.schedule_state() == {"loaded": True, "updates": 0}
        chosen = masks if tokens == "masked" else ~masks
        with torch.no_grad():
            teacher = encoder.eval()(crops).patch_sequence  # (2B, N, D)
        expected = GramLoss(img_level=False)(student[chosen], teacher[chosen])  # (3 or 5, D) patches
        assert gram(student, crops, masks).item() == pytest.approx(expected.item(), rel=1e-6)
