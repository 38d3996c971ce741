"""The one training engine every trained thing runs on: step, schedules, parallel wrapping, run folder."""
