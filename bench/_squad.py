"""What the RAG benchmarks share: the SQuAD data in tests/data/squad and their command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# One copy of the data for the tests and the benchmarks (tests/data/README.md says where it came from).
SQUAD = Path(__file__).resolve().parents[1] / "tests" / "data" / "squad"


def squad_parser(doc: str) -> argparse.ArgumentParser:
    """A parser described by the module docstring's first line, with ``--no-docs``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--no-docs", action="store_true", help="print only; leave docs/benchmarks.md alone")
    return parser


def load_squad():
    """(corpus, queries) of the SQuAD benchmark, or None after saying on stderr that the data is missing."""
    from rag.metrics import load_corpus, load_queries

    if not (SQUAD / "corpus.jsonl").exists():
        print(f"SQuAD data not found in {SQUAD}; nothing to measure", file=sys.stderr)
        return None
    corpus = load_corpus(SQUAD / "corpus.jsonl")
    return corpus, load_queries(SQUAD / "queries.jsonl", corpus)


def parse_and_load(parser: argparse.ArgumentParser, argv: list[str] | None):
    """The parsed command line and ``load_squad()`` (None when the data is missing)."""
    return parser.parse_args(argv), load_squad()
