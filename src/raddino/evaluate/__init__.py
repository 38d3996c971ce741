"""Evaluating frozen encoders with the paper's protocol (their features come from :mod:`raddino.features`).

- ``probe`` (``run``, ``heads``, ``augment``): linear probing, AUPRC / AUROC over seeds;
- ``knn`` and ``search``: nearest-neighbour classification, retrieval and image search;
- ``metadata``: patient metadata from embeddings (logistic regression, k-fold accuracy);
- ``segmentation`` (``run``, ``train``, ``heads``, ``data``): linear / ViTDet / UPerNet heads, Dice;
- ``compare``: tables of several encoders' results;
- ``metrics``, ``labels``, ``labelled``, ``results``, ``figures``: shared pieces (splits: ``data.splits``).

Submodules are imported where used, so ``import raddino.evaluate`` stays light. Report generation is
its own package, :mod:`raddino.reportgen`.
"""
