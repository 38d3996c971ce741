"""The DINO and iBOT heads of a pre-training run: fresh (seeded by ``train.seed``) or loaded from files.

DINOv2's heads have a weight-normalised last layer; DINOv3's a plain linear one (its
``force_weight_norm: false``). ``dino.head_weight_norm`` picks, by default the encoder family's.
"""

from __future__ import annotations

import torch

from raddino.models import DINOHead, Encoder, load_dino_head
from raddino.pretrain.config import DinoConfig, IbotConfig, PretrainConfig


def _make_head(
    encoder: Encoder, source: str | None, prefix: str, sizes: tuple[int, int, int, int], weight_norm: bool
) -> DINOHead:
    """A head from ``source`` (checked against the encoder's width and the prototypes), else a fresh one
    of ``sizes`` = (prototypes, hidden, bottleneck, layers)."""
    out_dim, hidden_dim, bottleneck_dim, nlayers = sizes
    if not source:
        return DINOHead(
            encoder.embed_dim,
            out_dim=out_dim,
            hidden_dim=hidden_dim,
            bottleneck_dim=bottleneck_dim,
            nlayers=nlayers,
            weight_norm=weight_norm,
        )
    head = load_dino_head(source, prefix=prefix)
    if (head.in_dim, head.out_dim) != (encoder.embed_dim, out_dim):
        section = prefix.removesuffix("_head.")
        raise ValueError(
            f"{source}: head maps {head.in_dim} → {head.out_dim}, the config needs {encoder.embed_dim} → "
            f"{out_dim} ({section}.head_n_prototypes)"
        )
    return head


def _sizes(head: DinoConfig | IbotConfig) -> tuple[int, int, int, int]:
    """A ``dino:`` or ``ibot:`` block's head sizes: prototypes, hidden, bottleneck, layers."""
    return head.head_n_prototypes, head.head_hidden_dim, head.head_bottleneck_dim, head.head_nlayers


def build_heads(config: PretrainConfig, encoder: Encoder) -> tuple[DINOHead, DINOHead | None]:
    """The DINO head and, with ``ibot.separate_head`` (and iBOT on), the iBOT head.

    Raises:
        ValueError: a head file whose widths do not fit the encoder or the config's prototypes.
        raddino.models.loading.ModelLoadError: an unreadable head file.
    """
    dino, ibot = config.dino, config.ibot
    weight_norm = dino.head_weight_norm
    if weight_norm is None:
        weight_norm = encoder.family.name != "dinov3"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.train.seed)
        dino_head = _make_head(
            encoder, config.student.dino_head_weights, "dino_head.", _sizes(dino), weight_norm
        )
        ibot_head = None
        if ibot.loss_weight > 0 and ibot.separate_head:
            ibot_head = _make_head(
                encoder, config.student.ibot_head_weights, "ibot_head.", _sizes(ibot), weight_norm
            )
    return dino_head, ibot_head


__all__ = ["build_heads"]
