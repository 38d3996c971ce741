"""What each encoder parameter is to an optimiser: its depth, whether it is decayed, the patch embedding.

DINOv2 (``dinov2/utils/param_groups.py``) gives a parameter at depth ``d`` the lr ``lr × decay^(L + 1 − d)``:
depth 0 for everything before the first block (patch embedding, CLS / mask / register tokens, position
embeddings), ``i + 1`` for block ``i``, ``L + 1`` for the final norm. Weight decay is off for biases, norm
weights and LayerScale gammas, and here for the tokens and position embeddings too (timm's
``no_weight_decay`` convention). Roles are found through the modules the family adapter names, by
parameter identity, so the names returned are whatever ``encoder.named_parameters()`` calls them (with or
without ``torch.compile`` / FSDP / activation-checkpointing wrappers) and no name is matched by pattern.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch

if TYPE_CHECKING:
    from raddino.models.encoder import Encoder

DropPathSchedule = Literal["uniform", "linear"]


def drop_path_rates(rate: float, num_blocks: int, schedule: DropPathSchedule = "uniform") -> list[float]:
    """Per-block stochastic-depth probabilities (DINOv2's ``drop_path_uniform`` rule).

    Args:
        rate: The rate of the last block (``uniform``: of every block).
        num_blocks: Blocks in the encoder.
        schedule: ``uniform`` (DINOv2's default for its released models) or ``linear``: 0 in the first
            block rising to ``rate`` in the last (``torch.linspace(0, rate, L)``, as DINOv2).

    Raises:
        ValueError: ``rate`` outside [0, 1) or an unknown schedule.
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"drop-path rate must be in [0, 1), got {rate}")
    if schedule == "uniform":
        return [rate] * num_blocks
    if schedule == "linear":
        return [float(value) for value in torch.linspace(0, rate, num_blocks)]
    raise ValueError(f"unknown drop-path schedule {schedule!r}; choose uniform or linear")


def parameter_depths(encoder: Encoder) -> dict[str, int]:
    """Depth of every parameter: 0 before the first block, ``i + 1`` in block ``i``, ``L + 1`` after."""
    last = len(encoder.blocks) + 1
    depth_of: dict[int, int] = {
        id(parameter): 0 for parameter in encoder.family.embeddings(encoder.backbone).parameters()
    }
    for parameter in encoder.family.tokens(encoder.backbone).values():
        depth_of[id(parameter)] = 0
    for index, block in enumerate(encoder.blocks):
        for parameter in block.parameters():
            depth_of[id(parameter)] = index + 1
    return {name: depth_of.get(id(parameter), last) for name, parameter in encoder.named_parameters()}


def patch_embed_parameters(encoder: Encoder) -> set[str]:
    """Names of the patch embedding's parameters (DINOv2 multiplies their lr by 0.2)."""
    ids = {id(parameter) for parameter in encoder.family.patch_embedding(encoder.backbone).parameters()}
    return {name for name, parameter in encoder.named_parameters() if id(parameter) in ids}


def no_weight_decay(encoder: Encoder) -> set[str]:
    """Names of the parameters without weight decay: biases, norm weights, LayerScale gammas, tokens."""
    family = encoder.family
    exempt: set[int] = {id(parameter) for parameter in family.tokens(encoder.backbone).values()}
    for block in encoder.blocks:
        exempt.update(id(gamma) for gamma in family.layer_scales(block))
    for module in encoder.modules():
        for local_name, parameter in module.named_parameters(recurse=False):
            if local_name == "bias" or local_name.endswith("_bias") or family.is_norm(module):
                exempt.add(id(parameter))
    return {name for name, parameter in encoder.named_parameters() if id(parameter) in exempt}
