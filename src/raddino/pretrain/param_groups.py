"""AdamW parameter groups with layer-wise lr decay and DINOv2's weight-decay exemptions.

DINOv2 (``dinov2/utils/param_groups.py``, ``ssl_default_config.yaml``: ``optim.layerwise_decay`` 0.9,
``optim.patch_embed_lr_mult`` 0.2): a backbone parameter at depth ``d`` (0 for the patch embedding and the
tokens, ``i + 1`` for block ``i``, ``L + 1`` for the final norm) gets ``lr × decay^(L + 1 − d)``; the heads
get the full lr; the patch embedding's lr is further multiplied by 0.2; biases, norms and LayerScale
gammas get no weight decay. Here the position embeddings and the CLS / mask / register tokens get no weight
decay either (timm's ``no_weight_decay`` convention; DINOv2 decays them). The heads' ``last_layer`` is
flagged so its lr can be 0 during the first epoch, as DINOv2 does. The weight-norm scale ``weight_g`` of
the last layer is decayed, as in DINOv2.

Which parameter sits at which depth, which is the patch embedding and which is exempt from weight decay is
the encoder's to say (:meth:`~raddino.models.Encoder.parameter_depths`, ``patch_embed_parameters``,
``no_weight_decay``); nothing here matches a backbone's parameter names. Parameters are fused into one
group per (module depth, decay) pair, which keeps the optimiser's ``foreach`` kernels large; every group
lists its ``param_names``.
"""

from __future__ import annotations

import torch
from torch import nn

from raddino.models import Encoder

_WRAPPER_PREFIXES = ("_orig_mod.", "_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "module.")


def _clean(name: str) -> str:
    """The parameter name without compile / FSDP / DDP wrapper segments."""
    for prefix in _WRAPPER_PREFIXES:
        name = name.replace(prefix, "")
    return name


def _encoder_scope(depth: int, is_patch_embed: bool, num_layers: int) -> str:
    """The group scope of an encoder parameter at ``depth``: embeddings, block i, or the final norm."""
    if depth == 0:
        return "encoder.patch_embed" if is_patch_embed else "encoder.embeddings"
    if depth <= num_layers:
        return f"encoder.layer{depth - 1}"
    return "encoder.final"


def build_param_groups(
    encoder: Encoder,
    heads: dict[str, nn.Module],
    *,
    layerwise_decay: float = 0.9,
    patch_embed_lr_mult: float = 0.2,
) -> list[dict]:
    """Optimiser parameter groups for the student encoder and its heads.

    Args:
        encoder: The student encoder: its blocks set the depth of the decay, and it names each
            parameter's depth, its patch embedding and its weight-decay exemptions.
        heads: Head modules by name, e.g. ``{"dino_head": ..., "ibot_head": ...}``; names become group
            names and must not contain dots.
        layerwise_decay: Per-block lr decay from the top (DINOv2: 0.9; 1.0 turns it off).
        patch_embed_lr_mult: Extra lr factor of the patch embedding (DINOv2: 0.2).

    Returns:
        Groups for ``torch.optim.AdamW``, each with ``params``, ``param_names``, ``name``,
        ``lr_multiplier``, ``wd_multiplier`` (0 or 1) and ``is_last_layer``; parameters that do not
        require gradients are left out. Set their ``lr`` and ``weight_decay`` with :func:`apply_schedules`.

    Raises:
        ValueError: a multiplier out of range or a head name with a dot.
    """
    if not 0 < layerwise_decay <= 1:
        raise ValueError(f"layerwise_decay must be in (0, 1], got {layerwise_decay}")
    if patch_embed_lr_mult <= 0:
        raise ValueError(f"patch_embed_lr_mult must be positive, got {patch_embed_lr_mult}")
    num_layers = len(encoder.blocks)
    depths = encoder.parameter_depths()
    patch_embed = encoder.patch_embed_parameters()
    exempt = encoder.no_weight_decay()
    groups: dict[str, dict] = {}
    seen: set[int] = set()

    def add(
        scope: str,
        lr_multiplier: float,
        is_last_layer: bool,
        no_decay: bool,
        name: str,
        parameter: nn.Parameter,
    ) -> None:
        if not parameter.requires_grad or id(parameter) in seen:  # frozen, or tied and already placed
            return
        seen.add(id(parameter))
        decay = 0.0 if no_decay else 1.0
        key = f"{scope}/{'decay' if decay else 'no_decay'}"
        group = groups.setdefault(
            key,
            {
                "params": [],
                "param_names": [],
                "name": key,
                "lr_multiplier": lr_multiplier,
                "wd_multiplier": decay,
                "is_last_layer": is_last_layer,
            },
        )
        group["params"].append(parameter)
        group["param_names"].append(name)

    for raw_name, parameter in encoder.named_parameters():
        depth = depths[raw_name]
        scope = _encoder_scope(depth, raw_name in patch_embed, num_layers)
        multiplier = layerwise_decay ** (num_layers + 1 - depth)
        if scope == "encoder.patch_embed":
            multiplier *= patch_embed_lr_mult
        add(scope, multiplier, False, raw_name in exempt, f"encoder.{_clean(raw_name)}", parameter)

    for head_name, head in heads.items():
        if "." in head_name or "/" in head_name:
            raise ValueError(f"head name {head_name!r} must not contain '.' or '/'")
        for raw_name, parameter in head.named_parameters():
            name = _clean(raw_name)
            is_last_layer = "last_layer" in name
            scope = f"{head_name}.last_layer" if is_last_layer else head_name
            no_decay = name.endswith("bias") or parameter.ndim <= 1  # biases and norms of the head's MLP
            add(scope, 1.0, is_last_layer, no_decay, f"{head_name}.{name}", parameter)
    return list(groups.values())


def apply_schedules(
    optimizer: torch.optim.Optimizer, lr: float, weight_decay: float, last_layer_lr: float
) -> None:
    """Set every group's lr and weight decay for this step (DINOv2 ``apply_optim_scheduler``).

    ``lr = (last_layer_lr if is_last_layer else lr) × lr_multiplier`` and
    ``weight_decay = weight_decay × wd_multiplier``; groups without the multipliers count as 1.

    Args:
        optimizer: An optimiser built on :func:`build_param_groups`.
        lr: This step's learning rate.
        weight_decay: This step's weight decay.
        last_layer_lr: This step's lr of the heads' last layer (0 while frozen).
    """
    for group in optimizer.param_groups:
        base = last_layer_lr if group.get("is_last_layer", False) else lr
        group["lr"] = base * group.get("lr_multiplier", 1.0)
        group["weight_decay"] = weight_decay * group.get("wd_multiplier", 1.0)
