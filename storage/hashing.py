"""Normalised content hashes: the dedup key of an example and the seed of its train/test split."""

from __future__ import annotations

import hashlib
import re
import unicodedata

_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Case-folded, accent-preserving, whitespace-collapsed text."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text or "")).strip().casefold()


def content_hash(question: str, answer: str) -> str:
    return hashlib.sha256(f"{normalise(question)}\x1f{normalise(answer)}".encode()).hexdigest()


def question_hash(question: str) -> str:
    return hashlib.sha256(normalise(question).encode()).hexdigest()


def split_for(question: str, test_fraction: float = 0.2) -> str:
    """train or test, fixed by the question alone so that a split never changes as data grows
    and two answers to one question never straddle the split."""
    bucket = int(question_hash(question)[:8], 16) / 0xFFFFFFFF
    return "test" if bucket < test_fraction else "train"
