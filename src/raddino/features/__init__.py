"""Frozen encoder features on disk: the first user story (weights + a folder of X-rays → embeddings).

- ``embed``: ``raddino embed``, CLS / pooled patch / patch tokens / intermediate layers at scale, resumable,
  one or many ranks under ``torchrun``;
- ``options``: what ``embed`` settles before it writes anything (the model's preprocessing and where it
  came from, every option checked against the model and the machine);
- ``store``: the on-disk layout of an embeddings run (shards, tokens files, ``run.json``) and its readers;
- ``cache``: the feature cache the evaluations share, an embeddings run per (manifest, model, layers).

Submodules are imported where used, so ``import raddino.features`` stays light.
"""
