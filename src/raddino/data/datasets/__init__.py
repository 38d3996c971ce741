"""Manifests of public chest X-ray datasets, built from each dataset's own metadata files.

RAD-DINO's pre-training data is MIMIC-CXR + CheXpert + NIH-CXR + PadChest + BRAX (paper, Table B.1); its
evaluations use VinDr-CXR, RSNA Pneumonia, CANDID-PTX, VinDr-RibCXR and PadChest. Each adapter reads a
dataset as its publishers distribute it (we never download anything) and returns harmonised rows (see
``schema``); :func:`merge_manifests` joins them into a pre-training manifest without evaluation subjects.
"""

from raddino.data.datasets.counts import RELEASE_IMAGES, SourceCounts, count_sources, format_counts
from raddino.data.datasets.findings import VINDR_PAPER_FINDINGS
from raddino.data.datasets.merge import MergeResult, merge_manifests, write_merged
from raddino.data.datasets.registry import DATASETS, DatasetAdapter, build_manifest, write_dataset_manifest
from raddino.data.datasets.schema import HARMONISED_COLUMNS, DatasetError, DatasetManifest, Problem
from raddino.data.splits import assign_subject_splits, parse_fractions, subjects_in_several_splits

__all__ = [
    "DATASETS",
    "HARMONISED_COLUMNS",
    "RELEASE_IMAGES",
    "VINDR_PAPER_FINDINGS",
    "DatasetAdapter",
    "DatasetError",
    "DatasetManifest",
    "MergeResult",
    "Problem",
    "SourceCounts",
    "assign_subject_splits",
    "build_manifest",
    "count_sources",
    "format_counts",
    "merge_manifests",
    "parse_fractions",
    "subjects_in_several_splits",
    "write_dataset_manifest",
    "write_merged",
]
