"""Pre-training's schedules live in :mod:`raddino.training.schedules` (shared by every trained thing)."""

from raddino.training.schedules import cosine_schedule, teacher_temperature_schedule

__all__ = ["cosine_schedule", "teacher_temperature_schedule"]
