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
intra-op thread (``OMP_NUM_THREADS=1``, ``MKL_NUM_THREADS=1``), the only variables set here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
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
        code = "\n".join(lines[index + 2 : end]) + "\n"
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
    }


def _command(snippet: Snippet) -> list[str]:
    if snippet.language == "python":
        return [sys.executable, "-c", snippet.code]
    return ["bash", "-euo", "pipefail", "-c", snippet.code]


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
    _run_in_order(fast, tmp_path)


@pytest.mark.slow
def test_the_slow_readme_blocks_run_as_written(tmp_path: Path) -> None:
    """All runnable blocks, ``<!-- runnable: slow -->`` ones too (they may use the fast ones' outputs)."""
    if not any(snippet.slow for snippet in SNIPPETS):
        pytest.skip("no block is marked runnable: slow")
    _run_in_order(SNIPPETS, tmp_path)


def test_the_snippets_found_include_the_ones_that_once_failed() -> None:
    """The prepare snippet (``read_image`` unimported) and the recipe pieces (``paths``, ``seed``)."""
    codes = [snippet.code for snippet in SNIPPETS]
    assert any("release_training_pixels(read_image(" in code for code in codes)
    assert any("collate_multicrop(samples, masks)" in code for code in codes)
    assert any(code.startswith("raddino stats ") for code in codes)


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
