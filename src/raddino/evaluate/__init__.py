"""Embedding and evaluating frozen encoders with the paper's protocol.

- ``embed`` / ``embedding_store``: embeddings at scale (``raddino embed``);
- ``features``: the feature cache shared by the evaluations;
- ``probe`` (+ ``linear_heads``, ``probe_augment``): linear probing, AUPRC / AUROC over seeds;
- ``knn`` and ``search``: nearest-neighbour classification, retrieval and image search;
- ``metadata``: patient metadata from embeddings (logistic regression, k-fold accuracy);
- ``segment`` (+ ``seg_heads``, ``seg_train``, ``seg_data``): linear / ViTDet / UPerNet heads, Dice;
- ``compare``: tables of several encoders' results;
- ``metrics``, ``labels``, ``labelled``, ``results``, ``figures``: shared pieces (splits: ``data.splits``).

Submodules are imported where used, so ``import raddino.evaluate`` stays light.
"""
