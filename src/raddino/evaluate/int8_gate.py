"""The acceptance gate of an int8 encoder against its float32 original (issue 19), and its measures.

On held-out images: the macro AUPRC of a logistic-regression probe on the manifest's label columns (each
encoder's probe fitted on its own training-split CLS features) within ``max_auprc_drop`` of float32's, and
the share of each held-out image's 10 cosine nearest training images both encoders agree on at least
``min_overlap``. The mean-centred CLS cosine to float32 is reported beside them (not gated). Without
label columns only the overlap is gated, and the verdict says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from raddino.evaluate.neighbours import exact_nearest
from raddino.features.quick_probe import quick_probe_macro_auprc

MAX_AUPRC_DROP = 0.01
"""The probe's macro AUPRC within 0.01 of float32's."""
MIN_KNN_OVERLAP = 0.9
"""The held-out images' 10 nearest training images at least 90% the same."""
KNN_K = 10


def centred_cosine(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Mean cosine between rows of two (N, D) feature sets after removing each set's mean row.

    Centring matters: a shared offset (every CLS token alike) makes raw cosines near 1 whatever the
    image-to-image differences do.
    """
    a = reference - reference.mean(axis=0, keepdims=True)
    b = candidate - candidate.mean(axis=0, keepdims=True)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.mean(np.sum(a * b, axis=1) / np.maximum(norms, 1e-12)))


def knn_overlap(
    reference: tuple[np.ndarray, np.ndarray], candidate: tuple[np.ndarray, np.ndarray], k: int = KNN_K
) -> float:
    """Mean share of each query's ``k`` cosine nearest gallery items that both feature sets agree on.

    Args:
        reference: Float32 (queries (Nq, D), gallery (Ng, D)).
        candidate: The same images through the quantised encoder.
        k: Neighbours per query (at most the gallery's size).
    """
    k = min(k, len(reference[1]))
    ours, theirs = exact_nearest(*reference, k)[1].numpy(), exact_nearest(*candidate, k)[1].numpy()
    shared = [len(set(a.tolist()) & set(b.tolist())) for a, b in zip(ours, theirs, strict=True)]
    return float(np.mean(shared) / k)


def probe_macro_auprc(
    train: np.ndarray, train_labels: np.ndarray, test: np.ndarray, test_labels: np.ndarray
) -> float:
    """The quick linear probe's macro AUPRC (:func:`raddino.features.quick_probe.quick_probe_macro_auprc`).

    Raises:
        ValueError: no column has both classes in both splits.
    """
    auprc = quick_probe_macro_auprc(train, train_labels, test, test_labels)
    if np.isnan(auprc):
        raise ValueError("no label column has both classes in the training and held-out images")
    return auprc


@dataclass
class GateResult:
    """The gate's numbers and verdict; ``auprc_*`` are ``None`` when no label column was usable."""

    overlap: float
    cosine: float
    auprc_float32: float | None = None
    auprc_int8: float | None = None
    label_columns: list[str] = field(default_factory=list)
    max_auprc_drop: float = MAX_AUPRC_DROP
    min_overlap: float = MIN_KNN_OVERLAP
    train_images: int = 0
    heldout_images: int = 0

    @property
    def auprc_change(self) -> float | None:
        """int8's probe AUPRC minus float32's."""
        if self.auprc_float32 is None or self.auprc_int8 is None:
            return None
        return self.auprc_int8 - self.auprc_float32

    @property
    def passed(self) -> bool:
        """Overlap at least ``min_overlap`` and, with labels, an AUPRC drop of at most ``max_auprc_drop``."""
        change = self.auprc_change
        probe_ok = change is None or -change <= self.max_auprc_drop + 1e-12
        return self.overlap >= self.min_overlap and probe_ok

    def describe(self) -> str:
        """One line: verdict and every number against its bound."""
        change = self.auprc_change
        probe = (
            f"probe macro AUPRC {self.auprc_int8:.3f} vs float32 {self.auprc_float32:.3f} "
            f"(change {change:+.3f}, ≥ −{self.max_auprc_drop} needed)"
            if change is not None
            else "probe not run (no label columns with both classes: only the kNN overlap is gated)"
        )
        return (
            f"int8 gate {'passed' if self.passed else 'failed'}: kNN top-{KNN_K} overlap {self.overlap:.3f} "
            f"(≥ {self.min_overlap} needed), {probe}, centred CLS cosine {self.cosine:.3f}; "
            f"{self.train_images} training and {self.heldout_images} held-out images"
        )

    def to_dict(self) -> dict:
        """For ``int8.json``."""
        return {**asdict(self), "auprc_change": self.auprc_change, "passed": self.passed, "k": KNN_K}


def gate(
    reference: tuple[np.ndarray, np.ndarray],
    candidate: tuple[np.ndarray, np.ndarray],
    labels: tuple[np.ndarray, np.ndarray] | None = None,
    label_columns: Sequence[str] = (),
    *,
    max_auprc_drop: float = MAX_AUPRC_DROP,
    min_overlap: float = MIN_KNN_OVERLAP,
) -> GateResult:
    """Judge int8 CLS features against float32's.

    Args:
        reference: Float32 CLS features (held-out (Nq, D), training (Ng, D)).
        candidate: The same images through the int8 encoder.
        labels: (training (Ng, C), held-out (Nq, C)) 0/1/NaN labels, or ``None``.
        label_columns: The names of the C columns (recorded).
        max_auprc_drop: Largest accepted drop of the probe's macro AUPRC.
        min_overlap: Smallest accepted kNN top-10 overlap.
    """
    result = GateResult(
        overlap=knn_overlap(reference, candidate),
        cosine=centred_cosine(reference[0], candidate[0]),
        label_columns=list(label_columns),
        max_auprc_drop=max_auprc_drop,
        min_overlap=min_overlap,
        train_images=len(reference[1]),
        heldout_images=len(reference[0]),
    )
    if labels is not None and labels[0].shape[1]:
        try:
            result.auprc_float32 = probe_macro_auprc(reference[1], labels[0], reference[0], labels[1])
            result.auprc_int8 = probe_macro_auprc(candidate[1], labels[0], candidate[0], labels[1])
        except ValueError:  # no column with both classes in both splits: the overlap alone decides
            result.auprc_float32 = result.auprc_int8 = None
    return result


__all__ = [
    "KNN_K",
    "MAX_AUPRC_DROP",
    "MIN_KNN_OVERLAP",
    "GateResult",
    "centred_cosine",
    "gate",
    "knn_overlap",
    "probe_macro_auprc",
]
