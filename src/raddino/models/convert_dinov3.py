"""DINOv3-original-format state dicts ↔ :class:`~raddino.models.encoder.Encoder`.

The DINOv3 format is ``dinov3.models.vision_transformer.DinoVisionTransformer.state_dict()`` — what the
released ``dinov3_vit*16_pretrain_*.pth`` files and DINOv3 training checkpoints (under ``backbone.``) hold::

    cls_token (1, 1, D)   storage_tokens (1, R, D) [R > 0]   mask_token (1, D)
    patch_embed.proj.weight (D, C, p, p)   patch_embed.proj.bias (D,)
    rope_embed.periods (head_dim / 4,)     base ** (4k / head_dim): RoPE's periods, a saved buffer
    blocks.{i}.norm1.*   blocks.{i}.attn.qkv.{weight (3D, D), bias (3D,), bias_mask (3D,)}
    blocks.{i}.attn.proj.*   blocks.{i}.ls1.gamma   blocks.{i}.norm2.*   blocks.{i}.ls2.gamma
    blocks.{i}.mlp.fc1.* / fc2.*   (SwiGLU: mlp.w1.*, mlp.w2.*, mlp.w3.*; silu(w1 x) · w2 x → w3)
    norm.*   [local_cls_norm.*: the norm of local crops' CLS tokens in training only; dropped]

``bias_mask`` (``mask_k_bias``, every released model) zeroes the key's third of the qkv bias, which is why
transformers' ``DINOv3ViTConfig`` has ``key_bias: false``; a file without it has a real key bias. The
mapping is the one of transformers' ``convert_dinov3_vit_to_hf.py``. The architecture is read off the
tensors (the head width from the RoPE periods); only LayerNorm's eps is not in them: it is taken from the
file's metadata when raddino wrote it, else 1e-5 (``layernormbf16``, every released DINOv3 ViT).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from typing import cast

import torch

from raddino.models.blocks import attention_projections
from raddino.models.convert import ConversionError, _listing, unchunk
from raddino.models.encoder import Encoder
from raddino.models.presets import DINOV3_MODEL_TYPE, make_config

logger = logging.getLogger(__name__)

_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")
PERIODS_KEY = "rope_embed.periods"
DINOV3_LAYER_NORM_EPS = 1e-5  # norm_layer "layernormbf16" in dinov3/hub/backbones.py
_TRAINING_ONLY_PREFIX = "local_cls_norm."
# A state-dict entry: the encoder tensors it concatenates along dim 0 (None: a masked key bias of zeros).
Layout = dict[str, Sequence[torch.Tensor | None]]


def is_dinov3_state_dict(state: dict[str, torch.Tensor]) -> bool:
    """Whether a backbone state dict has DINOv3's key names (RoPE periods or storage tokens)."""
    return PERIODS_KEY in state or "storage_tokens" in state


def rope_periods(theta: float, head_dim: int) -> torch.Tensor:
    """DINOv3's ``rope_embed.periods``, (head_dim / 4,), float32: ``theta ** (2k / (head_dim / 2))``."""
    return theta ** (2 * torch.arange(head_dim // 4, dtype=torch.float32) / (head_dim // 2))


def _rope_theta(periods: torch.Tensor, head_dim: int) -> float:
    """The base whose periods these are (least squares on log-periods; 6 significant digits).

    Raises:
        ConversionError: the periods are not a base's powers (DINOv3's min/max-period RoPE, which
            transformers does not implement).
    """
    count = head_dim // 4
    if count < 2:
        return 100.0  # one period (always 1): any base gives it
    steps = torch.arange(count, dtype=torch.float64)
    logs = periods.double().clamp_min(1e-30).log()
    theta = float(math.exp(count * float((steps * logs).sum() / (steps * steps).sum())))
    theta = float(f"{theta:.6g}")
    if not torch.allclose(rope_periods(theta, head_dim).double(), periods.double(), rtol=1e-4, atol=0):
        raise ConversionError(
            f"{PERIODS_KEY} are not base**(4k/{head_dim}) (a min/max-period RoPE); transformers' "
            "DINOv3ViTModel supports only the base parametrisation"
        )
    return theta


def dinov3_config_values(
    state: dict[str, torch.Tensor], layer_norm_eps: float | None = None
) -> dict[str, object]:
    """Config fields for :func:`raddino.models.presets.make_config`, read off a DINOv3 state dict.

    Raises:
        ConversionError: tensors are missing or have shapes no DINOv3 ViT has.
    """
    required = {"cls_token", PERIODS_KEY, "patch_embed.proj.weight", "blocks.0.attn.qkv.weight"}
    if not required <= set(state):
        raise ConversionError(f"not a DINOv3 state dict: missing keys {_listing(required - set(state))}")
    if any(key.startswith("cls_norm.") for key in state):
        raise ConversionError(
            "cls_norm.* (untied CLS and patch norms) is not supported by transformers' DINOv3ViTModel"
        )
    dim = int(state["cls_token"].shape[-1])
    kernel = state["patch_embed.proj.weight"]  # (D, C, p, p)
    if kernel.ndim != 4 or kernel.shape[-1] != kernel.shape[-2]:
        raise ConversionError(f"patch_embed.proj.weight: shape {tuple(kernel.shape)} is not (D, C, p, p)")
    head_dim = 4 * int(state[PERIODS_KEY].numel())
    if head_dim == 0 or dim % head_dim:
        raise ConversionError(f"{PERIODS_KEY} gives {head_dim}-dim heads, which do not split width {dim}")
    blocks = {int(match.group(1)) for key in state if (match := _BLOCK.match(key))}
    if not blocks or blocks != set(range(len(blocks))):
        raise ConversionError(f"blocks must be numbered 0..n-1, found {sorted(blocks)[:10]}")
    swiglu = "blocks.0.mlp.w1.weight" in state
    hidden_key = "blocks.0.mlp.w1.weight" if swiglu else "blocks.0.mlp.fc1.weight"
    if hidden_key not in state:
        raise ConversionError(f"missing key {hidden_key} (neither an MLP nor a SwiGLU block)")
    qkv_bias = "blocks.0.attn.qkv.bias" in state
    masked_key_bias = "blocks.0.attn.qkv.bias_mask" in state
    return {
        "model_type": DINOV3_MODEL_TYPE,
        "hidden_size": dim,
        "num_hidden_layers": len(blocks),
        "num_attention_heads": dim // head_dim,
        "intermediate_size": int(state[hidden_key].shape[0]),
        "use_gated_mlp": swiglu,
        "hidden_act": "silu" if swiglu else "gelu",  # SwiGLUFFN: F.silu; Mlp: nn.GELU
        "patch_size": int(kernel.shape[-1]),
        "num_channels": int(kernel.shape[1]),
        "num_register_tokens": int(state["storage_tokens"].shape[1]) if "storage_tokens" in state else 0,
        "rope_theta": _rope_theta(state[PERIODS_KEY], head_dim),
        "query_bias": qkv_bias,
        "key_bias": qkv_bias and not masked_key_bias,
        "value_bias": qkv_bias,
        "proj_bias": "blocks.0.attn.proj.bias" in state,
        "mlp_bias": f"{hidden_key[: -len('weight')]}bias" in state,
        "layer_norm_eps": DINOV3_LAYER_NORM_EPS if layer_norm_eps is None else layer_norm_eps,
        "layerscale_value": 1.0,
    }


def _layout(encoder: Encoder) -> Layout:
    """Every DINOv3-format entry of ``encoder`` as the encoder's own tensors (no copies)."""
    backbone, family = encoder.backbone, encoder.family
    tokens = family.tokens(backbone)
    projection = family.patch_projection(backbone)
    layout: Layout = {"cls_token": [tokens["cls"]], "mask_token": [tokens["mask"]]}
    if encoder.num_register_tokens:
        layout["storage_tokens"] = [tokens["registers"]]
    layout["patch_embed.proj.weight"] = [projection.weight]
    if projection.bias is not None:
        layout["patch_embed.proj.bias"] = [projection.bias]
    for index, block in enumerate(encoder.blocks):
        prefix = f"blocks.{index}."
        query, key, value, output = attention_projections(block)
        local: Layout = {
            "norm1.weight": [block.get_parameter("norm1.weight")],
            "norm1.bias": [block.get_parameter("norm1.bias")],
            "attn.qkv.weight": [query.weight, key.weight, value.weight],
        }
        biases = (query.bias, key.bias, value.bias)
        if query.bias is not None and value.bias is not None:
            local["attn.qkv.bias"] = list(biases)
        elif any(bias is not None for bias in biases):
            raise ConversionError(
                f"{prefix}attn: the DINOv3 format has query and value biases both on or both off"
            )
        local["attn.proj.weight"] = [output.weight]
        if output.bias is not None:
            local["attn.proj.bias"] = [output.bias]
        local["ls1.gamma"], local["ls2.gamma"] = ([gamma] for gamma in family.layer_scales(block))
        local["norm2.weight"] = [block.get_parameter("norm2.weight")]
        local["norm2.bias"] = [block.get_parameter("norm2.bias")]
        mlp = block.get_submodule("mlp")
        names = {"gate_proj": "w1", "up_proj": "w2", "down_proj": "w3"}
        if not hasattr(mlp, "gate_proj"):
            names = {"up_proj": "fc1", "down_proj": "fc2"}
        for module_name, original in names.items():
            linear = cast(torch.nn.Linear, mlp.get_submodule(module_name))
            local[f"mlp.{original}.weight"] = [linear.weight]
            if linear.bias is not None:
                local[f"mlp.{original}.bias"] = [linear.bias]
        layout.update({prefix + name: tensors for name, tensors in local.items()})
    final_norm = cast(torch.nn.LayerNorm, family.final_norm(backbone))
    layout["norm.weight"], layout["norm.bias"] = [final_norm.weight], [final_norm.bias]
    return layout


def _check_activation(encoder: Encoder) -> None:
    config = encoder.config
    expected = "silu" if getattr(config, "use_gated_mlp", False) else "gelu"
    if config.hidden_act != expected:
        raise ConversionError(
            f"hidden_act {config.hidden_act!r}: the DINOv3 format has GELU MLPs and SiLU-gated SwiGLU "
            f"(this encoder needs {expected!r})"
        )


def _masks_key_bias(name: str, tensors: Sequence[torch.Tensor | None]) -> bool:
    """Whether entry ``name`` is a qkv bias whose key third is masked (it then has a ``bias_mask``)."""
    return name.endswith("attn.qkv.bias") and tensors[1] is None


def _mask_name(bias_name: str) -> str:
    return bias_name[: -len("bias")] + "bias_mask"


def _bias_mask(width: int) -> torch.Tensor:
    """``LinearKMaskedBias.bias_mask``: 1 for the query and value biases, 0 for the key's."""
    mask = torch.ones(3 * width)
    mask[width : 2 * width] = 0
    return mask


def dinov3_state_dict(encoder: Encoder) -> dict[str, torch.Tensor]:
    """The encoder's weights as a DINOv3-format state dict (contiguous copies, ready for safetensors),
    loadable with ``DinoVisionTransformer.load_state_dict(strict=True)``.

    Raises:
        ConversionError: the encoder is not a DINOv3 one, or has settings the format cannot express.
    """
    if encoder.family.name != "dinov3":
        raise ConversionError(f"a {encoder.family.name} encoder has no DINOv3-format state dict")
    _check_activation(encoder)
    state: dict[str, torch.Tensor] = {}
    for name, tensors in _layout(encoder).items():
        reference = next(tensor for tensor in tensors if tensor is not None)
        parts = [torch.zeros_like(reference) if tensor is None else tensor for tensor in tensors]
        state[name] = torch.cat([part.detach() for part in parts]) if len(parts) > 1 else parts[0].detach()
        if _masks_key_bias(name, tensors):
            state[_mask_name(name)] = _bias_mask(reference.shape[0]).to(reference.dtype)
    state["mask_token"] = state["mask_token"].reshape(1, -1)  # (1, 1, D) in transformers, (1, D) here
    config = encoder.config
    state[PERIODS_KEY] = rope_periods(float(config.rope_theta), encoder.embed_dim // encoder.num_heads)
    return {name: tensor.clone().contiguous() for name, tensor in state.items()}


def _expected_shape(tensors: Sequence[torch.Tensor | None]) -> tuple[int, ...]:
    reference = next(tensor for tensor in tensors if tensor is not None)
    if len(tensors) == 1:
        return tuple(reference.shape)
    return (reference.shape[0] * len(tensors), *reference.shape[1:])


def _check_constants(state: dict[str, torch.Tensor], layout: Layout) -> None:
    """``bias_mask`` entries must mask exactly the key bias (anything else is not DINOv3's layer)."""
    for name, tensors in layout.items():
        if _masks_key_bias(name, tensors):
            mask_name = _mask_name(name)
            mask = state[mask_name].float()
            if not torch.equal(mask, _bias_mask(mask.shape[0] // 3)):
                raise ConversionError(f"{mask_name}: masks more or other than the key bias")


@torch.no_grad()
def encoder_from_dinov3(
    state: dict[str, torch.Tensor],
    *,
    layer_norm_eps: float | None = None,
    num_heads: int | None = None,
    dtype: torch.dtype | None = None,
) -> Encoder:
    """Build an encoder from a DINOv3-format state dict, checking every key.

    Args:
        state: The backbone's state dict.
        layer_norm_eps: LayerNorm's eps; ``None``: 1e-5, DINOv3's released models.
        num_heads: Attention heads, if given checked against the head width the RoPE periods imply.
        dtype: Parameter dtype; ``None`` keeps float32.

    Raises:
        ConversionError: unknown keys, missing keys or wrong shapes (the message names them).
    """
    state = unchunk(state)
    dropped = sorted(key for key in state if key.startswith(_TRAINING_ONLY_PREFIX))
    if dropped:
        logger.info("dropping %s: DINOv3 uses it for local crops in training only", ", ".join(dropped))
        state = {key: value for key, value in state.items() if not key.startswith(_TRAINING_ONLY_PREFIX)}
    values = dinov3_config_values(state, layer_norm_eps)
    if num_heads is not None and num_heads != values["num_attention_heads"]:
        raise ConversionError(
            f"num_heads {num_heads} does not fit {PERIODS_KEY}, which gives {values['num_attention_heads']}"
        )
    with torch.device("meta"):  # no random initialisation: every tensor is filled from the state dict
        encoder = Encoder.from_config(make_config(**values), seed=None)
    encoder.to_empty(device="cpu")
    encoder.family.reset_buffers(encoder.backbone)
    if dtype is not None:
        encoder.to(dtype)

    layout = _layout(encoder)
    masks = {_mask_name(name) for name, tensors in layout.items() if _masks_key_bias(name, tensors)}
    expected = set(layout) | masks | {PERIODS_KEY}
    missing, unknown = expected - set(state), set(state) - expected
    if missing or unknown:
        parts = [f"missing keys {_listing(missing)}"] if missing else []
        parts += [f"unknown keys {_listing(unknown)}"] if unknown else []
        raise ConversionError("; ".join(parts))
    _check_constants(state, layout)
    for name, tensors in layout.items():
        value = state[name]
        if name == "mask_token":
            value = value.reshape(1, 1, -1) if value.numel() == encoder.embed_dim else value
        if tuple(value.shape) != _expected_shape(tensors):
            raise ConversionError(f"{name}: shape {tuple(value.shape)}, expected {_expected_shape(tensors)}")
        for target, part in zip(tensors, value.chunk(len(tensors)), strict=True):
            if target is not None:  # a masked key bias is not used: nothing to copy
                target.copy_(part)
    return encoder.eval()
