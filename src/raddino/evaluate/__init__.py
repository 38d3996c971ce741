"""Evaluating frozen encoders with the paper's protocol (their features come from :mod:`raddino.features`).

- ``probe`` (+ ``linear_heads``, ``probe_augment``): linear probing, AUPRC / AUROC over seeds;
- ``knn`` and ``search``: nearest-neighbour classification, retrieval and image search;
- ``metadata``: patient metadata from embeddings (logistic regression, k-fold accuracy);
- ``segment`` (+ ``seg_heads``, ``seg_train``, ``seg_data``): linear / ViTDet / UPerNet heads, Dice;
- ``compare``: tables of several encoders' results;
- ``metrics``, ``labels``, ``labelled``, ``results``, ``figures``: shared pieces (splits: ``data.splits``).

Submodules are imported where used, so ``import raddino.evaluate`` stays light.
"""
