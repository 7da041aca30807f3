"""Text analysis for the lexical (BM25) index: English and French, accent-folded, lightly stemmed."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import Stemmer
from bm25s.stopwords import STOPWORDS_EN, STOPWORDS_FRENCH

_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def fold(text: str) -> str:
    """Lower-case and strip accents, so "Été" and "ete" match."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


_EN = frozenset(fold(w) for w in STOPWORDS_EN)
_FR = frozenset(fold(w) for w in STOPWORDS_FRENCH)
STOPWORDS = _EN | _FR
# Words that only one of the two languages uses: they vote for the language of a text.
_EN_ONLY = _EN - _FR
_FR_ONLY = _FR - _EN

_STEMMERS = {"en": Stemmer.Stemmer("english"), "fr": Stemmer.Stemmer("french")}


@lru_cache(maxsize=200_000)
def _stem(word: str, language: str) -> str:
    return _STEMMERS[language].stemWord(word)


def detect_language(words: list[str]) -> str:
    """Guess "en" or "fr" from stop-word votes; English wins ties (the more common case)."""
    en = sum(1 for w in words if w in _EN_ONLY)
    fr = sum(1 for w in words if w in _FR_ONLY)
    return "fr" if fr > en else "en"


def tokenize(text: str, language: str | None = None) -> list[str]:
    """Split, fold, drop stop words and stem; numbers are kept as they are."""
    words = _WORD.findall(fold(text))
    lang = language or detect_language(words)
    return [
        w if w.isdigit() else _stem(w, lang)
        for w in words
        if w not in STOPWORDS and (len(w) > 1 or w.isdigit())
    ]
