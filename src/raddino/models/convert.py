"""DINOv2-original-format state dicts ↔ :class:`~raddino.models.encoder.Encoder`.

The DINOv2 format is ``DinoVisionTransformer.state_dict()`` — what ``torch.hub`` DINOv2 checkpoints and the
RAD-DINO release's ``backbone_compatible.safetensors`` hold::

    cls_token (1, 1, D)   pos_embed (1, 1 + N, D)   mask_token (1, D)   register_tokens (1, R, D) [optional]
    patch_embed.proj.weight (D, 3, p, p)   patch_embed.proj.bias (D,)
    blocks.{i}.norm1.{weight,bias}   blocks.{i}.attn.qkv.{weight,bias} (3D, D)   blocks.{i}.attn.proj.*
    blocks.{i}.ls1.gamma   blocks.{i}.norm2.*   blocks.{i}.mlp.fc1.* / fc2.*  (SwiGLU: mlp.w12.*, mlp.w3.*)
    blocks.{i}.ls2.gamma   norm.{weight,bias}

Chunked training checkpoints (``blocks.{chunk}.{i}.…``, DINOv2's ``block_chunks`` for FSDP) are accepted.
The architecture is read off the tensors; only the number of attention heads is not in them: it is taken
from the file's metadata when raddino wrote it, else ``D / 64``, the head width of every DINOv2 model
(ViT-S/6, B/12, L/16, g/24).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict

import torch

from raddino.models.blocks import block_tensors, expected_block_names, load_block_tensors
from raddino.models.encoder import Encoder
from raddino.models.presets import make_config

_CHUNKED = re.compile(r"^blocks\.(\d+)\.(\d+)\.(.+)$")
_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")
# DINOv2's ViTs use 64-dim heads at every size (vision_transformer.py: vit_small … vit_giant2).
DINOV2_HEAD_DIM = 64


class ConversionError(ValueError):
    """A state dict does not describe a DINOv2 ViT; the message names the keys at fault."""


def _listing(names: set[str] | list[str], limit: int = 8) -> str:
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def unchunk(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename ``blocks.{chunk}.{i}.x`` to ``blocks.{i}.x``; other keys are kept."""
    renamed = {}
    for key, value in state.items():
        match = _CHUNKED.match(key)
        renamed[f"blocks.{match.group(2)}.{match.group(3)}" if match else key] = value
    return renamed


def _mlp_ratio(hidden: int, dim: int, swiglu: bool) -> int:
    """The integer MLP ratio that gives ``hidden`` features (SwiGLU keeps 2/3, rounded up to 8)."""
    for ratio in range(1, 17):
        features = dim * ratio
        if swiglu:
            features = (int(features * 2 / 3) + 7) // 8 * 8
        if features == hidden:
            return ratio
    kind = "SwiGLU" if swiglu else "MLP"
    raise ConversionError(f"{kind} hidden width {hidden} is not an integer ratio of the width {dim}")


def dinov2_config_values(state: dict[str, torch.Tensor], num_heads: int | None = None) -> dict:
    """Config fields for :func:`raddino.models.presets.make_config`, read off a DINOv2 state dict.

    Raises:
        ConversionError: tensors are missing or have shapes no DINOv2 ViT has.
    """
    required = {"cls_token", "pos_embed", "patch_embed.proj.weight"}
    if not required <= set(state):
        raise ConversionError(f"not a DINOv2 state dict: missing keys {_listing(required - set(state))}")
    dim = int(state["cls_token"].shape[-1])
    kernel = state["patch_embed.proj.weight"]  # (D, C, p, p)
    if kernel.ndim != 4 or kernel.shape[-1] != kernel.shape[-2]:
        raise ConversionError(f"patch_embed.proj.weight: shape {tuple(kernel.shape)} is not (D, C, p, p)")
    positions = int(state["pos_embed"].shape[1]) - 1
    side = math.isqrt(positions)
    if side * side != positions:
        raise ConversionError(f"pos_embed holds {positions} patch positions, not a square grid")
    blocks = {int(match.group(1)) for key in state if (match := _BLOCK.match(key))}
    if not blocks or blocks != set(range(len(blocks))):
        raise ConversionError(f"blocks must be numbered 0..n-1, found {sorted(blocks)[:10]}")
    swiglu = "blocks.0.mlp.w12.weight" in state
    hidden_key = "blocks.0.mlp.w12.weight" if swiglu else "blocks.0.mlp.fc1.weight"
    if hidden_key not in state:
        raise ConversionError(f"missing key {hidden_key} (neither an MLP nor a SwiGLU block)")
    hidden = int(state[hidden_key].shape[0]) // (2 if swiglu else 1)
    if num_heads is None:
        if dim % DINOV2_HEAD_DIM:
            raise ConversionError(
                f"width {dim} is not a multiple of DINOv2's 64-dim heads; pass num_heads explicitly"
            )
        num_heads = dim // DINOV2_HEAD_DIM
    if dim % num_heads:
        raise ConversionError(f"width {dim} does not split into {num_heads} heads")
    registers = int(state["register_tokens"].shape[1]) if "register_tokens" in state else 0
    patch = int(kernel.shape[-1])
    return {
        "hidden_size": dim,
        "num_hidden_layers": len(blocks),
        "num_attention_heads": num_heads,
        "mlp_ratio": _mlp_ratio(hidden, dim, swiglu),
        "use_swiglu_ffn": swiglu,
        "patch_size": patch,
        "image_size": side * patch,
        "num_channels": int(kernel.shape[1]),
        "qkv_bias": "blocks.0.attn.qkv.bias" in state,
        "num_register_tokens": registers,
        "layer_norm_eps": 1e-6,  # DINOv2: norm_layer = partial(nn.LayerNorm, eps=1e-6)
        "layerscale_value": 1.0,
        "hidden_act": "gelu",
    }


def _top_level(encoder: Encoder) -> dict[str, torch.Tensor]:
    """The parameters outside the blocks, under DINOv2 names."""
    backbone = encoder.backbone
    names = {
        "cls_token": "embeddings.cls_token",  # (1, 1, D)
        "pos_embed": "embeddings.position_embeddings",  # (1, 1 + N, D)
    }
    if encoder.num_register_tokens:
        names["register_tokens"] = "embeddings.register_tokens"  # (1, R, D)
    if backbone.embeddings.mask_token is not None:
        names["mask_token"] = "embeddings.mask_token"  # (1, D) in both formats
    names["patch_embed.proj.weight"] = "embeddings.patch_embeddings.projection.weight"  # (D, C, p, p)
    names["patch_embed.proj.bias"] = "embeddings.patch_embeddings.projection.bias"
    names["norm.weight"] = "layernorm.weight"
    names["norm.bias"] = "layernorm.bias"
    tensors: dict[str, torch.Tensor] = {key: backbone.get_parameter(name) for key, name in names.items()}
    return tensors


def dinov2_state_dict(encoder: Encoder) -> dict[str, torch.Tensor]:
    """The encoder's weights as a DINOv2-format state dict (contiguous copies, ready for safetensors).

    Raises:
        ConversionError: the encoder is not a DINOv2 one (a DINOv3 encoder has no position table).
    """
    if encoder.family.name != "dinov2":
        raise ConversionError(
            f"a {encoder.family.name} encoder has no DINOv2-format state dict; use its own format "
            f"({encoder.family.name})"
        )
    state = {name: tensor.detach() for name, tensor in _top_level(encoder).items()}
    if "mask_token" not in state:
        # A transformers model built without a mask token: DINOv2 initialises it to zeros.
        state["mask_token"] = torch.zeros(1, encoder.embed_dim, dtype=state["cls_token"].dtype)
    for index, layer in enumerate(encoder.blocks):
        for name, tensor in block_tensors(layer).items():
            state[f"blocks.{index}.{name}"] = tensor
    return {name: tensor.clone().contiguous() for name, tensor in state.items()}


@torch.no_grad()
def encoder_from_dinov2(
    state: dict[str, torch.Tensor], *, num_heads: int | None = None, dtype: torch.dtype | None = None
) -> Encoder:
    """Build an encoder from a DINOv2-format state dict, checking every key.

    Args:
        state: The state dict (chunked block names accepted).
        num_heads: Attention heads; ``None`` uses ``D / 64`` (DINOv2's head width).
        dtype: Parameter dtype; ``None`` keeps float32.

    Raises:
        ConversionError: unknown keys, missing keys or wrong shapes (the message names them).
    """
    state = unchunk(state)
    config = make_config(**dinov2_config_values(state, num_heads))
    # No random initialisation (giant has 1.1B parameters): build on the meta device, then fill every
    # tensor from the state dict.
    with torch.device("meta"):
        encoder = Encoder.from_config(config, seed=None)
    encoder.to_empty(device="cpu")
    if dtype is not None:
        encoder.to(dtype)

    targets = _top_level(encoder)
    layers = list(encoder.blocks)
    expected = set(targets) | {
        f"blocks.{i}.{name}" for i, layer in enumerate(layers) for name in expected_block_names(layer)
    }
    missing, unknown = expected - set(state), set(state) - expected
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing keys {_listing(missing)}")
        if unknown:
            parts.append(f"unknown keys {_listing(unknown)}")
        raise ConversionError("; ".join(parts))

    for name, target in targets.items():
        value = state[name]
        if tuple(value.shape) != tuple(target.shape):
            raise ConversionError(f"{name}: shape {tuple(value.shape)}, expected {tuple(target.shape)}")
        target.copy_(value)
    per_block: dict[int, dict[str, torch.Tensor]] = defaultdict(dict)
    for key, value in state.items():
        if match := _BLOCK.match(key):
            per_block[int(match.group(1))][match.group(2)] = value
    for index, layer in enumerate(layers):
        try:
            load_block_tensors(layer, per_block[index])
        except ValueError as error:
            raise ConversionError(f"blocks.{index}.{error}") from error
    return encoder.eval()
