"""Shared by the benchmark scripts: describe the machine and write one section of BENCHMARKS.md.

Each script owns one section, delimited by ``<!-- BEGIN name -->`` / ``<!-- END name -->``; rerunning a
script replaces its section and leaves the others alone.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import shlex
import sys
from pathlib import Path

BENCHMARKS_FILE = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
HEADER = (
    "# Benchmarks\n\n"
    "Every number here was written by a script in `benchmarks/`; the section says which command, on which\n"
    "machine and when. Speed is reported as a ratio against a reference measured in the same run, since\n"
    "absolute times on shared machines are noise.\n"
)


def machine_description() -> str:
    """One line naming the CPU, core count, memory, accelerator and library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages / 2**30:.0f} GiB RAM"
    except (ValueError, OSError, AttributeError):
        pass
    accelerator = "no GPU"
    versions = f"Python {platform.python_version()}"
    try:
        import torch

        versions += f", torch {torch.__version__}"
        if torch.cuda.is_available():
            accelerator = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return f"{cpu}, {os.cpu_count()} cores{memory}, {accelerator}; {versions}"


def command_line() -> str:
    """The command that ran this script, for the record."""
    return "python " + " ".join(shlex.quote(arg) for arg in sys.argv)


def write_section(name: str, body: str, path: Path = BENCHMARKS_FILE) -> None:
    """Replace (or append) the section ``name`` of BENCHMARKS.md with ``body`` plus a provenance line."""
    stamp = datetime.date.today().isoformat()
    block = (
        f"<!-- BEGIN {name} -->\n{body.rstrip()}\n\n"
        f"_Machine: {machine_description()}. Command: `{command_line()}`. Date: {stamp}._\n"
        f"<!-- END {name} -->"
    )
    text = path.read_text(encoding="utf-8") if path.exists() else HEADER
    pattern = re.compile(rf"<!-- BEGIN {re.escape(name)} -->.*?<!-- END {re.escape(name)} -->", re.S)
    text = (
        pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    )
    temporary = path.with_suffix(".md.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)
