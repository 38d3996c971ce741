"""The pre-training objectives, one module each: DINO (CLS), iBOT (masked patches), KoLeo (DINOv2) and
Gram anchoring (DINOv3)."""

from __future__ import annotations

from raddino.pretrain.losses.dino_clstoken import DINOLoss
from raddino.pretrain.losses.gram import GramLoss
from raddino.pretrain.losses.ibot_patch import iBOTPatchLoss
from raddino.pretrain.losses.koleo import KoLeoLoss

__all__ = ["DINOLoss", "GramLoss", "KoLeoLoss", "iBOTPatchLoss"]
