"""The paper's ablations as one command each (``raddino ablate``): resolution, data size, initialisation,
objective, or any pre-training key, each point a normal run folder, ending in the paper's figure layout.

Modules: ``sweep`` (the points), ``subsets`` (the pool and nested data-size subsets), ``point`` (one
point: pre-train, export, probe), ``queue`` (points in parallel), ``results`` and ``figure`` (tables and
the PNG), ``run`` (the sweep).
"""

from raddino.ablate.config import AblateRun
from raddino.ablate.run import AblationResult, run_ablation
from raddino.ablate.sweep import Point, SweepError, make_points

__all__ = ["AblateRun", "AblationResult", "Point", "SweepError", "make_points", "run_ablation"]
