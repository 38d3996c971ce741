"""DINOv2's and DINOv3's own train configs through ``load_config``: mapped, honoured or refused per key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from foreign_config_files import (
    DINOV2_SSL_DEFAULT,
    DINOV2_VITG14,
    DINOV2_VITL14,
    DINOV2_VITL16_SHORT,
    DINOV3_SSL_DEFAULT,
    DINOV3_VIT7B_GRAM_ANCHOR,
    DINOV3_VIT7B_PRETRAIN,
    DINOV3_VITL16_DISTILLED,
    DINOV3_VITL_IM1K,
)
from pretrain_helpers import TEST_CONFIG, make_phantoms

from raddino.config import ConfigError, load_config
from raddino.models.presets import preset_config
from raddino.pretrain.config import PretrainConfig
from raddino.pretrain.foreign_arch import swiglu_width
from raddino.pretrain.foreign_config import decide, family_of, flatten, is_foreign
from raddino.pretrain.train import PretrainRun

DATA = {"train.dataset_path": "images.csv"}
XRAY = ["crops.mean=0.5307", "crops.std=0.2583"]


def _load(
    tmp_path: Path, text: str, overrides: list[str] | None = None, cls: type = PretrainConfig
) -> object:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return load_config(cls, path, overrides or [], DATA)


def test_dinov2_ssl_default_maps_each_key(tmp_path: Path) -> None:
    config = _load(tmp_path, DINOV2_SSL_DEFAULT)
    assert isinstance(config, PretrainConfig)
    assert config.student.arch == "vitl14"
    assert config.student.arch_overrides == {"patch_size": 16}  # DINOv2's ViT-L/16, layerscale = preset's
    assert config.student.pretrained_weights is None  # '' is DINOv2's none
    assert config.student.drop_path_rate == 0.3
    assert config.optim.base_lr == 0.004  # optim.lr: 0. is derived by DINOv2, honoured
    assert config.compute.mixed_precision == "fp16"
    assert config.compute.strategy == "fsdp"  # SHARD_GRAD_OP
    assert config.train.export_period == 12500  # evaluation.eval_period_iterations
    assert (config.crops.global_crops_size, config.crops.local_crops_size) == (224, 96)
    assert config.crops.global_crops_scale == (0.32, 1.0)
    assert config.train.batch_size_per_gpu == 64


def test_dinov2_vitl14_merges_onto_dinov2_defaults(tmp_path: Path) -> None:
    config = _load(tmp_path, DINOV2_VITL14)
    assert isinstance(config, PretrainConfig)
    assert config.student.arch == "vitl14"
    assert config.student.arch_overrides == {"use_swiglu_ffn": True}  # ffn_layer: swiglufused
    assert config.ibot.separate_head
    assert config.ibot.head_n_prototypes == 131072
    assert config.train.centering == "sinkhorn_knopp"
    assert config.optim.base_lr == 2e-4
    assert config.optim.layerwise_decay == 1.0
    assert config.crops.local_crops_size == 98
    assert config.crops.global_crops_size == 224  # not in the file: DINOv2's default, not ours (518)
    assert config.optim.weight_decay == 0.04  # DINOv2 default (same as ours)


def test_dinov2_vitg14_and_short(tmp_path: Path) -> None:
    giant = _load(tmp_path, DINOV2_VITG14)
    assert isinstance(giant, PretrainConfig)
    assert giant.student.arch == "vitg14"
    assert giant.student.arch_overrides == {}
    short = _load(tmp_path, DINOV2_VITL16_SHORT)
    assert isinstance(short, PretrainConfig)
    assert short.student.arch == "vitl14"
    assert short.student.arch_overrides == {"patch_size": 16}


def test_dinov2_dataset_name_is_refused_without_data(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(DINOV2_SSL_DEFAULT)
    with pytest.raises(ConfigError) as error:
        load_config(PretrainConfig, path)
    message = str(error.value)
    assert "\n" not in message
    assert "train.dataset_path: 'ImageNet:split=TRAIN': a DINOv2/v3 dataset name" in message


def test_dinov3_vitl_im1k_lr_derivation_and_architecture(tmp_path: Path) -> None:
    config = _load(tmp_path, DINOV3_VITL_IM1K)
    assert isinstance(config, PretrainConfig)
    # DINOv3's lr 1e-3 is scaled by 4·sqrt(B/1024); ours by sqrt(B/1024): base_lr = 4e-3.
    assert config.optim.base_lr == pytest.approx(0.004)
    assert config.scaled_lr(32) == pytest.approx(0.001 * 4 * (64 * 32 / 1024) ** 0.5)
    assert config.student.arch == "vitl16"
    overrides = config.student.arch_overrides
    # n_storage_tokens 0, mask_k_bias false, rescale_coords null: DINOv3's ssl default ViT-L, not the release
    assert overrides == {"num_register_tokens": 0, "key_bias": True, "pos_embed_rescale": None}
    assert config.compute.mixed_precision == "bf16"
    assert config.ibot.separate_head
    assert config.train.centering == "sinkhorn_knopp"
    assert config.dino.head_weight_norm is False  # force_weight_norm: false
    assert config.train.checkpoint_period == 3750
    assert config.train.keep_checkpoints == 3
    assert config.crops.horizontal_flip_p == 0.5


def test_dinov3_rgb_statistics_refused_until_crops_mean_given(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"crops\.rgb_mean: \[0\.485, 0\.456, 0\.406\]: per-channel"):
        _load(tmp_path, DINOV3_SSL_DEFAULT)
    config = _load(tmp_path, DINOV3_SSL_DEFAULT, XRAY)
    assert isinstance(config, PretrainConfig)
    assert config.crops.mean == 0.5307
    assert config.optim.base_lr == pytest.approx(0.004)


def test_dinov3_7b_files_name_what_cannot_be_done(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        _load(tmp_path, DINOV3_VIT7B_PRETRAIN, XRAY)
    message = str(error.value)
    assert "student.untie_global_and_local_cls_norm: True: a separate local-crop CLS norm" in message
    assert "student.fp8_enabled" in message
    assert "\n" not in message
    with pytest.raises(ConfigError, match=r"dino\.reweight_dino_local_loss: True"):
        _load(tmp_path, DINOV3_VIT7B_GRAM_ANCHOR, XRAY)
    with pytest.raises(ConfigError, match=r"MODEL\.META_ARCHITECTURE: 'MultiDistillationMetaArch'"):
        _load(tmp_path, DINOV3_VITL16_DISTILLED, XRAY)


def test_dinov3_7b_gram_anchor_maps_once_the_refused_values_change(tmp_path: Path) -> None:
    fixes = [
        "dino.reweight_dino_local_loss=false",
        "gram.ckpt=null",
        "gram.it_load_ema_teacher=0",
        "crops.gram_teacher_crops_size=null",
        "student.untie_global_and_local_cls_norm=false",
        "student.fp8_enabled=false",
        "checkpointing.keep_every=null",
        "schedules.lr.end=0",
        *XRAY,
    ]
    config = _load(tmp_path, DINOV3_VIT7B_GRAM_ANCHOR, fixes)
    assert isinstance(config, PretrainConfig)
    assert config.optim.base_lr == pytest.approx(4 * 3e-5)  # schedules.lr.peak, DINOv3's 4·sqrt rule
    assert (config.optim.warmup_epochs, config.optim.freeze_last_layer_epochs, config.optim.min_lr) == (
        100,
        5,
        0,
    )
    assert (config.teacher.momentum_teacher, config.teacher.final_momentum_teacher) == (0.999, 0.999)
    assert (config.teacher.warmup_teacher_temp, config.teacher.teacher_temp) == (0.04, 0.07)
    assert config.teacher.warmup_teacher_temp_epochs == 100
    assert (config.optim.weight_decay, config.optim.weight_decay_end) == (0.04, 0.04)
    gram = config.gram
    assert gram.use_loss
    assert gram.img_level
    assert gram.max_updates == 3
    assert gram.it_first_update == 1010000
    assert gram.loss_weight_schedule is not None
    assert gram.loss_weight_schedule.end == 2.0
    overrides = config.student.arch_overrides
    width = swiglu_width(4096 * 3, 64)  # swiglu64, ffn_ratio 3
    assert width == 8192
    assert overrides["hidden_size"] == 4096
    assert overrides["num_hidden_layers"] == 40
    assert overrides["intermediate_size"] == width
    assert overrides["use_gated_mlp"] is True
    assert overrides["query_bias"] is False
    assert overrides["value_bias"] is False
    assert preset_config(config.student.arch, **overrides).hidden_size == 4096  # a valid transformers config


def test_refused_value_is_one_line_naming_the_key(tmp_path: Path) -> None:
    text = DINOV2_VITL14.replace("ffn_layer: swiglufused", "ffn_layer: identity")
    with pytest.raises(ConfigError) as error:
        _load(tmp_path, text)
    assert "student.ffn_layer: 'identity': only mlp and the SwiGLU layers" in str(error.value)
    text = DINOV2_SSL_DEFAULT.replace("drop_path_uniform: true", "drop_path_uniform: false")
    with pytest.raises(ConfigError, match=r"student\.drop_path_uniform: False: only uniform drop-path"):
        _load(tmp_path, text)


def test_misspelt_key_still_fails(tmp_path: Path) -> None:
    text = DINOV2_SSL_DEFAULT.replace("layerscale:", "layerscal:")
    with pytest.raises(ConfigError, match=r"config\.yaml: unknown key 'student\.layerscal'$"):
        _load(tmp_path, text)
    with pytest.raises(ConfigError, match=r"unknown key 'optim\.base_lrr'"):
        _load(tmp_path, DINOV2_VITL14, ["optim.base_lrr=1e-3"])


def test_our_own_configs_are_not_foreign() -> None:
    for path in sorted(Path("configs").glob("*.yaml")):
        flat = flatten(yaml.safe_load(path.read_text()))
        assert not is_foreign(flat, PretrainRun), path


def test_every_key_of_the_real_files_is_decided() -> None:
    texts = [DINOV2_SSL_DEFAULT, DINOV2_VITL14, DINOV3_SSL_DEFAULT, DINOV3_VIT7B_GRAM_ANCHOR]
    for text in texts:
        flat = flatten(yaml.safe_load(text))
        kept, decisions = decide(flat, PretrainConfig)
        unknown = [
            key for key in kept if key.split(".")[0] not in {f for f in PretrainConfig.__dataclass_fields__}
        ]
        assert not unknown
        assert family_of(flat) == ("dinov3" if "META_ARCHITECTURE" in text else "dinov2")
        assert all(
            d.kind in ("mapped", "honoured", "refused") and (d.values or d.reason) for d in decisions.values()
        )


def test_our_name_wins_and_run_folder_gets_our_names(tmp_path: Path) -> None:
    """One pre-training iteration from DINOv2's ssl_default_config.yaml at test size, end to end."""
    from raddino.config import save_config
    from raddino.pretrain.train import pretrain

    manifest = make_phantoms(tmp_path / "ph", n=8)
    ours = yaml.safe_load(TEST_CONFIG.read_text())
    overrides = [
        "student.arch=test",
        "compute.mixed_precision=fp32",  # ours wins over compute_precision's fp16
        "train.num_workers=0",
        "train.batch_size_per_gpu=4",
        "train.OFFICIAL_EPOCH_LENGTH=1",
        "train.max_iterations=1",
        "optim.epochs=2",
        "optim.warmup_epochs=1",
        "dino.head_n_prototypes=64",
        "dino.head_bottleneck_dim=16",
        "dino.head_hidden_dim=32",
        "crops.global_crops_size=56",
        "crops.local_crops_size=28",
        "crops.local_crops_number=2",
        f"train.dataset_path={manifest}",
        "compute.device=cpu",
    ]
    config = _load(tmp_path, DINOV2_SSL_DEFAULT, overrides)
    assert isinstance(config, PretrainConfig)
    assert config.compute.mixed_precision == "fp32"
    assert config.student.arch == "test"
    assert config.student.arch_overrides == {"patch_size": 16}  # DINOv2 ViT-L/16 on our test preset
    assert ours["student"]["arch"] == "test"
    config.student.arch_overrides = {}  # the test preset's patch 14 at 56 px
    result = pretrain(config, tmp_path / "run", progress=False)
    assert result.iterations == 1
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert "MODEL" not in saved
    assert "compute_precision" not in saved
    assert "patch_size" not in saved["student"]
    save_config(config, tmp_path / "again.yaml")
    assert load_config(PretrainConfig, tmp_path / "again.yaml") == config
