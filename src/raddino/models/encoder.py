"""The encoder every head, evaluation and training loop uses: a transformers ViT underneath.

``Encoder`` prepares the tokens itself (patch embedding, mask tokens, CLS, position embeddings, register
tokens) so that DINOv2's learned position embeddings are interpolated exactly as DINOv2 does
(:mod:`raddino.models.positions`), then runs the transformers blocks and final norm. DINOv3 has no
position table: its blocks rotate queries and keys by the patch grid (RoPE), which the family adapter
computes once per forward and hands to every block, so any resolution needs no interpolation.

It also owns what training touches: its blocks (FSDP shard units, activation checkpointing), drop-path
rates, the masked forward (iBOT), each parameter's depth and weight-decay exemption (layer-wise lr decay)
and its state-dict naming (export). Where a family's modules live is the business of its adapter
(:mod:`raddino.models.families`), so code outside ``raddino.models`` never names a transformers module.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from transformers import Dinov2Model, Dinov2WithRegistersModel, DINOv3ViTModel

from raddino.io.atomic import atomic_directory
from raddino.models import parameter_roles
from raddino.models.families import BackboneFamily, family_for_config, family_of
from raddino.models.feature_map import FeatureMap
from raddino.models.parameter_roles import DropPathSchedule
from raddino.models.positions import interpolate_position_embeddings
from raddino.models.presets import EncoderConfig, make_config, preset_config

if TYPE_CHECKING:
    from raddino.data.preprocess import PreprocessConfig

Backbone = Dinov2Model | Dinov2WithRegistersModel | DINOv3ViTModel
# Config-dict entries that are bookkeeping of transformers, not architecture (model_type is kept: it names
# the family).
_CONFIG_BOOKKEEPING = ("transformers_version",)


def _as_int(value: Any, name: str) -> int:
    if isinstance(value, (list, tuple)):
        if len(set(value)) != 1:
            raise ValueError(f"non-square {name} {value} is not supported")
        value = value[0]
    return int(value)


class Encoder(nn.Module):
    """A DINOv2- or DINOv3-architecture ViT with one feature interface and one training interface.

    Args:
        backbone: A transformers model of a known family (``Dinov2Model``, ``Dinov2WithRegistersModel``,
            ``DINOv3ViTModel``); its parameters are the encoder's parameters (a training loop optimises
            ``encoder.parameters()``).
        interpolate_offset: DINOv2's position-embedding interpolation offset; ``None`` picks DINOv2's
            value for the architecture (0.1 without registers, 0 with registers). Unused by DINOv3 (RoPE).
        interpolate_antialias: Anti-alias when resizing position embeddings; ``None`` picks DINOv2's value
            (off without registers, on with registers, as in ``dinov2/hub/backbones.py``).

    Attributes:
        embed_dim: Token width D (768 for ViT-B).
        patch_size: Patch side in pixels (14 for DINOv2, 16 for DINOv3).
        num_layers: Transformer blocks (12 for ViT-B).
        num_heads: Attention heads per block.
        image_size: The resolution the model's config names (518 for RAD-DINO; 224 for DINOv3, whose RoPE
            positions work at any resolution).
        num_register_tokens: Register tokens (0 for RAD-DINO, 4 for DINOv3); they sit after the CLS token
            and are never part of the patch tokens.
        family: The adapter that knows where the backbone's modules are.
    """

    def __init__(
        self,
        backbone: Backbone,
        *,
        interpolate_offset: float | None = None,
        interpolate_antialias: bool | None = None,
    ) -> None:
        super().__init__()
        self.family: BackboneFamily = family_of(backbone)
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
        model_class = family_for_config(config).model_class(config)
        if seed is None:
            return cls(model_class._from_config(config, attn_implementation="sdpa"))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return cls(model_class._from_config(config, attn_implementation="sdpa"))

    @classmethod
    def from_preset(cls, name: str, seed: int | None = 0, **overrides: Any) -> Encoder:
        """A randomly initialised encoder of preset ``name`` (DINOv2: ``test``, ``vits14``, ``vitb14``,
        ``vitl14``, ``vitg14``; DINOv3: ``test16``, ``vits16``, ``vitb16``, ``vitl16``, ``vith16plus``);
        ``overrides`` change config fields (e.g. ``drop_path_rate=0.1``)."""
        return cls.from_config(preset_config(name, **overrides), seed=seed)

    @classmethod
    def from_state_dict(
        cls, config: Mapping[str, Any], state: Mapping[str, torch.Tensor], *, drop_path_rate: float = 0.0
    ) -> Encoder:
        """The encoder a saved config dict (``encoder.config.to_dict()``) and ``encoder.state_dict()``
        describe: what a training checkpoint stores and export reads back.

        Args:
            config: The transformers config as a dict.
            state: This encoder's own state dict (its keys as :meth:`state_dict` names them).
            drop_path_rate: Stochastic depth of the rebuilt encoder (0: for inference and export).

        Raises:
            ValueError: the state does not fit the config (the message counts and names the first missing
                and unexpected keys, and a shape mismatch).
        """
        values = {key: value for key, value in config.items() if key not in _CONFIG_BOOKKEEPING}
        values["drop_path_rate"] = drop_path_rate
        encoder = cls.from_config(make_config(**values), seed=0)
        own = encoder.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise ValueError(
                f"encoder state does not fit its config: {len(missing)} missing "
                f"({', '.join(missing[:2]) or '-'}), {len(unexpected)} unexpected "
                f"({', '.join(unexpected[:2]) or '-'})"
            )
        for key, value in state.items():
            if tuple(value.shape) != tuple(own[key].shape):
                expected = tuple(own[key].shape)
                raise ValueError(f"encoder state {key}: shape {tuple(value.shape)}, expected {expected}")
        encoder.load_state_dict(dict(state))
        return encoder

    @property
    def config(self) -> EncoderConfig:
        """The transformers config (written as ``config.json`` by :meth:`save_pretrained`)."""
        return self.backbone.config

    # ----------------------------------------------------------------------------------------- training
    @property
    def blocks(self) -> nn.ModuleList:
        """The transformer blocks, first to last: FSDP shard units, activation-checkpointing units."""
        return self.family.blocks(self.backbone)

    @property
    def family_name(self) -> str:
        """The backbone family (``dinov2``, ``dinov3``)."""
        return self.family.name

    @property
    def mask_token(self) -> nn.Parameter | None:
        """The learned token that replaces masked patches (iBOT), D values ((1, D) in DINOv2, (1, 1, D) in
        DINOv3); ``None`` when built without."""
        return self.family.tokens(self.backbone).get("mask")

    def set_drop_path(self, rate: float, schedule: DropPathSchedule = "uniform") -> None:
        """Stochastic depth in every block (DINOv2's ``drop_path_rate`` / ``drop_path_uniform``).

        Loaded checkpoints keep the rate they were saved with; this replaces each block's drop-path module
        so a pre-training student gets its configured rate whatever its source, and a teacher gets 0.

        Args:
            rate: The rate (``linear``: of the last block).
            schedule: ``uniform`` (the same rate in every block) or ``linear`` (0 → ``rate``).
        """
        rates = parameter_roles.drop_path_rates(rate, len(self.blocks), schedule)
        for block, block_rate in zip(self.blocks, rates, strict=True):
            self.family.set_drop_path(block, block_rate)
        self.config.drop_path_rate = rate

    def drop_path_rates(self) -> list[float]:
        """Each block's stochastic-depth probability, first to last."""
        return [self.family.drop_path_rate(block) for block in self.blocks]

    def parameter_depths(self) -> dict[str, int]:
        """Parameter name → depth for layer-wise lr decay: 0 for the patch embedding, tokens and position
        embeddings, ``i + 1`` for block ``i``, ``num_layers + 1`` for the final norm."""
        return parameter_roles.parameter_depths(self)

    def patch_embed_parameters(self) -> set[str]:
        """Names of the patch embedding's parameters (DINOv2's ``patch_embed_lr_mult`` applies to them)."""
        return parameter_roles.patch_embed_parameters(self)

    def no_weight_decay(self) -> set[str]:
        """Names of the parameters without weight decay: biases, norm weights, LayerScale gammas, and the
        CLS / mask / register tokens and position embeddings."""
        return parameter_roles.no_weight_decay(self)

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

    @property
    def has_position_table(self) -> bool:
        """Whether positions are a learned table added to the tokens (DINOv2), not RoPE (DINOv3)."""
        return "positions" in self.family.tokens(self.backbone)

    def position_embeddings(self, rows: int, cols: int) -> torch.Tensor:
        """Position embeddings for a ``rows``×``cols`` patch grid, (1, 1 + rows*cols, D), as in DINOv2.

        The stored grid (37×37 for 518 px) is returned unchanged when it fits; otherwise it is resized
        bicubically in float32 (DINOv2's ``interpolate_pos_encoding``).

        Raises:
            ValueError: the family has no position table (DINOv3 rotates queries and keys instead).
        """
        tokens = self.family.tokens(self.backbone)
        if "positions" not in tokens:
            raise ValueError(
                f"a {self.family.name} encoder has no position table: its blocks use RoPE, which needs no "
                "interpolation"
            )
        stored = tokens["positions"]  # (1, 1 + N, D)
        return interpolate_position_embeddings(
            stored, rows, cols, offset=self.interpolate_offset, antialias=self.interpolate_antialias
        )

    def prepare_tokens(
        self, pixels: torch.Tensor, bool_masked_pos: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, tuple[int, int]]:
        """Token sequence before the first block, (B, 1 + R + h*w, D), and the patch grid (h, w).

        Masked patches (``bool_masked_pos`` (B, h*w), True = masked) are replaced by the mask token
        before position embeddings are added, as in DINOv2's and DINOv3's ``prepare_tokens_with_masks``.
        Register tokens follow the CLS token and get no position embedding.
        """
        rows, cols = self._grid(pixels)
        tokens_by_role = self.family.tokens(self.backbone)
        projection = self.family.patch_projection(self.backbone)
        patches = projection(pixels.to(projection.weight.dtype)).flatten(2).transpose(1, 2)  # (B, h*w, D)
        batch = patches.shape[0]
        if bool_masked_pos is not None:
            expected = (batch, rows * cols)
            if tuple(bool_masked_pos.shape) != expected:
                raise ValueError(
                    f"bool_masked_pos must be (B, h*w) = {expected}, got {tuple(bool_masked_pos.shape)}"
                )
            if "mask" not in tokens_by_role:
                raise ValueError("this encoder was built without a mask token (use_mask_token=False)")
            mask_token = tokens_by_role["mask"].to(patches.dtype).reshape(1, 1, -1)  # (1, 1, D)
            patches = torch.where(bool_masked_pos.bool().unsqueeze(-1), mask_token, patches)
        cls_token = tokens_by_role["cls"].expand(batch, -1, -1).to(patches.dtype)  # (B, 1, D)
        tokens = torch.cat([cls_token, patches], dim=1)  # (B, 1 + h*w, D)
        if "positions" in tokens_by_role:
            tokens = tokens + self.position_embeddings(rows, cols).to(tokens.dtype)
        if "registers" in tokens_by_role:  # also when R = 0 (DINOv3 keeps a (1, 0, D) parameter)
            registers = tokens_by_role["registers"].expand(batch, -1, -1).to(tokens.dtype)  # (B, R, D)
            tokens = torch.cat([tokens[:, :1], registers, tokens[:, 1:]], dim=1)
        return self.family.embedding_dropout(self.backbone)(tokens), (rows, cols)

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
        inputs = self.family.block_inputs(self.backbone, pixels)
        for block in self.blocks:
            hidden = self.family.run_block(block, hidden, inputs)
        return self._split(self.family.final_norm(self.backbone)(hidden), grid)

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
        inputs = self.family.block_inputs(self.backbone, pixels)
        final_norm = self.family.final_norm(self.backbone)
        outputs: dict[int, torch.Tensor] = {}
        for index, block in enumerate(self.blocks[: max(chosen) + 1]):
            hidden = self.family.run_block(block, hidden, inputs)
            if index in chosen:
                outputs[index] = final_norm(hidden) if norm else hidden
        return [self._split(outputs[index], grid) for index in chosen]

    def attention_maps(self, pixels: torch.Tensor, layer: int = -1) -> torch.Tensor:
        """Self-attention probabilities of one block, (B, heads, T, T) with T = 1 + R + h*w tokens.

        Row 0 is the CLS token's attention (the maps DINO papers show); columns follow the token order
        CLS, registers, patches in raster order.
        """
        (index,) = self._block_indices([layer])
        hidden, _ = self.prepare_tokens(pixels)
        inputs = self.family.block_inputs(self.backbone, pixels)
        for block in self.blocks[:index]:
            hidden = self.family.run_block(block, hidden, inputs)
        q, k = self.family.queries_keys(self.blocks[index], hidden, self.num_heads, inputs)  # (B, nh, T, hd)
        head_dim = self.embed_dim // self.num_heads
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
