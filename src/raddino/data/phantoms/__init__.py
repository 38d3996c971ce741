"""Synthetic chest X-ray phantoms: labelled, segmented, reported test data that needs no download.

Frontal (PA/AP) and lateral radiographs of synthetic subjects whose bodies follow their sex, age, weight
and BMI, with findings in subtle and obvious versions, masks of anatomy and findings, and a findings
paragraph per study. Typical use::

    from raddino.data.phantoms import generate_phantoms, make_phantom

    manifest = generate_phantoms("phantoms", n=1000, size=518, seed=0)   # files + manifest.csv
    phantom = make_phantom(seed=3, size=256)                               # one, in memory
    phantom.image, phantom.masks["heart"], phantom.labels, phantom.metadata, phantom.report
"""

from __future__ import annotations

from raddino.data.phantoms.contact_sheet import write_contact_sheet
from raddino.data.phantoms.generate import PhantomsError, generate_phantoms
from raddino.data.phantoms.plan import plan_phantoms, sample_spec
from raddino.data.phantoms.render import render_phantom
from raddino.data.phantoms.settings import (
    FINDINGS,
    LABELS,
    STRUCTURES,
    PhantomsConfig,
    PhantomSettings,
    Prevalence,
    replace_prevalence,
)
from raddino.data.phantoms.spec import Phantom, PhantomSpec


def make_phantom(
    seed: int = 0, size: int = 256, view: str | None = None, settings: PhantomSettings | None = None
) -> Phantom:
    """Render one phantom in memory: the first image of the data set of ``seed`` (optionally in ``view``).

    Returns:
        ``Phantom`` with ``image`` (float32 (H, W) in [0, 1]), ``masks`` (name → bool (H, W)), ``labels``
        (name → 0/1), ``metadata`` (subject, study, view, split, sex, age, weight, bmi) and ``report``.
    """
    return render_phantom(sample_spec(seed, view, settings), size)


__all__ = [
    "FINDINGS",
    "LABELS",
    "STRUCTURES",
    "Phantom",
    "PhantomSettings",
    "PhantomSpec",
    "PhantomsConfig",
    "PhantomsError",
    "Prevalence",
    "generate_phantoms",
    "make_phantom",
    "plan_phantoms",
    "render_phantom",
    "replace_prevalence",
    "sample_spec",
    "write_contact_sheet",
]
