"""One transformer block's weights in DINOv2's own names, whatever the installed transformers calls them.

transformers ≥ 5 keeps a Dinov2 block's attention as separate ``q_proj`` / ``k_proj`` / ``v_proj`` /
``o_proj`` layers and a SwiGLU MLP as ``gate_proj`` / ``up_proj`` / ``down_proj``; transformers 4 had
``attention.attention.query`` … and ``mlp.weights_in`` / ``weights_out`` (the names in released files).
DINOv2 fuses the three projections into one ``attn.qkv`` and the SwiGLU input into one ``mlp.w12``. This
module reads and writes a block through its in-memory modules, so conversion never depends on key names
that change between transformers versions.
"""

from __future__ import annotations

import torch
from torch import nn


def _linear(module: nn.Module, *paths: str) -> nn.Linear:
    """The first ``nn.Linear`` found at one of the dotted ``paths`` below ``module``."""
    for path in paths:
        try:
            found = module.get_submodule(path)
        except AttributeError:
            continue
        if isinstance(found, nn.Linear):
            return found
    raise AttributeError(f"{type(module).__name__} has none of {paths}; unsupported transformers layout")


def attention_projections(layer: nn.Module) -> tuple[nn.Linear, nn.Linear, nn.Linear, nn.Linear]:
    """The query, key, value and output projections of one Dinov2 layer."""
    attention = layer.get_submodule("attention")
    return (
        _linear(attention, "q_proj", "attention.query"),
        _linear(attention, "k_proj", "attention.key"),
        _linear(attention, "v_proj", "attention.value"),
        _linear(attention, "o_proj", "output.dense"),
    )


def _is_swiglu(layer: nn.Module) -> bool:
    mlp = layer.get_submodule("mlp")
    return not hasattr(mlp, "fc1")


def _swiglu_linears(layer: nn.Module) -> tuple[list[nn.Linear], nn.Linear]:
    """SwiGLU input projections ([gate, up] or [fused]) and the output projection."""
    mlp = layer.get_submodule("mlp")
    if hasattr(mlp, "gate_proj"):
        return [_linear(mlp, "gate_proj"), _linear(mlp, "up_proj")], _linear(mlp, "down_proj")
    return [_linear(mlp, "weights_in")], _linear(mlp, "weights_out")


def _layer_scales(layer: nn.Module) -> tuple[nn.Parameter, nn.Parameter]:
    return layer.get_parameter("layer_scale1.lambda1"), layer.get_parameter("layer_scale2.lambda1")


def block_tensors(layer: nn.Module) -> dict[str, torch.Tensor]:
    """One layer's weights under DINOv2's block-local names (``attn.qkv.weight``, ``ls1.gamma``, …).

    The tensors are new (concatenated) or detached views; changing them does not change the layer.
    """
    query, key, value, output = attention_projections(layer)
    tensors: dict[str, torch.Tensor] = {}
    for norm in ("norm1", "norm2"):
        for kind in ("weight", "bias"):
            tensors[f"{norm}.{kind}"] = layer.get_parameter(f"{norm}.{kind}").detach()
    tensors["attn.qkv.weight"] = torch.cat([query.weight, key.weight, value.weight]).detach()  # (3D, D)
    if query.bias is not None:
        tensors["attn.qkv.bias"] = torch.cat([query.bias, key.bias, value.bias]).detach()  # (3D,)
    tensors["attn.proj.weight"] = output.weight.detach()
    tensors["attn.proj.bias"] = output.bias.detach()
    scale1, scale2 = _layer_scales(layer)
    tensors["ls1.gamma"], tensors["ls2.gamma"] = scale1.detach(), scale2.detach()
    if _is_swiglu(layer):
        inputs, down = _swiglu_linears(layer)
        tensors["mlp.w12.weight"] = torch.cat([linear.weight for linear in inputs]).detach()  # (2H, D)
        tensors["mlp.w12.bias"] = torch.cat([linear.bias for linear in inputs]).detach()
        tensors["mlp.w3.weight"], tensors["mlp.w3.bias"] = down.weight.detach(), down.bias.detach()
    else:
        for name in ("fc1", "fc2"):
            linear = _linear(layer, f"mlp.{name}")
            tensors[f"mlp.{name}.weight"], tensors[f"mlp.{name}.bias"] = (
                linear.weight.detach(),
                linear.bias.detach(),
            )
    return tensors


def expected_block_names(layer: nn.Module) -> set[str]:
    """The DINOv2 block-local names :func:`load_block_tensors` needs for this layer."""
    return set(block_tensors(layer))


@torch.no_grad()
def load_block_tensors(layer: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Copy DINOv2-named block weights into ``layer`` (the inverse of :func:`block_tensors`).

    Raises:
        ValueError: a tensor has the wrong shape (the message names it and both shapes).
    """

    def copy(target: torch.Tensor, name: str, value: torch.Tensor) -> None:
        if tuple(target.shape) != tuple(value.shape):
            raise ValueError(f"{name}: shape {tuple(value.shape)}, expected {tuple(target.shape)}")
        target.copy_(value)

    for norm in ("norm1", "norm2"):
        for kind in ("weight", "bias"):
            copy(layer.get_parameter(f"{norm}.{kind}"), f"{norm}.{kind}", tensors[f"{norm}.{kind}"])
    projections = attention_projections(layer)
    query, key, value, output = projections
    qkv_weight = tensors["attn.qkv.weight"]
    if qkv_weight.shape[0] != 3 * query.weight.shape[0]:
        raise ValueError(
            f"attn.qkv.weight: shape {tuple(qkv_weight.shape)}, expected 3×{tuple(query.weight.shape)}"
        )
    for linear, part in zip((query, key, value), qkv_weight.chunk(3), strict=True):
        copy(linear.weight, "attn.qkv.weight", part)
    if query.bias is not None:
        for linear, part in zip((query, key, value), tensors["attn.qkv.bias"].chunk(3), strict=True):
            copy(linear.bias, "attn.qkv.bias", part)
    copy(output.weight, "attn.proj.weight", tensors["attn.proj.weight"])
    copy(output.bias, "attn.proj.bias", tensors["attn.proj.bias"])
    scale1, scale2 = _layer_scales(layer)
    copy(scale1, "ls1.gamma", tensors["ls1.gamma"])
    copy(scale2, "ls2.gamma", tensors["ls2.gamma"])
    if _is_swiglu(layer):
        inputs, down = _swiglu_linears(layer)
        # DINOv2's SwiGLUFFN: x1, x2 = w12(x).chunk(2); silu(x1) * x2 — the first half is the gate.
        weights = tensors["mlp.w12.weight"].chunk(len(inputs))
        biases = tensors["mlp.w12.bias"].chunk(len(inputs))
        for linear, weight, bias in zip(inputs, weights, biases, strict=True):
            copy(linear.weight, "mlp.w12.weight", weight)
            copy(linear.bias, "mlp.w12.bias", bias)
        copy(down.weight, "mlp.w3.weight", tensors["mlp.w3.weight"])
        copy(down.bias, "mlp.w3.bias", tensors["mlp.w3.bias"])
    else:
        for name in ("fc1", "fc2"):
            linear = _linear(layer, f"mlp.{name}")
            copy(linear.weight, f"mlp.{name}.weight", tensors[f"mlp.{name}.weight"])
            copy(linear.bias, f"mlp.{name}.bias", tensors[f"mlp.{name}.bias"])
