"""Pre-training's metrics log lives in :mod:`raddino.training.metrics` (one log for every trained thing)."""

from raddino.training.metrics import MetricsLog, read_metrics

__all__ = ["MetricsLog", "read_metrics"]
