"""The DINO projection head (DINOv2 ``layers/dino_head.py``) and its ``dino_head.safetensors`` file.

CLS token (768) → Linear 2048 → GELU → Linear 2048 → GELU → Linear 256 (bottleneck) → L2-normalise →
weight-normalised Linear to 65536 prototypes, no bias (DINOv2 defaults ``head_hidden_dim`` 2048,
``head_bottleneck_dim`` 256, ``head_n_prototypes`` 65536, ``head_nlayers`` 3). Parameter names match DINOv2's
(``mlp.0.weight``, ``mlp.2.weight``, ``mlp.4.weight``, ``last_layer.weight_g``, ``last_layer.weight_v``),
so the release's file loads as is.

DINOv3's heads (``dinov3/layers/dino_head.py``, DINO and iBOT alike) have the same MLP and a plain
``nn.Linear`` as the last layer (``last_layer.weight``, no weight norm): ``weight_norm=False``. A file's
keys say which it is; a training checkpoint's ``dino_head.`` or ``ibot_head.`` entries are read.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from raddino.io.atomic import atomic_path


class WeightNormLinear(nn.Module):
    """``weight_norm(nn.Linear(in, out, bias=False))``: weight = g · v / ‖v‖ per output row.

    Kept as plain ``weight_g`` (out, 1) and ``weight_v`` (out, in) parameters — the names in DINOv2
    checkpoints — instead of torch's parametrisation, whose state-dict names differ.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight_v = nn.Parameter(torch.empty(out_features, in_features))
        self.weight_g = nn.Parameter(torch.ones(out_features, 1))  # DINOv2 fills g with 1
        nn.init.trunc_normal_(self.weight_v, std=0.02)

    @property
    def weight(self) -> torch.Tensor:
        """The effective weight (out, in).

        The per-row scale ``g / ‖v‖`` (out, 1) is formed first, so the (out, in) matrix is touched by one
        multiplication instead of a multiplication and a division (and likewise in the backward pass):
        with 65,536 prototypes that matrix is the head's largest tensor.
        """
        scale = self.weight_g / self.weight_v.norm(dim=1, keepdim=True)  # (out, 1)
        return self.weight_v * scale  # (out, in)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.linear(features, self.weight)


class DINOHead(nn.Module):
    """DINOv2's (or DINOv3's) projection head.

    Args:
        in_dim: Encoder width (768 for ViT-B).
        out_dim: Prototypes (65536).
        hidden_dim: MLP width (2048).
        bottleneck_dim: Width before the prototypes (256).
        nlayers: Linear layers in the MLP (3).
        weight_norm: Weight-normalised last layer (DINOv2); ``False``: a plain linear one (DINOv3).
    """

    def __init__(
        self,
        in_dim: int = 768,
        out_dim: int = 65536,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        nlayers: int = 3,
        weight_norm: bool = True,
    ) -> None:
        super().__init__()
        if nlayers < 1:
            raise ValueError(f"nlayers must be at least 1, got {nlayers}")
        widths = [in_dim] + [hidden_dim] * (nlayers - 1) + [bottleneck_dim]
        layers: list[nn.Module] = []
        for index, (width_in, width_out) in enumerate(itertools.pairwise(widths)):
            layers.append(nn.Linear(width_in, width_out))
            if index < nlayers - 1:
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        for module in self.mlp:
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        self.last_layer: nn.Module
        if weight_norm:
            self.last_layer = WeightNormLinear(bottleneck_dim, out_dim)
        else:
            self.last_layer = nn.Linear(bottleneck_dim, out_dim, bias=False)
            nn.init.trunc_normal_(self.last_layer.weight, std=0.02)  # DINOv3's _init_weights
        self.weight_norm = weight_norm
        self.in_dim, self.out_dim = in_dim, out_dim
        self.hidden_dim, self.bottleneck_dim, self.nlayers = hidden_dim, bottleneck_dim, nlayers

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Prototype logits (B, out_dim) for features (B, in_dim)."""
        projected = self.mlp(features)  # (B, bottleneck)
        eps = 1e-6 if projected.dtype == torch.float16 else 1e-12  # as DINOv2: 1e-12 underflows in fp16
        projected = F.normalize(projected, dim=-1, p=2, eps=eps)
        return self.last_layer(projected)  # (B, out_dim)


_MLP_KEY = re.compile(r"^mlp\.(\d+)\.weight$")


_LAST_LAYER_KEYS = ("last_layer.weight_v", "last_layer.weight")  # DINOv2 (weight norm), DINOv3 (plain)


def dino_head_from_state_dict(
    state: dict[str, torch.Tensor], source: str = "state dict", prefix: str = "dino_head."
) -> DINOHead:
    """A head whose sizes are read off its tensors (DINOv2 or DINOv3 names).

    In a training checkpoint holding the backbone and heads together, the entries under ``prefix``
    (``dino_head.``; ``ibot_head.`` for DINOv3's separate iBOT head) are used.

    Raises:
        ValueError: keys missing or unknown, or shapes that do not chain (names ``source`` and the keys).
    """
    if not any(key in state for key in _LAST_LAYER_KEYS) and any(
        prefix + key in state for key in _LAST_LAYER_KEYS
    ):
        state = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
    linear_indices = sorted(int(match.group(1)) for key in state if (match := _MLP_KEY.match(key)))
    last_key = next((key for key in _LAST_LAYER_KEYS if key in state), None)
    if not linear_indices or last_key is None:
        raise ValueError(
            f"{source}: not a DINO head (needs mlp.N.weight and last_layer.weight_v or last_layer.weight "
            "keys)"
        )
    first, last = state[f"mlp.{linear_indices[0]}.weight"], state[f"mlp.{linear_indices[-1]}.weight"]
    nlayers = len(linear_indices)
    head = DINOHead(
        in_dim=int(first.shape[1]),
        out_dim=int(state[last_key].shape[0]),
        hidden_dim=int(first.shape[0]) if nlayers > 1 else 2048,  # unused with one layer
        bottleneck_dim=int(last.shape[0]),
        nlayers=nlayers,
        weight_norm=last_key == "last_layer.weight_v",
    )
    expected = head.state_dict()
    missing, unknown = set(expected) - set(state), set(state) - set(expected)
    if missing or unknown:
        raise ValueError(f"{source}: missing keys {sorted(missing)}; unknown keys {sorted(unknown)}")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise ValueError(
                f"{source}: {key} has shape {tuple(state[key].shape)}, expected {tuple(tensor.shape)}"
            )
    head.load_state_dict({key: value.float() for key, value in state.items()})
    return head


def load_dino_head(path: str | Path, prefix: str = "dino_head.") -> DINOHead:
    """Load ``dino_head.safetensors`` / ``ibot_head.safetensors`` (or a ``.pth`` state dict, or a training
    checkpoint's entries under ``prefix``) into a :class:`DINOHead`.

    Raises:
        raddino.models.loading.ModelLoadError: unreadable file or a state dict that is not a DINO head.
    """
    from raddino.models.loading import ModelLoadError, read_state_dict

    state, _ = read_state_dict(path)
    try:
        return dino_head_from_state_dict(state, source=str(path), prefix=prefix)
    except ValueError as error:
        raise ModelLoadError(path, str(error).removeprefix(f"{path}: ")) from error


def save_dino_head(head: DINOHead, path: str | Path) -> Path:
    """Write the head as safetensors with DINOv2's (or, without weight norm, DINOv3's) key names,
    atomically."""
    path = Path(path)
    tensors = {key: value.detach().contiguous() for key, value in head.state_dict().items()}
    with atomic_path(path) as temporary:
        save_file(tensors, str(temporary), metadata={"format": "pt"})
    return path
