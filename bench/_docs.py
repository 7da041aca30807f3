"""docs/benchmarks.md: each benchmark owns one section between markers and rewrites only that."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEADER = (
    "# Benchmarks\n\nEach section is written by its benchmark in `bench/`, which measures the project's "
    "figure and its baseline in the same run.\n"
)


def write_section(key: str, section: str) -> Path:
    """Replace the `key` section of docs/benchmarks.md (or append it), keeping every other section."""
    start, end = f"<!-- bench:{key}:start -->", f"<!-- bench:{key}:end -->"
    block = f"{start}\n{section.strip()}\n{end}"
    text = DOCS.read_text(encoding="utf-8") if DOCS.is_file() else HEADER
    if start in text and end in text:
        text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, text, flags=re.DOTALL)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    DOCS.write_text(text, encoding="utf-8")
    return DOCS


def machine_line() -> str:
    """The sentence that ends a section: the machine, and how busy it was when the run ended."""
    import os
    import platform

    return (
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.1f} at the end of the run (other work shares these cores)."
    )


def publish(key: str, section: str, write: bool = True) -> None:
    """Print the section and, unless ``write`` is False (``--no-docs``), put it in docs/benchmarks.md."""
    print(section)
    if write:
        write_section(key, section)
