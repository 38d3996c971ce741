"""How each source's finding names map to the harmonised snake_case columns.

One vocabulary across sources, so that ``pleural_effusion`` means the same column in a CheXpert, NIH-CXR,
PadChest or VinDr-CXR manifest. Names are translated, never merged: NIH's ``Infiltration`` and PadChest's
``infiltrates`` are the same term and share a column; PadChest's ``interstitial pattern`` stays its own.
"""

from __future__ import annotations

from raddino.data.datasets.schema import snake_case

# The 14 CheXpert observations (Irvin et al. 2019), shared by CheXpert, MIMIC-CXR-JPG's label files and BRAX.
CHEXPERT_LABELS = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
CHEXPERT_FINDINGS = {name: snake_case(name) for name in CHEXPERT_LABELS}

# NIH ChestX-ray14 (Wang et al. 2017): 14 findings plus "No Finding"; the bounding-box file says
# "Infiltrate" where the label file says "Infiltration".
NIH_FINDINGS = {
    "No Finding": "no_finding",
    "Atelectasis": "atelectasis",
    "Cardiomegaly": "cardiomegaly",
    "Consolidation": "consolidation",
    "Edema": "edema",
    "Effusion": "pleural_effusion",
    "Emphysema": "emphysema",
    "Fibrosis": "pulmonary_fibrosis",
    "Hernia": "hernia",
    "Infiltration": "infiltration",
    "Infiltrate": "infiltration",
    "Mass": "mass",
    "Nodule": "nodule",
    "Pleural_Thickening": "pleural_thickening",
    "Pneumonia": "pneumonia",
    "Pneumothorax": "pneumothorax",
}
NIH_LABEL_COLUMNS = tuple(dict.fromkeys(value for key, value in NIH_FINDINGS.items() if key != "Infiltrate"))

# VinDr-CXR (Nguyen et al. 2022): 22 local findings and 6 diagnoses in the PhysioNet release's image label
# files; the test file spells one column "Other disease", the training file "Other diseases".
VINDR_LABELS = (
    "Aortic enlargement",
    "Atelectasis",
    "Calcification",
    "Cardiomegaly",
    "Clavicle fracture",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Enlarged PA",
    "ILD",
    "Infiltration",
    "Lung Opacity",
    "Lung cavity",
    "Lung cyst",
    "Mediastinal shift",
    "Nodule/Mass",
    "Pleural effusion",
    "Pleural thickening",
    "Pneumothorax",
    "Pulmonary fibrosis",
    "Rib fracture",
    "Other lesion",
    "COPD",
    "Lung tumor",
    "Pneumonia",
    "Tuberculosis",
    "Other diseases",
    "Other disease",
    "No finding",
)
VINDR_FINDINGS = {name: snake_case(name) for name in VINDR_LABELS}
VINDR_FINDINGS["Other disease"] = "other_diseases"
VINDR_LABEL_COLUMNS = tuple(dict.fromkeys(VINDR_FINDINGS.values()))

# The VinDr-CXR findings the RAD-DINO paper reports linear-probing results for.
VINDR_PAPER_FINDINGS = (
    "lung_opacity",
    "cardiomegaly",
    "pleural_thickening",
    "aortic_enlargement",
    "pulmonary_fibrosis",
    "tuberculosis",
)

# PadChest (Bustos et al. 2020) labels are free terms; each becomes snake_case except these exact synonyms
# of another source's column.
PADCHEST_ALIASES = {
    "normal": "no_finding",
    "infiltrates": "infiltration",
    "pulmonary edema": "edema",
}


def padchest_column(label: str) -> str:
    """The harmonised column of one PadChest label term."""
    term = label.strip()
    return PADCHEST_ALIASES.get(term.lower(), snake_case(term))


# CANDID-PTX (Feng et al. 2021): three findings, each with segmentation masks.
CANDID_LABEL_COLUMNS = ("pneumothorax", "chest_tube", "rib_fracture")

# VinDr-RibCXR (Nguyen et al. 2021): 20 ribs, right R1-R10 then left L1-L10.
RIB_NAMES = tuple(f"R{index}" for index in range(1, 11)) + tuple(f"L{index}" for index in range(1, 11))
