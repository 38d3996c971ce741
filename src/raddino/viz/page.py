"""A static page (HTML with embedded images) and its Markdown twin, from one list of sections.

The HTML needs no server and no files beside it: every figure is a base64 ``data:`` URI, so the page can
be mailed or opened from any folder. The Markdown twin links the same figures by relative path. (The
demo writes its page as ``report.html`` / ``report.md``; a ``ReportPairs`` block shows generated radiology
reports beside their references.)

    sections = [Section("Loss", [Figure(Path("figures/loss.svg"), "Pre-training losses")])]
    write_page("Demo", sections, html_path=out / "report.html", markdown_path=out / "report.md")
"""

from __future__ import annotations

import base64
import html
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from raddino.io.atomic import atomic_write_text

_MIME = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


@dataclass
class Text:
    """A paragraph (plain text; ``**bold**`` is kept in Markdown and shown bold in HTML)."""

    text: str


@dataclass
class Table:
    """A table: a header row and body rows of cell strings (``**x**`` marks a best value)."""

    header: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Figure:
    """An image file shown with a caption."""

    path: Path
    caption: str


@dataclass
class ReportPairs:
    """Generated radiology reports beside their references."""

    pairs: list[tuple[str, str, str]]
    """(study id, reference, generated)."""
    caption: str = ""


Block = Text | Table | Figure | ReportPairs


@dataclass
class Section:
    """A titled part of the page; ``anchor`` is its HTML id (default: from the title)."""

    title: str
    blocks: list[Block] = field(default_factory=list)
    anchor: str = ""

    def __post_init__(self) -> None:
        if not self.anchor:
            self.anchor = "".join(c if c.isalnum() else "-" for c in self.title.lower()).strip("-")


def parse_markdown_tables(text: str) -> list[Table]:
    """Every pipe table of a Markdown text, in order (the separator row ``|---|`` is dropped)."""
    tables: list[Table] = []
    current: list[list[str]] = []
    for line in [*text.splitlines(), ""]:
        stripped = line.strip()
        if stripped.startswith("|") and stripped.endswith("|"):
            # a cell's own pipe is written "\\|" (as _markdown_cell does)
            cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", stripped[1:-1])]
            if not all(set(cell) <= set(":-") and cell for cell in cells):
                current.append(cells)
        elif current:
            tables.append(Table(header=current[0], rows=current[1:]))
            current = []
    return tables


def _inline(text: str) -> str:
    """HTML of a cell or paragraph: escaped, with ``**bold**`` as <strong>."""
    parts = html.escape(text).split("**")
    return "".join(f"<strong>{part}</strong>" if i % 2 else part for i, part in enumerate(parts))


def data_uri(path: Path) -> str:
    """The file as a ``data:`` URI (PNG, SVG or JPEG)."""
    mime = _MIME.get(path.suffix.lower())
    if mime is None:
        raise ValueError(f"{path}: not an image the page can embed (png, svg, jpeg)")
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _html_block(block: Block) -> str:
    if isinstance(block, Text):
        return f"<p>{_inline(block.text)}</p>"
    if isinstance(block, Figure):
        return (
            f'<figure><img src="{data_uri(block.path)}" alt="{html.escape(block.caption)}">'
            f"<figcaption>{_inline(block.caption)}</figcaption></figure>"
        )
    if isinstance(block, Table):
        head = "".join(f"<th>{_inline(cell)}</th>" for cell in block.header)
        body = "".join(
            "<tr>" + "".join(f"<td>{_inline(cell)}</td>" for cell in row) + "</tr>" for row in block.rows
        )
        caption = f"<caption>{_inline(block.caption)}</caption>" if block.caption else ""
        return (
            f'<div class="wide"><table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
            "</table></div>"
        )
    rows = "".join(
        f"<tr><td>{html.escape(study)}</td><td>{html.escape(reference)}</td>"
        f"<td>{html.escape(generated)}</td></tr>"
        for study, reference, generated in block.pairs
    )
    caption = f"<caption>{_inline(block.caption)}</caption>" if block.caption else ""
    return (
        f'<table class="reports">{caption}<thead><tr><th>study</th><th>reference</th>'
        f"<th>generated</th></tr></thead><tbody>{rows}</tbody></table>"
    )


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
caption { text-align: left; font-style: italic; padding-bottom: 0.3em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; vertical-align: top; }
th:first-child, td:first-child { text-align: left; }
table.reports td, table.reports th { text-align: left; max-width: 30em; }
div.wide { overflow-x: auto; }
figure { margin: 1em 0; } img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #555; }
"""


def render_html(title: str, sections: list[Section]) -> str:
    """The page: a title, a table of contents and the sections, figures embedded."""
    nav = " ".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in sections)
    body = "".join(
        f'<section id="{s.anchor}"><h2>{html.escape(s.title)}</h2>'
        + "".join(_html_block(b) for b in s.blocks)
        + "</section>"
        for s in sections
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1><nav>{nav}</nav>{body}"
        "</body></html>\n"
    )


def _markdown_cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _markdown_block(block: Block, folder: Path) -> str:
    if isinstance(block, Text):
        return block.text
    if isinstance(block, Figure):
        relative = Path(os.path.relpath(block.path, folder)).as_posix()
        return f"![{block.caption}]({relative})\n\n*{block.caption}*"
    header = block.header if isinstance(block, Table) else ["study", "reference", "generated"]
    rows = block.rows if isinstance(block, Table) else [list(pair) for pair in block.pairs]
    lines = [
        "| " + " | ".join(_markdown_cell(c) for c in header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(_markdown_cell(c) for c in row) + " |" for row in rows),
    ]
    caption = f"*{block.caption}*\n\n" if block.caption else ""
    return caption + "\n".join(lines)


def render_markdown(title: str, sections: list[Section], folder: Path) -> str:
    """The Markdown twin; figures are linked relative to ``folder`` (where the file will be)."""
    parts = [f"# {title}"]
    for section in sections:
        parts.append(f"## {section.title}")
        parts.extend(_markdown_block(block, folder) for block in section.blocks)
    return "\n\n".join(parts) + "\n"


def write_page(title: str, sections: list[Section], html_path: Path, markdown_path: Path) -> None:
    """Write both files atomically."""
    atomic_write_text(html_path, render_html(title, sections))
    atomic_write_text(markdown_path, render_markdown(title, sections, markdown_path.parent))
