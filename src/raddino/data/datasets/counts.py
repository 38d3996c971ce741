"""Images and subjects per source, printed in the layout of the paper's Table B.1.

``RELEASE_IMAGES`` holds the number of images of each public dataset that the released ``microsoft/rad-dino``
checkpoint was trained on (its model card's training-data table; 882,775 in total). They differ from
the datasets' own sizes: MIMIC-CXR's 368,960 is its official train split (the validation and test
images were left out), CheXpert's 223,648 is train + valid (223,414 + 234).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from raddino.data.datasets.schema import LATERAL_VIEWS

RELEASE_IMAGES = {
    "mimic-cxr": 368_960,
    "chexpert": 223_648,
    "nih-cxr": 112_120,
    "padchest": 136_787,
    "brax": 41_260,
}


@dataclass
class SourceCounts:
    """What one source contributes to a manifest.

    Attributes:
        source: The dataset's name.
        images: Rows.
        subjects: Distinct subject ids (rows without one count as their own subject).
        frontal: Rows whose ``frontal`` is 1.
        lateral: Rows whose view is a lateral (LATERAL, LL, RL, cross-table lateral).
        dropped: Rows removed on the way (by reason), for the merge summary.
    """

    source: str
    images: int = 0
    subjects: int = 0
    frontal: int = 0
    lateral: int = 0
    dropped: dict[str, int] | None = None


def count_sources(rows: Iterable[Mapping[str, str]]) -> dict[str, SourceCounts]:
    """Counts per ``source`` value, in first-seen order."""
    counts: dict[str, SourceCounts] = {}
    subjects: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        source = row.get("source", "")
        entry = counts.setdefault(source, SourceCounts(source))
        entry.images += 1
        entry.frontal += row.get("frontal") == "1"
        entry.lateral += row.get("view", "") in LATERAL_VIEWS
        subjects[source].add(row.get("subject_id") or f"id:{row.get('id', '')}")
    for source, entry in counts.items():
        entry.subjects = len(subjects[source])
    return counts


def format_counts(counts: Mapping[str, SourceCounts], reasons: Sequence[str] = ()) -> str:
    """A plain-text table: one line per source, a total line, and the release's image count when known.

    Args:
        counts: From :func:`count_sources` (``dropped`` filled by the merge).
        reasons: Columns of dropped images to show, in order (``"excluded"``, ``"not frontal"``).
    """
    header = ["Dataset", "Images", "Subjects", "Frontal", "Lateral", *[f"Dropped: {r}" for r in reasons]]
    header.append("Release images")
    lines = []
    totals = [0] * (4 + len(reasons))
    for entry in counts.values():
        numbers = [entry.images, entry.subjects, entry.frontal, entry.lateral]
        numbers += [(entry.dropped or {}).get(reason, 0) for reason in reasons]
        totals = [total + number for total, number in zip(totals, numbers, strict=True)]
        release = RELEASE_IMAGES.get(entry.source)
        lines.append([entry.source, *(f"{n:,}" for n in numbers), f"{release:,}" if release else "-"])
    lines.append(["Total", *(f"{n:,}" for n in totals), "-"])
    widths = [max(len(str(line[i])) for line in [header, *lines]) for i in range(len(header))]
    rendered = [
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        )
        for line in [header, *lines]
    ]
    rule = "-" * len(rendered[0])
    return "\n".join([rendered[0], rule, *rendered[1:-1], rule, rendered[-1]])
