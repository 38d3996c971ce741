"""Segmentation heads on a frozen encoder (paper §4.3, Table 6, Figure 4): linear, ViTDet and UPerNet,
scored by Dice per structure.

Modules: ``run`` (``raddino segment``: samples, splits, heads, predictions, few-shot curve), ``train``
(one head on :mod:`raddino.training`'s engine, frozen features, prediction), ``heads`` (the three heads),
``data`` (images and their masks preprocessed alike, the random affine augmentation).

>>> from raddino.evaluate.segmentation import SegmentConfig, run_segment
>>> result = run_segment(SegmentConfig(input="masks.csv", model="./rad-dino"))  # doctest: +SKIP
"""

from raddino.evaluate.segmentation.data import MaskPreprocessor, SegmentationDataError, check_flip
from raddino.evaluate.segmentation.heads import HEAD_NAMES, HeadName, default_layers, make_head
from raddino.evaluate.segmentation.run import SegmentConfig, SegmentResult, dice_summary, run_segment
from raddino.evaluate.segmentation.train import SegTraining, segmentation_loss

__all__ = [
    "HEAD_NAMES",
    "HeadName",
    "MaskPreprocessor",
    "SegTraining",
    "SegmentConfig",
    "SegmentResult",
    "SegmentationDataError",
    "check_flip",
    "default_layers",
    "dice_summary",
    "make_head",
    "run_segment",
    "segmentation_loss",
]
