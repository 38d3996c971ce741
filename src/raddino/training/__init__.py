"""The one training engine every trained thing runs on: step, schedules, parallel wrapping, run folder."""

from raddino.training.engine import Callback, CheckpointMismatchError, Engine, FitResult
from raddino.training.metrics import EPOCH_LOGS, CsvColumn, CsvView, MetricsLog, read_metrics
from raddino.training.precision import MixedPrecision, Precision, autocast, resolve_precision
from raddino.training.run_folder import RunFolder
from raddino.training.schedules import (
    Schedules,
    constant_schedule,
    cosine_schedule,
    teacher_temperature_schedule,
)
from raddino.training.step import (
    LossTerms,
    NonFiniteLossError,
    Optimization,
    StepResult,
    TrainingError,
    apply_learning_rate,
    optimization_step,
)
from raddino.training.task import Plan, Task, TaskBase

__all__ = [
    "EPOCH_LOGS",
    "Callback",
    "CheckpointMismatchError",
    "CsvColumn",
    "CsvView",
    "Engine",
    "FitResult",
    "LossTerms",
    "MetricsLog",
    "MixedPrecision",
    "NonFiniteLossError",
    "Optimization",
    "Plan",
    "Precision",
    "RunFolder",
    "Schedules",
    "StepResult",
    "Task",
    "TaskBase",
    "TrainingError",
    "apply_learning_rate",
    "autocast",
    "constant_schedule",
    "cosine_schedule",
    "optimization_step",
    "read_metrics",
    "resolve_precision",
    "teacher_temperature_schedule",
]
