"""Rendered phantoms: pixels, masks and labels agree, and the anatomy is where a radiologist expects it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from raddino.data.phantoms import (
    FINDINGS,
    LABELS,
    STRUCTURES,
    Phantom,
    PhantomSettings,
    Prevalence,
    make_phantom,
    plan_phantoms,
    render_phantom,
)
from raddino.data.phantoms.lesions import Findings
from raddino.data.phantoms.settings import FRONTAL_ONLY_STRUCTURES, RIB_NAMES

SIZE = 128
# Every finding at 50 %: each batch holds positives and negatives of all of them.
HALF = PhantomSettings(prevalence=Prevalence(**{name: 0.5 for name in FINDINGS}), lateral_fraction=0.2)


@pytest.fixture(scope="module")
def batch() -> list[Phantom]:
    return [render_phantom(spec, SIZE) for spec in plan_phantoms(48, seed=11, settings=HALF)]


def _without(phantom: Phantom, **changes: object) -> Phantom:
    """The same image with some findings removed (no other draw changes, so pixels compare directly)."""
    findings: Findings = dataclasses.replace(phantom.spec.findings, **changes)  # type: ignore[arg-type]
    return render_phantom(dataclasses.replace(phantom.spec, findings=findings), SIZE)


def _ctr(phantom: Phantom) -> float:
    heart = np.flatnonzero(phantom.masks["heart"].any(axis=0))
    lungs = np.flatnonzero((phantom.masks["left_lung"] | phantom.masks["right_lung"]).any(axis=0))
    return (heart[-1] - heart[0] + 1) / (lungs[-1] - lungs[0] + 1)


def test_image_is_a_float_picture_using_the_whole_range(batch: list[Phantom]) -> None:
    for phantom in batch:
        assert phantom.image.dtype == np.float32
        assert phantom.image.shape == (SIZE, SIZE)
        assert phantom.image.min() == 0.0
        assert phantom.image.max() == 1.0
        assert phantom.image.std() > 0.1
        assert set(phantom.masks) == set(STRUCTURES)
        assert set(phantom.labels) == set(LABELS)
        assert all(mask.dtype == bool and mask.shape == (SIZE, SIZE) for mask in phantom.masks.values())


def test_rendering_is_deterministic_and_seeds_differ() -> None:
    first, again, other = (
        make_phantom(seed=5, size=96),
        make_phantom(seed=5, size=96),
        make_phantom(seed=6, size=96),
    )
    np.testing.assert_array_equal(first.image, again.image)
    assert first.report == again.report
    for name in STRUCTURES:
        np.testing.assert_array_equal(first.masks[name], again.masks[name])
    assert np.abs(first.image - other.image).mean() > 0.02


def test_finding_masks_are_non_empty_exactly_when_labelled(batch: list[Phantom]) -> None:
    pairs = {
        "pneumothorax": "pneumothorax",
        "support_device": "chest_tube",
        "pleural_effusion": "pleural_effusion",
        "nodule": "nodule",
        "lung_opacity": "lung_opacity",
    }
    for label, structure in pairs.items():
        flags = [(bool(p.labels[label]), bool(p.masks[structure].any())) for p in batch]
        assert all(present == drawn for present, drawn in flags), (label, flags)
        assert any(present for present, _ in flags)
        assert not all(present for present, _ in flags)


def test_no_finding_is_set_when_no_pathology_is(batch: list[Phantom]) -> None:
    for phantom in batch:
        pathologies = [phantom.labels[name] for name in FINDINGS if name != "support_device"]
        assert phantom.labels["no_finding"] == int(not any(pathologies))


def test_cardiomegaly_label_matches_the_cardiothoracic_ratio_of_the_masks(batch: list[Phantom]) -> None:
    frontal = [p for p in batch if p.metadata["view"] != "LATERAL"]
    for phantom in frontal:
        assert (_ctr(phantom) > 0.5) == bool(phantom.labels["cardiomegaly"]), phantom.spec.image_id
    assert {p.labels["cardiomegaly"] for p in frontal} == {0, 1}


def test_patient_left_is_on_the_image_right_and_zones_split_each_lung(batch: list[Phantom]) -> None:
    for phantom in (p for p in batch if p.metadata["view"] != "LATERAL"):
        masks = phantom.masks
        right_col = np.argwhere(masks["right_lung"])[:, 1].mean()
        left_col = np.argwhere(masks["left_lung"])[:, 1].mean()
        assert right_col < SIZE / 2 < left_col
        assert np.argwhere(masks["heart"])[:, 1].mean() > SIZE / 2 - 4  # the heart lies mostly to the left
        for side in ("right", "left"):
            zones = [masks[f"{side}_{zone}_zone"] for zone in ("upper", "mid", "lower")]
            np.testing.assert_array_equal(zones[0] | zones[1] | zones[2], masks[f"{side}_lung"])
            assert not (zones[0] & zones[1]).any()
            assert not (zones[1] & zones[2]).any()
            rows = [np.argwhere(zone)[:, 0].mean() for zone in zones]
            assert rows[0] < rows[1] < rows[2]
        for letter, outward in (("R", -1), ("L", 1)):
            assert all(masks[f"rib_{letter}{number}"].any() for number in range(1, 11))
            tops = [np.argwhere(masks[f"rib_{letter}{number}"])[:, 0].min() for number in range(1, 11)]
            assert tops == sorted(tops)  # rib 1 at the top, rib 10 at the bottom
            columns = np.argwhere(masks[f"rib_{letter}5"])[:, 1].mean()
            assert (columns - SIZE / 2) * outward > 0


def test_lateral_views_keep_frontal_only_masks_empty(batch: list[Phantom]) -> None:
    laterals = [p for p in batch if p.metadata["view"] == "LATERAL"]
    assert laterals
    for phantom in laterals:
        assert phantom.masks["heart"].any()
        assert not any(phantom.masks[name].any() for name in FRONTAL_ONLY_STRUCTURES)


def test_effusion_is_fluid_in_the_lower_zone_of_the_lung(batch: list[Phantom]) -> None:
    frontal = [p for p in batch if p.spec.findings.effusion is not None and p.metadata["view"] != "LATERAL"]
    assert frontal
    for phantom in frontal:
        effusion = phantom.spec.findings.effusion
        assert effusion is not None
        dry = _without(phantom, effusion=None)
        for side in effusion.sides:
            lower, upper = phantom.masks[f"{side}_lower_zone"], phantom.masks[f"{side}_upper_zone"]
            fluid = phantom.masks["pleural_effusion"] & phantom.masks[f"{side}_lung"]
            assert (fluid & lower).any(), "fluid pixels lie in the lung mask's lower zone"
            assert (fluid & lower).sum() >= 0.5 * fluid.sum() or effusion.height > 0.3
            # Fluid replaces air: the lower zone brightens, the upper zone does not change.
            brighter = phantom.image[fluid & lower].mean() - dry.image[fluid & lower].mean()
            assert brighter > (0.03 if effusion.severity == "subtle" else 0.08)
            assert abs(phantom.image[upper].mean() - dry.image[upper].mean()) < 0.01


def test_pneumothorax_is_darker_than_lung_and_has_no_markings(batch: list[Phantom]) -> None:
    cases = [p for p in batch if p.spec.findings.pneumothorax is not None and p.metadata["view"] != "LATERAL"]
    assert cases
    for phantom in cases:
        space = phantom.masks["pneumothorax"]
        ptx = phantom.spec.findings.pneumothorax
        assert ptx is not None
        assert (space & phantom.masks[f"{ptx.side}_lung"]).sum() == space.sum()
        healthy = _without(phantom, pneumothorax=None)
        assert phantom.image[space].mean() < healthy.image[space].mean() - 0.02


def test_nodules_tubes_and_opacities_add_density_where_their_masks_are(batch: list[Phantom]) -> None:
    checked = 0
    for phantom in batch:
        findings = phantom.spec.findings
        for structure, change in (
            ("nodule", {"nodules": ()}),
            ("chest_tube", {"device": None}),
            ("lung_opacity", {"opacity": None}),
        ):
            mask = phantom.masks[structure]
            if not mask.any():
                continue
            plain = _without(phantom, **change)
            gain = phantom.image[mask].mean() - plain.image[mask].mean()
            subtle = (
                findings.severities.get({"chest_tube": "support_device"}.get(structure, structure))
                == "subtle"
            )
            assert gain > (0.004 if subtle else 0.02), (phantom.spec.image_id, structure, gain)
            checked += 1
    assert checked >= 10


def test_geometry_does_not_depend_on_resolution() -> None:
    spec = plan_phantoms(1, seed=3)[0]
    small, large = render_phantom(spec, 128), render_phantom(spec, 256)
    for name in ("left_lung", "right_lung", "heart", "rib_R4"):
        coarse = large.masks[name].reshape(128, 2, 128, 2).mean(axis=(1, 3)) > 0.5
        overlap = (coarse & small.masks[name]).sum() / (coarse | small.masks[name]).sum()
        assert overlap > 0.85, name


def test_rib_masks_follow_the_pixels() -> None:
    contrasts = []
    for seed in range(6):
        phantom = make_phantom(seed=seed, size=192, view="PA")
        lung = phantom.masks["right_lung"] | phantom.masks["left_lung"]
        ribs = np.logical_or.reduce([phantom.masks[f"rib_{name}"] for name in RIB_NAMES])
        # Ribs are bone: inside the lungs, pixels under a rib mask are brighter than those between ribs.
        contrasts.append(phantom.image[lung & ribs].mean() - phantom.image[lung & ~ribs].mean())
    assert min(contrasts) > 0.005
    assert np.mean(contrasts) > 0.012
