"""The README runs as written: every fenced block marked runnable is executed, top to bottom, in one folder.

The convention (in README.md): an HTML comment on the line right before a fence, which GitHub does not show,

    <!-- runnable -->          the next ```bash or ```python block runs in the suite (seconds)
    <!-- runnable: slow -->    the same, marked ``slow`` (still runs in CI)

Blocks run in README order in one temporary folder (one test, so the order holds under xdist), as a
reader following the page would run them, so a block may use what an earlier one wrote (``prepared/``
from the prepare snippet). A ``python`` block runs in a fresh interpreter of this virtual environment; a
``bash`` block runs under ``bash -euo pipefail`` with this environment's ``bin/`` first on ``PATH`` (so
``raddino`` is the checkout's command). Nothing in a block is substituted: a block that would take long
on real data is written at a tiny size in the README itself. The environment is the caller's plus one
intra-op thread (``OMP_NUM_THREADS=1``, ``MKL_NUM_THREADS=1``) and ``HF_HUB_OFFLINE=1`` (nothing
downloads: a hub id resolves only to the local folder of that name, as transformers and ``load_encoder``
both do when one exists). A block indented inside a list item is dedented before it runs.

The folder is not empty: ``build_sandbox`` first writes the user inputs the README names, so that the
blocks run as a user with those files would run them (everything test-sized):

- ``phantom_data/``: 60 phantoms at 64 px with masks and DICOMs; ``manifest.csv``, ``labels.csv``,
  ``masks.csv`` and ``studies.csv`` are its manifest (labels, ``mask_*`` columns, ``report``, ``split``);
- ``xrays/`` and ``cxr/``: 8 of those PNGs as ``pSUBJECT/s1/view.png`` (so ``p10/s1/view`` is an id);
- ``cxr.png``, ``a.png``, ``b.png`` (1024 px phantoms) and ``c.png`` (256 px); ``cxr.dcm``, ``query.dcm``
  and ``study/1.2.840.113619.2.55.dcm`` (phantom DICOMs);
- ``rad-dino/``, ``microsoft/rad-dino/`` and ``path/to/model/``: one ``preset:test`` encoder with 12
  blocks (32 wide, as ViT-B/14 has 12) saved as a transformers folder with 56-px preprocessing;
  ``facebook/dinov2-base/`` a 2-block one; ``dino_head.safetensors`` a small DINO head;
  ``eval/teacher_checkpoint.pth`` a 64-wide encoder and its head in DINOv2's training-checkpoint layout;
- ``dinov3-vitb16/``: a ``preset:test16`` DINOv3 folder; ``dinov3_vitb16_pretrain_lvd1689m-73cec8be.pth``
  the same in DINOv3's original key names; ``cxr512.json`` a 512-px preprocessing.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = re.compile(r"^<!--\s*runnable(?::\s*(?P<tag>slow))?\s*-->\s*$")
FENCE = re.compile(r"^```(?P<language>bash|python)\s*$")
TIMEOUT_SECONDS = 120


@dataclass(frozen=True)
class Snippet:
    """One runnable block: its language, code and the README line its fence opens on (1-based)."""

    language: str
    code: str
    line: int
    slow: bool

    @property
    def name(self) -> str:
        return f"README.md:{self.line}:{self.language}"


def runnable_snippets(text: str) -> list[Snippet]:
    """The blocks marked runnable, in order.

    Raises:
        ValueError: a marker not followed by a ``bash`` / ``python`` fence, or a block left open.
    """
    lines = text.splitlines()
    snippets = []
    for index, line in enumerate(lines):
        marker = MARKER.match(line.strip())
        if marker is None:
            continue
        fence = FENCE.match(lines[index + 1].strip()) if index + 1 < len(lines) else None
        if fence is None:
            raise ValueError(
                f"README.md:{index + 1}: a runnable marker must precede a ```bash or ```python fence"
            )
        end = next((j for j in range(index + 2, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            raise ValueError(f"README.md:{index + 2}: the runnable block is never closed")
        code = textwrap.dedent("\n".join(lines[index + 2 : end]) + "\n")
        snippets.append(Snippet(fence["language"], code, index + 2, marker["tag"] == "slow"))
    return snippets


SNIPPETS = runnable_snippets(README.read_text(encoding="utf-8"))


def _environment() -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
    }


def _command(snippet: Snippet) -> list[str]:
    if snippet.language == "python":
        return [sys.executable, "-c", snippet.code]
    return ["bash", "-euo", "pipefail", "-c", snippet.code]


def build_sandbox(folder: Path) -> None:
    """Write into ``folder`` every input the runnable blocks name (listed in the module docstring)."""
    import torch

    from raddino.data.phantoms import generate_phantoms, make_phantom
    from raddino.data.preprocess import PreprocessConfig
    from raddino.io import write_png
    from raddino.models import DINOHead, Encoder
    from raddino.models.convert import dinov2_state_dict
    from raddino.models.dino_head import save_dino_head
    from raddino.models.export import save_original_weights

    manifest = generate_phantoms(
        folder / "phantom_data",
        n=60,
        size=64,
        seed=0,
        workers=1,
        formats=("png8", "dicom"),
        progress=False,
    )
    rows, columns = _prefixed_rows(manifest, "phantom_data/")
    for name in ("manifest.csv", "labels.csv", "masks.csv", "studies.csv"):
        _write_csv(folder / name, rows, columns)
    dicoms = sorted((folder / "phantom_data" / "dicom").glob("*.dcm"))
    for target, source in zip(
        ("cxr.dcm", "query.dcm", "study/1.2.840.113619.2.55.dcm"), dicoms, strict=False
    ):
        (folder / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, folder / target)
    pngs = sorted((folder / "phantom_data" / "images").glob("*.png"))
    for index, source in enumerate(pngs[:8]):
        for root in ("xrays", "cxr"):
            (folder / root / f"p{10 + index}" / "s1").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, folder / root / f"p{10 + index}" / "s1" / "view.png")
    # 1024 px, so that README's points (x up to 600, y up to 800) lie inside the image
    for seed, name in enumerate(("cxr.png", "a.png", "b.png", "c.png")):
        write_png(folder / name, make_phantom(seed=seed, size=1024 if name != "c.png" else 256).image)

    tiny = PreprocessConfig(shortest_edge=56, crop_size=(56, 56))
    encoder = Encoder.from_preset("test", seed=0, num_hidden_layers=12)  # 12 blocks, as ViT-B/14
    for name in ("rad-dino", "microsoft/rad-dino", "path/to/model"):
        encoder.save_pretrained(folder / name, preprocess=tiny)
    Encoder.from_preset("test", seed=1).save_pretrained(folder / "facebook/dinov2-base", preprocess=tiny)
    head = DINOHead(in_dim=32, out_dim=64, hidden_dim=48, bottleneck_dim=16)
    save_dino_head(head, folder / "dino_head.safetensors")
    # 64 wide, so DINOv2's 64-dim heads (the rule for a .pth, which has no metadata) give its one head
    wide = Encoder.from_preset("test", seed=0, hidden_size=64, num_attention_heads=1, intermediate_size=128)
    teacher = {f"backbone.{key}": value for key, value in dinov2_state_dict(wide).items()}
    wide_head = DINOHead(in_dim=64, out_dim=64, hidden_dim=48, bottleneck_dim=16)
    teacher.update({f"dino_head.{key}": value for key, value in wide_head.state_dict().items()})
    (folder / "eval").mkdir()
    torch.save({"teacher": teacher, "iteration": 5}, folder / "eval" / "teacher_checkpoint.pth")

    dinov3 = Encoder.from_preset("test16", seed=0)
    dinov3.save_pretrained(folder / "dinov3-vitb16", preprocess=None)
    save_original_weights(dinov3, folder / "dinov3_vitb16_pretrain_lvd1689m-73cec8be.pth")
    cxr512 = PreprocessConfig(shortest_edge=512, crop_size=(512, 512))
    (folder / "cxr512.json").write_text(json.dumps(cxr512.to_processor_dict()), encoding="utf-8")


def _prefixed_rows(manifest: Path, prefix: str) -> tuple[list[dict[str, str]], list[str]]:
    """The manifest's rows with every path column (``path``, ``path_*``, ``mask_*``) under ``prefix``."""
    with manifest.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = list(reader.fieldnames or [])
        rows = list(reader)
    for row in rows:
        for column in columns:
            if (column == "path" or column.startswith(("path_", "mask_"))) and row[column]:
                row[column] = prefix + row[column]
    return rows, columns


def _write_csv(path: Path, rows: list[dict[str, str]], columns: list[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _run_in_order(snippets: list[Snippet], folder: Path) -> None:
    """Run ``snippets`` one after another in ``folder``; the first failure names its README line."""
    for snippet in snippets:
        completed = subprocess.run(
            _command(snippet),
            cwd=folder,
            env=_environment(),
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS,
            check=False,
        )
        assert completed.returncode == 0, (
            f"{snippet.name} failed (exit {completed.returncode}):\n{snippet.code}\n"
            f"--- stderr ---\n{completed.stderr[-3000:]}\n--- stdout ---\n{completed.stdout[-1000:]}"
        )


def test_the_runnable_readme_blocks_run_as_written(tmp_path: Path) -> None:
    """Every ``<!-- runnable -->`` block, in README order, in one empty folder (one test: order matters)."""
    fast = [snippet for snippet in SNIPPETS if not snippet.slow]
    assert fast, "README.md has no runnable block"
    build_sandbox(tmp_path)
    _run_in_order(fast, tmp_path)


@pytest.mark.slow
def test_the_slow_readme_blocks_run_as_written(tmp_path: Path) -> None:
    """All runnable blocks, ``<!-- runnable: slow -->`` ones too (they may use the fast ones' outputs)."""
    if not any(snippet.slow for snippet in SNIPPETS):
        pytest.skip("no block is marked runnable: slow")
    build_sandbox(tmp_path)
    _run_in_order(SNIPPETS, tmp_path)


def test_the_snippets_found_include_the_ones_that_once_failed() -> None:
    """The prepare snippet (``read_image`` unimported) and the recipe pieces (``paths``, ``seed``)."""
    codes = [snippet.code for snippet in SNIPPETS]
    assert any("release_training_pixels(read_image(" in code for code in codes)
    assert any("collate_multicrop(samples, masks)" in code for code in codes)
    assert any(code.startswith("raddino stats ") for code in codes)
    # blocks that read the sandbox's inputs: a DICOM by its README name, the encoder folder, the images
    assert any('read_image("study/1.2.840.113619.2.55.dcm")' in code for code in codes)
    assert any('load_encoder("./rad-dino")' in code for code in codes)
    assert any('run_attention("cxr.png"' in code for code in codes)


def test_a_marker_without_a_fence_is_refused_and_blocks_are_read_exactly() -> None:
    text = (
        "intro\n<!-- runnable -->\n```python\nprint(1)\n```\n\n"
        "<!-- runnable: slow -->\n```bash\necho x\n```\n"
    )
    assert runnable_snippets(text) == [
        Snippet("python", "print(1)\n", 3, slow=False),
        Snippet("bash", "echo x\n", 8, slow=True),
    ]
    assert runnable_snippets("```python\nprint(1)\n```\n") == []  # unmarked blocks are documentation only
    with pytest.raises(ValueError, match=r"README.md:1: a runnable marker must precede"):
        runnable_snippets("<!-- runnable -->\nsome text\n")
    with pytest.raises(ValueError, match="never closed"):
        runnable_snippets("<!-- runnable -->\n```bash\necho x\n")
