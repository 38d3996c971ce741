"""Continual DINOv2 pre-training: DINO + iBOT + KoLeo with an EMA teacher (``raddino pretrain``).

Entry points: :func:`raddino.pretrain.train.pretrain` (the run, on the training engine; the task is
:class:`raddino.pretrain.task.PretrainTask`), :func:`raddino.pretrain.config.load_pretrain_config` (the
typed config) and
:func:`raddino.pretrain.export.export_run` (a run's encoder out). Submodules are imported on use, so
``import raddino.pretrain.losses`` stays light.
"""
