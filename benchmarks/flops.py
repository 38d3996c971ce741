"""FLOPs of a ViT and of a pre-training step, counted from the architecture (matrix products only).

Every benchmark that reports utilisation divides these counts by time. ``FlopCounterMode`` is not used: on
CPU it does not see PyTorch's fused attention (``_scaled_dot_product_flash_attention_for_cpu``), so a
ViT-B/14 image at 518 px counted 234 of its 303 GFLOP and utilisation read low. The convention is the usual
one (Kaplan et al. 2020; PaLM's MFU): a multiply-add is 2 FLOPs, element-wise work (norms, softmax, GELU,
LayerScale) is not counted, a backward pass costs twice its forward (the gradient of the input and of the
weight), except the patch embedding's, whose input (the pixels) needs no gradient.

Per image of T tokens (patches + CLS + registers), width D, MLP hidden H, per block:
``qkv 6·T·D² + scores 2·T²·D + attention × values 2·T²·D + projection 2·T·D² + MLP 4·T·D·H`` (6·T·D·H with
a gated MLP: SwiGLU's three matrices), and the patch embedding ``2·P·(3·p²)·D`` for P patches of side p.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ViTShape:
    """What a ViT's FLOPs depend on."""

    width: int
    depth: int
    mlp_hidden: int
    patch_size: int
    extra_tokens: int
    """CLS + register tokens."""
    gated_mlp: bool = False

    @classmethod
    def from_config(cls, config: Any) -> ViTShape:
        """From a transformers ``Dinov2Config``, ``Dinov2WithRegistersConfig`` or ``DINOv3ViTConfig``."""
        width = int(config.hidden_size)
        if hasattr(config, "intermediate_size"):  # DINOv3
            hidden, gated = int(config.intermediate_size), bool(getattr(config, "use_gated_mlp", False))
        else:  # DINOv2: mlp_ratio; SwiGLU hidden = 2/3 of it, rounded up to a multiple of 8
            hidden, gated = int(width * config.mlp_ratio), bool(getattr(config, "use_swiglu_ffn", False))
            if gated:
                hidden = (int(hidden * 2 / 3) + 7) // 8 * 8
        registers = int(getattr(config, "num_register_tokens", 0) or 0)
        return cls(width, int(config.num_hidden_layers), hidden, int(config.patch_size), 1 + registers, gated)


def vit_forward_flops(shape: ViTShape, image_size: int, images: int = 1) -> int:
    """Forward FLOPs of ``images`` square images of side ``image_size`` through the encoder.

    Args:
        shape: The ViT.
        image_size: Pixels per side (a multiple of the patch size).
        images: Batch size.

    Returns:
        Matrix-product FLOPs (patch embedding, every block's qkv, attention, projection and MLP).
    """
    patches = (image_size // shape.patch_size) ** 2
    tokens = patches + shape.extra_tokens
    width, hidden = shape.width, shape.mlp_hidden
    patch_embed = patch_embed_flops(shape, image_size)
    attention = 6 * tokens * width**2 + 4 * tokens**2 * width + 2 * tokens * width**2
    mlp = (6 if shape.gated_mlp else 4) * tokens * width * hidden
    return images * (patch_embed + shape.depth * (attention + mlp))


def patch_embed_flops(shape: ViTShape, image_size: int, images: int = 1) -> int:
    """Forward FLOPs of the patch embedding (a p×p stride-p convolution of 3 channels to D)."""
    patches = (image_size // shape.patch_size) ** 2
    return images * 2 * patches * 3 * shape.patch_size**2 * shape.width


def head_forward_flops(
    tokens: int, in_dim: int, hidden_dim: int, bottleneck_dim: int, n_layers: int, prototypes: int
) -> int:
    """Forward FLOPs of a DINO head (MLP of ``n_layers`` linear layers, then the prototypes) on ``tokens``."""
    widths = [in_dim] + [hidden_dim] * (n_layers - 1) + [bottleneck_dim, prototypes]
    return 2 * tokens * sum(a * b for a, b in itertools.pairwise(widths))


@dataclass(frozen=True)
class StepShape:
    """A pre-training step's sizes (per process)."""

    batch: int
    global_size: int
    local_size: int
    n_local: int
    masked_patches: int
    """Masked patch tokens sent through the iBOT head (M)."""
    head: tuple[int, int, int, int]
    """DINO head (hidden, bottleneck, layers, prototypes)."""
    ibot_head: tuple[int, int, int, int] | None = None
    """A separate iBOT head's sizes (DINOv3), or None: iBOT shares the DINO head."""


def pretrain_step_flops(shape: ViTShape, step: StepShape) -> int:
    """FLOPs of one DINOv2/iBOT step: teacher forward on the global crops and its heads (no backward),
    student forward + backward (3× forward, less the patch embedding's input gradient) on global and local
    crops and its heads.

    Gram anchoring's teacher forward, KoLeo, the losses and the optimiser are element-wise or small and
    not counted.
    """
    global_crops, local_crops = 2 * step.batch, step.n_local * step.batch
    teacher_encoder = vit_forward_flops(shape, step.global_size, global_crops)
    student_encoder = teacher_encoder + vit_forward_flops(shape, step.local_size, local_crops)
    student_pixels = patch_embed_flops(shape, step.global_size, global_crops) + patch_embed_flops(
        shape, step.local_size, local_crops
    )

    def head(tokens: int, sizes: tuple[int, int, int, int]) -> int:
        hidden, bottleneck, layers, prototypes = sizes
        return head_forward_flops(tokens, shape.width, hidden, bottleneck, layers, prototypes)

    patch_sizes = step.ibot_head or step.head
    teacher_heads = head(global_crops, step.head) + head(step.masked_patches, patch_sizes)
    student_heads = head(global_crops + local_crops, step.head) + head(step.masked_patches, patch_sizes)
    return teacher_encoder + teacher_heads + 3 * (student_encoder + student_heads) - student_pixels


def config_step_flops(config: Any, encoder_config: Any, masked_patches: int) -> int:
    """:func:`pretrain_step_flops` for a ``PretrainConfig`` and its encoder's transformers config."""
    dino, ibot, crops = config.dino, config.ibot, config.crops
    head = (dino.head_hidden_dim, dino.head_bottleneck_dim, dino.head_nlayers, dino.head_n_prototypes)
    ibot_head = None
    if ibot.separate_head:
        ibot_head = (
            ibot.head_hidden_dim,
            ibot.head_bottleneck_dim,
            ibot.head_nlayers,
            ibot.head_n_prototypes,
        )
    step = StepShape(
        batch=config.train.batch_size_per_gpu,
        global_size=crops.global_crops_size,
        local_size=crops.local_crops_size,
        n_local=crops.local_crops_number,
        masked_patches=masked_patches,
        head=head,
        ibot_head=ibot_head,
    )
    return pretrain_step_flops(ViTShape.from_config(encoder_config), step)
