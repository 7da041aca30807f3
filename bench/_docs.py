"""docs/benchmarks.md: each benchmark owns one section between markers and rewrites only that."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEADER = ("# Benchmarks\n\nEach section is written by its benchmark in `bench/`, which measures the project's "
          "figure and its baseline in the same run.\n")


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
