"""Findings paragraphs generated from a study's findings, with varied phrasing and negations.

Every sentence is true of the image: positives carry side, size and severity taken from the drawn
findings, and negatives ("No pneumothorax.") are only said of absent findings. Phrasing is drawn from
several templates per statement, and some negatives are left unsaid, as radiologists do, so a report
generator must read the image rather than copy a fixed text.
"""

from __future__ import annotations

import numpy as np

from raddino.data.phantoms.lesions import Findings, Nodule

TECHNIQUE = {
    ("PA",): ["PA view of the chest.", "Frontal view of the chest."],
    ("AP",): ["AP portable view of the chest.", "Portable AP radiograph of the chest."],
    ("PA", "LATERAL"): ["PA and lateral views of the chest.", "Frontal and lateral views of the chest."],
    ("AP", "LATERAL"): ["AP and lateral views of the chest.", "Frontal and lateral views of the chest."],
}


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _zone(v: float) -> str:
    return "upper" if v < 0.36 else "mid" if v < 0.68 else "lower"


def _nodule_sentence(rng: np.random.Generator, nodule: Nodule) -> str:
    where = f"{nodule.side} {_zone(nodule.v)} zone"
    size = f"{nodule.diameter_mm:.0f} mm" if nodule.diameter_mm < 10 else f"{nodule.diameter_mm / 10:.1f} cm"
    if nodule.severity == "subtle":
        return _pick(
            rng,
            [
                f"A {size} nodular opacity projects over the {where}.",
                f"Small {size} nodule in the {where}.",
                f"There is a subtle {size} nodule in the {where}.",
            ],
        )
    return _pick(
        rng,
        [
            f"A {size} rounded nodular opacity in the {where}.",
            f"Well-defined {size} pulmonary nodule in the {where}.",
            f"There is a {size} nodule in the {where}.",
        ],
    )


def _effusion_sentence(rng: np.random.Generator, findings: Findings) -> str:
    effusion = findings.effusion
    assert effusion is not None
    size = "small" if effusion.severity == "subtle" else ("large" if effusion.height > 0.3 else "moderate")
    if len(effusion.sides) == 2:
        return _pick(
            rng,
            [
                f"{size.capitalize()} bilateral pleural effusions.",
                f"There are {size} bilateral pleural effusions.",
                f"Bilateral {size} pleural effusions with blunting of the costophrenic angles.",
            ],
        )
    side = effusion.sides[0]
    if effusion.severity == "subtle":
        return _pick(
            rng,
            [
                f"Blunting of the {side} costophrenic angle, in keeping with a small effusion.",
                f"Small {side} pleural effusion.",
                f"There is a trace {side} pleural effusion.",
            ],
        )
    return _pick(
        rng,
        [
            f"{size.capitalize()} {side} pleural effusion with a meniscus.",
            f"There is a {size} {side} pleural effusion.",
            f"{size.capitalize()} {side} pleural effusion obscuring the {side} hemidiaphragm.",
        ],
    )


def findings_sentences(rng: np.random.Generator, findings: Findings) -> list[str]:
    """One sentence per finding, positive or negative, in a radiologist's usual order."""
    labels = findings.labels
    sentences = []
    severity = findings.severities
    if findings.device is not None:
        device = findings.device
        sentences.append(
            _pick(
                rng,
                [
                    f"A {device.side}-sided chest tube is in place with its tip near the apex.",
                    f"{device.side.capitalize()} chest tube in place.",
                    f"There is a {device.side} chest tube.",
                ],
            )
        )
        if device.ecg_leads:
            sentences.append(_pick(rng, ["Overlying ECG leads.", "Monitoring leads overlie the chest."]))
    if labels["cardiomegaly"]:
        sentences.append(
            _pick(
                rng,
                [
                    "The heart is mildly enlarged.",
                    "Mild cardiomegaly.",
                    "Borderline to mildly enlarged heart.",
                ],
            )
            if severity["cardiomegaly"] == "subtle"
            else _pick(rng, ["The heart is markedly enlarged.", "Moderate cardiomegaly.", "Cardiomegaly."])
        )
    else:
        sentences.append(
            _pick(
                rng,
                [
                    "Heart size is normal.",
                    "The cardiomediastinal silhouette is within normal limits.",
                    "Normal heart size.",
                ],
            )
        )
    if findings.opacity is not None:
        opacity = findings.opacity
        where = f"{opacity.side} {_zone(opacity.v)} zone"
        sentences.append(
            _pick(rng, [f"Faint patchy opacity in the {where}.", f"Subtle airspace opacity in the {where}."])
            if opacity.severity == "subtle"
            else _pick(
                rng, [f"Dense consolidation in the {where}.", f"Focal airspace consolidation in the {where}."]
            )
        )
    elif not labels["fibrosis"] and rng.random() < 0.7:
        sentences.append(
            _pick(rng, ["The lungs are clear.", "No focal consolidation.", "No focal airspace opacity."])
        )
    for nodule in findings.nodules:
        sentences.append(_nodule_sentence(rng, nodule))
    if findings.fibrosis is not None:
        sentences.append(
            _pick(rng, ["Subtle reticular opacities at the lung bases.", "Mild basal interstitial changes."])
            if findings.fibrosis.severity == "subtle"
            else _pick(
                rng,
                [
                    "Coarse reticular opacities in both lower zones, consistent with pulmonary fibrosis.",
                    "Extensive basal and peripheral reticulation in keeping with fibrosis.",
                ],
            )
        )
    if findings.effusion is not None:
        sentences.append(_effusion_sentence(rng, findings))
    elif rng.random() < 0.8:
        sentences.append(_pick(rng, ["No pleural effusion.", "The costophrenic angles are sharp."]))
    if findings.pneumothorax is not None:
        ptx = findings.pneumothorax
        sentences.append(
            _pick(
                rng, [f"Small {ptx.side} apical pneumothorax.", f"There is a small {ptx.side} pneumothorax."]
            )
            if ptx.severity == "subtle"
            else _pick(
                rng,
                [
                    f"Large {ptx.side} pneumothorax with partial collapse of the {ptx.side} lung.",
                    f"Moderate {ptx.side} pneumothorax.",
                ],
            )
        )
    elif rng.random() < 0.85:
        sentences.append(_pick(rng, ["No pneumothorax.", "There is no pneumothorax."]))
    if labels["no_finding"] and rng.random() < 0.5:
        sentences.append("No acute cardiopulmonary process.")
    return sentences


def write_report(rng: np.random.Generator, findings: Findings, views: tuple[str, ...]) -> str:
    """The study's report: ``"FINDINGS: <technique> <sentences>"``."""
    technique = _pick(rng, TECHNIQUE.get(views, ["Views of the chest."]))
    return "FINDINGS: " + " ".join([technique, *findings_sentences(rng, findings)])
