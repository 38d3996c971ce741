"""The encoder every head, evaluation and training loop uses: a transformers ``Dinov2Model`` underneath.

``Encoder`` prepares the tokens itself (patch embedding, mask tokens, CLS, position embeddings, register
tokens) so that position embeddings are interpolated exactly as DINOv2 does, then runs the transformers
blocks and final LayerNorm. transformers 5 resizes position embeddings to an output *size*; DINOv2
resizes by a *scale factor* of ``(n + 0.1) / 37`` (``interpolate_offset`` 0.1, facebookresearch/dino issue
#8), and DINOv2's register models resize to a size with anti-aliasing. The two rules give different
features at any resolution other than the native one (518 px for RAD-DINO); following DINOv2, the model sees
at 224 px, or at pre-training's 196 px local crops, what DINOv2 training showed it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Dinov2Model, Dinov2WithRegistersModel

from raddino.io.atomic import atomic_directory
from raddino.models.blocks import attention_projections
from raddino.models.presets import EncoderConfig, preset_config

if TYPE_CHECKING:
    from raddino.data.preprocess import PreprocessConfig

Backbone = Dinov2Model | Dinov2WithRegistersModel


@dataclass(frozen=True)
class FeatureMap:
    """The encoder's output for one block.

    Attributes:
        cls: CLS token, (B, D).
        patch_tokens: Patch tokens on their grid, (B, D, h, w) with h = H / patch, w = W / patch.
        register_tokens: Register tokens (B, R, D) for models that have them, else ``None``.
    """

    cls: torch.Tensor
    patch_tokens: torch.Tensor
    register_tokens: torch.Tensor | None = None

    @property
    def patch_sequence(self) -> torch.Tensor:
        """Patch tokens in raster order, (B, h*w, D)."""
        return self.patch_tokens.flatten(2).transpose(1, 2)


def _as_int(value: Any, name: str) -> int:
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise ValueError(f"non-square {name} {value} is not supported")
        value = value[0]
    return int(value)


class Encoder(nn.Module):
    """A DINOv2 ViT with one feature interface.

    Args:
        backbone: A transformers ``Dinov2Model`` or ``Dinov2WithRegistersModel``; its parameters are the
            encoder's parameters (a training loop optimises ``encoder.parameters()`` or
            ``encoder.backbone``'s).
        interpolate_offset: DINOv2's position-embedding interpolation offset; ``None`` picks DINOv2's
            value for the architecture (0.1 without registers, 0 with registers).
        interpolate_antialias: Anti-alias when resizing position embeddings; ``None`` picks DINOv2's value
            (off without registers, on with registers, as in ``dinov2/hub/backbones.py``).

    Attributes:
        embed_dim: Token width D (768 for ViT-B).
        patch_size: Patch side in pixels (14).
        num_layers: Transformer blocks (12 for ViT-B).
        num_heads: Attention heads per block.
        image_size: The resolution the position embeddings were trained for (518).
        num_register_tokens: Register tokens (0 for RAD-DINO).
    """

    def __init__(
        self,
        backbone: Backbone,
        *,
        interpolate_offset: float | None = None,
        interpolate_antialias: bool | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(backbone, (Dinov2Model, Dinov2WithRegistersModel)):
            raise TypeError(f"expected a transformers Dinov2Model, got {type(backbone).__name__}")
        self.backbone = backbone
        config = backbone.config
        self.embed_dim = int(config.hidden_size)
        self.patch_size = _as_int(config.patch_size, "patch_size")
        self.image_size = _as_int(config.image_size, "image_size")
        self.num_layers = int(config.num_hidden_layers)
        self.num_heads = int(config.num_attention_heads)
        self.num_register_tokens = int(getattr(config, "num_register_tokens", 0) or 0)
        registers = self.num_register_tokens > 0
        self.interpolate_offset = (
            (0.0 if registers else 0.1) if interpolate_offset is None else interpolate_offset
        )
        self.interpolate_antialias = registers if interpolate_antialias is None else interpolate_antialias

    # ----------------------------------------------------------------------------------------- building
    @classmethod
    def from_config(cls, config: EncoderConfig, seed: int | None = 0) -> Encoder:
        """A randomly initialised encoder (SDPA attention); ``seed`` makes it reproducible without
        touching the global random state (``None`` uses it)."""
        model_class = Dinov2WithRegistersModel if getattr(config, "num_register_tokens", 0) else Dinov2Model
        if seed is None:
            return cls(model_class._from_config(config, attn_implementation="sdpa"))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return cls(model_class._from_config(config, attn_implementation="sdpa"))

    @classmethod
    def from_preset(cls, name: str, seed: int | None = 0, **overrides: Any) -> Encoder:
        """A randomly initialised encoder of preset ``name`` (``test``, ``vits14``, ``vitb14``, ``vitl14``,
        ``vitg14``); ``overrides`` change config fields (e.g. ``drop_path_rate=0.1``)."""
        return cls.from_config(preset_config(name, **overrides), seed=seed)

    @property
    def config(self) -> EncoderConfig:
        """The transformers config (written as ``config.json`` by :meth:`save_pretrained`)."""
        return self.backbone.config

    def set_activation_checkpointing(self, enabled: bool = True) -> None:
        """Recompute each block's activations during the backward pass: far less memory for training at
        518 px, about a third more compute. Works through :meth:`forward_features` and every other path."""
        backbone = self.backbone
        if enabled:
            if hasattr(backbone, "activation_checkpointing_enable"):  # transformers ≥ 5
                backbone.activation_checkpointing_enable({"use_reentrant": False})
            else:
                backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        elif hasattr(backbone, "activation_checkpointing_disable"):
            backbone.activation_checkpointing_disable()
        else:
            backbone.gradient_checkpointing_disable()

    # ----------------------------------------------------------------------------------------- tokens
    def _grid(self, pixels: torch.Tensor) -> tuple[int, int]:
        if pixels.ndim != 4 or pixels.shape[1] != 3:
            raise ValueError(f"pixels must be (B, 3, H, W), got {tuple(pixels.shape)}")
        height, width = int(pixels.shape[2]), int(pixels.shape[3])
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"image side {height}×{width} px is not a multiple of the patch size {self.patch_size}"
            )
        return height // self.patch_size, width // self.patch_size

    def position_embeddings(self, rows: int, cols: int) -> torch.Tensor:
        """Position embeddings for a ``rows``×``cols`` patch grid, (1, 1 + rows*cols, D), as in DINOv2.

        The stored grid (37×37 for 518 px) is returned unchanged when it fits; otherwise it is resized
        bicubically in float32 (DINOv2's ``interpolate_pos_encoding``).
        """
        stored = self.backbone.embeddings.position_embeddings  # (1, 1 + N, D)
        num_positions = stored.shape[1] - 1
        if rows * cols == num_positions and rows == cols:
            return stored
        side = math.isqrt(num_positions)
        class_position = stored[:, :1].float()  # (1, 1, D)
        grid = stored[:, 1:].float().reshape(1, side, side, -1).permute(0, 3, 1, 2)  # (1, D, side, side)
        if self.interpolate_offset:
            scale = ((rows + self.interpolate_offset) / side, (cols + self.interpolate_offset) / side)
            grid = F.interpolate(
                grid, scale_factor=scale, mode="bicubic", antialias=self.interpolate_antialias
            )
        else:
            grid = F.interpolate(
                grid, size=(rows, cols), mode="bicubic", antialias=self.interpolate_antialias
            )
        if tuple(grid.shape[-2:]) != (rows, cols):
            raise RuntimeError(
                f"position embeddings resized to {tuple(grid.shape[-2:])}, wanted {(rows, cols)}"
            )
        grid = grid.permute(0, 2, 3, 1).reshape(1, rows * cols, -1)  # (1, rows*cols, D)
        return torch.cat([class_position, grid], dim=1).to(stored.dtype)

    def prepare_tokens(
        self, pixels: torch.Tensor, bool_masked_pos: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, tuple[int, int]]:
        """Token sequence before the first block, (B, 1 + R + h*w, D), and the patch grid (h, w).

        Masked patches (``bool_masked_pos`` (B, h*w), True = masked) are replaced by the mask token
        before position embeddings are added, as in DINOv2's ``prepare_tokens_with_masks``.
        """
        rows, cols = self._grid(pixels)
        embeddings = self.backbone.embeddings
        projection = cast(nn.Conv2d, embeddings.patch_embeddings.projection)
        patches = projection(pixels.to(projection.weight.dtype)).flatten(2).transpose(1, 2)  # (B, h*w, D)
        batch = patches.shape[0]
        if bool_masked_pos is not None:
            expected = (batch, rows * cols)
            if tuple(bool_masked_pos.shape) != expected:
                raise ValueError(
                    f"bool_masked_pos must be (B, h*w) = {expected}, got {tuple(bool_masked_pos.shape)}"
                )
            if embeddings.mask_token is None:
                raise ValueError("this encoder was built without a mask token (use_mask_token=False)")
            mask_token = embeddings.mask_token.to(patches.dtype).unsqueeze(0)  # (1, 1, D)
            patches = torch.where(bool_masked_pos.bool().unsqueeze(-1), mask_token, patches)
        tokens = torch.cat([embeddings.cls_token.expand(batch, -1, -1).to(patches.dtype), patches], dim=1)
        tokens = tokens + self.position_embeddings(rows, cols).to(tokens.dtype)  # (B, 1 + h*w, D)
        if self.num_register_tokens:
            stored = self.backbone.get_parameter("embeddings.register_tokens")  # (1, R, D)
            registers = stored.expand(batch, -1, -1).to(tokens.dtype)  # (B, R, D)
            tokens = torch.cat([tokens[:, :1], registers, tokens[:, 1:]], dim=1)
        return cast(nn.Dropout, embeddings.dropout)(tokens), (rows, cols)

    def _block(self, index: int, hidden: torch.Tensor) -> torch.Tensor:
        output = self.backbone.encoder.layer[index](hidden)
        return output[0] if isinstance(output, tuple) else output  # transformers 4 returns a tuple

    def _split(self, tokens: torch.Tensor, grid: tuple[int, int]) -> FeatureMap:
        rows, cols = grid
        start = 1 + self.num_register_tokens
        patches = tokens[:, start:].reshape(tokens.shape[0], rows, cols, -1)  # (B, h, w, D)
        registers = tokens[:, 1:start] if self.num_register_tokens else None
        return FeatureMap(
            cls=tokens[:, 0],
            patch_tokens=patches.permute(0, 3, 1, 2).contiguous(),  # (B, D, h, w)
            register_tokens=registers,
        )

    # ----------------------------------------------------------------------------------------- features
    def forward_features(
        self, pixels: torch.Tensor, bool_masked_pos: torch.Tensor | None = None
    ) -> FeatureMap:
        """Final-layer features with the final LayerNorm applied (the release's ``last_hidden_state``).

        Args:
            pixels: Preprocessed images (B, 3, H, W); H and W multiples of the patch size.
            bool_masked_pos: Optional (B, h*w) mask of patches to replace by the mask token (iBOT).
        """
        hidden, grid = self.prepare_tokens(pixels, bool_masked_pos)
        for index in range(self.num_layers):
            hidden = self._block(index, hidden)
        return self._split(self.backbone.layernorm(hidden), grid)

    def forward(self, pixels: torch.Tensor, bool_masked_pos: torch.Tensor | None = None) -> FeatureMap:
        """Same as :meth:`forward_features` (so DDP/FSDP wrappers, which call ``forward``, work)."""
        return self.forward_features(pixels, bool_masked_pos)

    def _block_indices(self, indices: int | Sequence[int]) -> list[int]:
        if isinstance(indices, int):
            if not 1 <= indices <= self.num_layers:
                raise ValueError(f"asked for the last {indices} blocks of a {self.num_layers}-block encoder")
            return list(range(self.num_layers - indices, self.num_layers))
        chosen = []
        for index in indices:
            if not -self.num_layers <= index < self.num_layers:
                raise IndexError(f"block {index} out of range for a {self.num_layers}-block encoder")
            chosen.append(index % self.num_layers)
        if not chosen:
            raise ValueError("indices is empty")
        return chosen

    def forward_intermediates(
        self, pixels: torch.Tensor, indices: int | Sequence[int], norm: bool = True
    ) -> list[FeatureMap]:
        """Features after chosen blocks, in the order asked (DINOv2's ``get_intermediate_layers``).

        Args:
            pixels: Preprocessed images (B, 3, H, W).
            indices: Block numbers, 0-based, negatives counting from the end (``[-1]`` is the last
                block); an int ``n`` takes the last ``n`` blocks.
            norm: Apply the final LayerNorm to each block's output, as DINOv2's ``norm=True`` does (what
                segmentation heads on 4 intermediate layers use).

        Returns:
            One :class:`FeatureMap` per index. Blocks after the deepest one asked for are not run.
        """
        chosen = self._block_indices(indices)
        hidden, grid = self.prepare_tokens(pixels)
        outputs: dict[int, torch.Tensor] = {}
        for index in range(max(chosen) + 1):
            hidden = self._block(index, hidden)
            if index in chosen:
                outputs[index] = self.backbone.layernorm(hidden) if norm else hidden
        return [self._split(outputs[index], grid) for index in chosen]

    def attention_maps(self, pixels: torch.Tensor, layer: int = -1) -> torch.Tensor:
        """Self-attention probabilities of one block, (B, heads, T, T) with T = 1 + R + h*w tokens.

        Row 0 is the CLS token's attention (the maps DINO papers show); columns follow the token order
        CLS, registers, patches in raster order.
        """
        (index,) = self._block_indices([layer])
        hidden, _ = self.prepare_tokens(pixels)
        for block in range(index):
            hidden = self._block(block, hidden)
        block_layer = self.backbone.encoder.layer[index]
        normed = cast(nn.LayerNorm, block_layer.norm1)(hidden)  # (B, T, D)
        query, key, _, _ = attention_projections(block_layer)
        batch, tokens, _ = normed.shape
        head_dim = self.embed_dim // self.num_heads
        q = query(normed).view(batch, tokens, self.num_heads, head_dim).transpose(1, 2)  # (B, nh, T, hd)
        k = key(normed).view(batch, tokens, self.num_heads, head_dim).transpose(1, 2)  # (B, nh, T, hd)
        scores = (q.float() @ k.float().transpose(-2, -1)) * head_dim**-0.5  # (B, nh, T, T)
        return scores.softmax(dim=-1)

    # ----------------------------------------------------------------------------------------- saving
    def save_pretrained(self, folder: str | Path, preprocess: PreprocessConfig | None = None) -> Path:
        """Write a transformers folder: ``config.json``, ``model.safetensors``, ``preprocessor_config.json``.

        The folder loads with ``transformers.AutoModel.from_pretrained`` and
        ``AutoImageProcessor.from_pretrained`` (a ``BitImageProcessor``, like microsoft/rad-dino's), and
        with :func:`raddino.models.load_encoder`. Files are written to a temporary folder first and moved
        in, so an interrupted save never leaves a half-written weights file.

        Args:
            folder: Output folder (created; files already there with the same names are replaced).
            preprocess: The inference preprocessing to record; ``None`` records the release's
                (:class:`raddino.data.preprocess.PreprocessConfig` defaults).
        """
        from raddino.data.preprocess import PreprocessConfig

        folder = Path(folder)
        with atomic_directory(folder, merge=True) as staging:  # modes from the umask, not mkdtemp's 0700
            self.backbone.save_pretrained(staging)
            processor = (preprocess or PreprocessConfig()).to_processor_dict()
            (staging / "preprocessor_config.json").write_text(json.dumps(processor, indent=2) + "\n")
        return folder
