"""Linear probing of a frozen encoder (paper §4.2): multi-label heads on cached features, AUPRC / AUROC
over seeds.

Modules: ``run`` (``raddino probe``: features, seeds, the sklearn alternative, results), ``heads`` (many
linear heads trained together in one pass), ``augment`` (the optional light-augmentation path, where the
encoder embeds a random affine view of every training image each epoch).

>>> from raddino.evaluate.probe import ProbeConfig, run_probe
>>> result = run_probe(ProbeConfig(input="labels.csv", out="res/probe"))  # doctest: +SKIP
"""

from raddino.evaluate.probe.heads import HeadSpec, HeadTraining, TrainedHeads, masked_bce, train_linear_heads
from raddino.evaluate.probe.run import ProbeConfig, ProbeResult, run_probe

__all__ = [
    "HeadSpec",
    "HeadTraining",
    "ProbeConfig",
    "ProbeResult",
    "TrainedHeads",
    "masked_bce",
    "run_probe",
    "train_linear_heads",
]
