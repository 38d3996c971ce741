"""The encoder of a DINOv2 / DINOv3 train config (``student.arch`` + ``patch_size`` + ``ffn_layer`` …) as
one of our presets and ``student.arch_overrides``.

DINOv2 builds ``vit_<size>`` from ``dinov2/models/vision_transformer.py`` (learned positions); DINOv3 from
``dinov3/models/vision_transformer.py`` (RoPE, storage tokens). The sizes are those files' ``embed_dim``,
``depth``, ``num_heads`` and ``ffn_ratio``; the SwiGLU width follows both codes' rule
(``d = int(hidden * 2 / 3)`` rounded up to the alignment: 8, or 32 / 64 / 128 for DINOv3's
``swiglu32`` / ``swiglu64`` / ``swiglu128``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from raddino.models.presets import DINOV3_MODEL_TYPE, PRESETS, preset_config

Family = str  # "dinov2" | "dinov3"

# (embed_dim, depth, heads, ffn_ratio) of each family's vit_<size> builder.
SIZES: dict[str, tuple[int, int, int, float]] = {
    "vit_small": (384, 12, 6, 4.0),
    "vit_base": (768, 12, 12, 4.0),
    "vit_large": (1024, 24, 16, 4.0),
    "vit_so400m": (1152, 27, 18, 3.777777778),
    "vit_huge2": (1280, 32, 20, 4.0),
    "vit_giant2": (1536, 40, 24, 4.0),
    "vit_7b": (4096, 40, 32, 3.0),
}
DINOV2_PRESETS = {"vit_small": "vits14", "vit_base": "vitb14", "vit_large": "vitl14", "vit_giant2": "vitg14"}
DINOV3_PRESETS = {
    "vit_small": "vits16",
    "vit_base": "vitb16",
    "vit_large": "vitl16",
    "vit_huge2": "vith16plus",
}
SWIGLU_ALIGN = {"swiglu": 8, "swiglufused": 8, "swiglu32": 32, "swiglu64": 64, "swiglu128": 128}

ARCH_KEYS = (
    "student.arch",
    "student.patch_size",
    "student.ffn_layer",
    "student.ffn_ratio",
    "student.qkv_bias",
    "student.proj_bias",
    "student.ffn_bias",
    "student.layerscale",
    "student.num_register_tokens",
    "student.n_storage_tokens",
    "student.mask_k_bias",
    "student.pos_embed_rope_base",
    "student.pos_embed_rope_shift_coords",
    "student.pos_embed_rope_jitter_coords",
    "student.pos_embed_rope_rescale_coords",
)
"""Keys decided together: each one is "mapped" to the preset and overrides they make."""


@dataclass
class Architecture:
    """Our encoder for a foreign ``student`` section: ``arch`` and its ``arch_overrides``, or refusals."""

    arch: str
    overrides: dict[str, Any] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # foreign key → reason

    def values(self) -> dict[str, Any]:
        """Our dotted keys and values."""
        merged = {f"student.arch_overrides.{name}": value for name, value in self.overrides.items()}
        return {"student.arch": self.arch, **merged}


def swiglu_width(hidden: int, align: int) -> int:
    """The hidden width of DINOv2's / DINOv3's SwiGLU FFN for an MLP width ``hidden``."""
    d = int(hidden * 2 / 3)
    return d + (-d % align)


def _preset_values(name: str) -> dict[str, Any]:
    """The preset's transformers config as a dict (its family's shared values included)."""
    values: dict[str, Any] = preset_config(name).to_dict()
    values.setdefault("num_register_tokens", 0)
    return values


def _base(flat: Mapping[str, Any], family: Family, arch: Architecture) -> tuple[str, dict[str, Any]] | None:
    """Our preset for ``student.arch`` and the size overrides a size without a preset needs."""
    name = flat.get("student.arch", "vit_large")
    if name in PRESETS:
        return name, {}
    if name not in SIZES:
        arch.refused["student.arch"] = f"no such DINOv2/DINOv3 architecture (one of {sorted(SIZES)})"
        return None
    dim, depth, heads, ratio = SIZES[name]
    table = DINOV3_PRESETS if family == "dinov3" else DINOV2_PRESETS
    if name in table:
        return table[name], {}
    preset = "vitl16" if family == "dinov3" else "vitl14"
    sizes: dict[str, Any] = {"hidden_size": dim, "num_hidden_layers": depth, "num_attention_heads": heads}
    if family == "dinov3":
        sizes["intermediate_size"] = int(dim * ratio)
    else:
        sizes["mlp_ratio"] = ratio
    return preset, sizes


def _ffn(flat: Mapping[str, Any], family: Family, preset: dict[str, Any], arch: Architecture) -> None:
    layer = flat.get("student.ffn_layer", "mlp")
    dim = arch.overrides.get("hidden_size", preset["hidden_size"])
    if layer not in ("mlp", *SWIGLU_ALIGN):
        arch.refused["student.ffn_layer"] = (
            "only mlp and the SwiGLU layers (swiglu, swiglufused, swiglu32/64/128)"
        )
        return
    gated = layer != "mlp"
    if family == "dinov2":
        if "student.ffn_ratio" in flat:
            arch.overrides["mlp_ratio"] = flat["student.ffn_ratio"]
        if gated != bool(preset.get("use_swiglu_ffn", False)):
            arch.overrides["use_swiglu_ffn"] = gated
        return
    ratio = flat.get("student.ffn_ratio", SIZES.get(str(flat.get("student.arch")), (0, 0, 0, 4.0))[3])
    hidden = int(dim * float(ratio))
    width = swiglu_width(hidden, SWIGLU_ALIGN[layer]) if gated else hidden
    if width != preset.get("intermediate_size") or "hidden_size" in arch.overrides:
        arch.overrides["intermediate_size"] = width
    if gated != bool(preset.get("use_gated_mlp", False)):
        arch.overrides["use_gated_mlp"] = gated
        arch.overrides["hidden_act"] = "silu" if gated else "gelu"


def _biases(flat: Mapping[str, Any], family: Family, arch: Architecture) -> None:
    qkv = flat.get("student.qkv_bias", True)
    if family == "dinov2":
        if not qkv:
            arch.overrides["qkv_bias"] = False
        for key in ("student.proj_bias", "student.ffn_bias"):
            if flat.get(key, True) is False:
                arch.refused[key] = (
                    "transformers' Dinov2 layers always have this bias (DINOv2's default: true)"
                )
        return
    key_bias = bool(qkv) and not flat.get("student.mask_k_bias", False)
    arch.overrides.update(query_bias=bool(qkv), key_bias=key_bias, value_bias=bool(qkv))
    arch.overrides["proj_bias"] = bool(flat.get("student.proj_bias", True))
    arch.overrides["mlp_bias"] = bool(flat.get("student.ffn_bias", True))


def _positions(flat: Mapping[str, Any], arch: Architecture) -> None:
    names = {
        "student.pos_embed_rope_base": "rope_theta",
        "student.pos_embed_rope_shift_coords": "pos_embed_shift",
        "student.pos_embed_rope_jitter_coords": "pos_embed_jitter",
        "student.pos_embed_rope_rescale_coords": "pos_embed_rescale",
    }
    for key, name in names.items():
        if key in flat:
            value = flat[key]
            arch.overrides[name] = None if value is None else float(value)


def architecture(flat: Mapping[str, Any], family: Family) -> Architecture:
    """Our preset and overrides for the ``student.*`` keys of a foreign config (``flat``: dotted keys).

    ``vit_large`` with patch 14 is ``vitl14``; DINOv2's patch 16 keeps the DINOv2 preset with
    ``patch_size: 16``; DINOv3's ``vit_large`` is ``vitl16``; sizes without a preset (``vit_so400m``,
    ``vit_7b``) override a preset's width, depth, heads and FFN width.
    """
    arch = Architecture(arch="")
    base = _base(flat, family, arch)
    if base is None:
        return arch
    arch.arch, arch.overrides = base
    preset = _preset_values(arch.arch)
    is_v3 = preset.get("model_type") == DINOV3_MODEL_TYPE
    if is_v3 != (family == "dinov3"):
        arch.refused["student.arch"] = f"preset {arch.arch} is not a {family.upper()} encoder"
        return arch
    patch = flat.get("student.patch_size", preset["patch_size"])
    if patch != preset["patch_size"]:
        arch.overrides["patch_size"] = patch
    if "student.layerscale" in flat:
        arch.overrides["layerscale_value"] = float(flat["student.layerscale"])
    registers = flat.get("student.n_storage_tokens", flat.get("student.num_register_tokens"))
    if registers is not None and registers != preset["num_register_tokens"]:
        arch.overrides["num_register_tokens"] = registers
    _ffn(flat, family, preset, arch)
    _biases(flat, family, arch)
    if family == "dinov3":
        _positions(flat, arch)
    arch.overrides = {
        name: value for name, value in arch.overrides.items() if preset.get(name, object()) != value
    }
    return arch


__all__ = ["ARCH_KEYS", "SIZES", "Architecture", "architecture", "swiglu_width"]
