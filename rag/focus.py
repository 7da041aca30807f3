"""Cut a retrieved passage down to the sentences that bear on the question.

A small model reads a long passage badly: given a whole page it answers from the wrong paragraph,
given the two sentences that matter it answers right. `focus` keeps the sentences (and the heading
above them) that share the most content words with the question, in their original order, within
a character budget. The choice is lexical, with the same analysis as the BM25 index (accent-folded,
stemmed, English and French stop words dropped), so it is fast and predictable.
"""

from __future__ import annotations

import math
import re
from collections import Counter

from rag.tokenize import tokenize

_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+(?=[^\s])|\n+")


def _pieces(text: str) -> list[tuple[str, bool]]:
    """(piece, is_heading) in order: Markdown headings alone, paragraphs split into sentences."""
    pieces: list[tuple[str, bool]] = []
    for line in text.splitlines():
        if not line.strip():
            pieces.append(("", False))  # a paragraph break
            continue
        if line.lstrip().startswith("#"):
            pieces.append((line.strip().lstrip("#").strip(), True))
            continue
        pieces.append((line.strip(), False))
    # Re-join the lines of a paragraph, then split it into sentences.
    out: list[tuple[str, bool]] = []
    paragraph: list[str] = []

    def flush():
        if paragraph:
            joined = " ".join(paragraph)
            out.extend((s.strip(), False) for s in _SENTENCE_END.split(joined) if s.strip())
            paragraph.clear()

    for piece, heading in pieces:
        if heading or not piece:
            flush()
            if heading:
                out.append((piece, True))
        else:
            paragraph.append(piece)
    flush()
    return out


def _opening(pieces: list[tuple[str, bool]], text: str, max_chars: int) -> str:
    """Nothing matches the question: the passage's first whole sentences that fit."""
    kept: list[str] = []
    for piece, heading in pieces:
        part = piece + (":" if heading else "")
        if kept and sum(len(k) + 1 for k in kept) + len(part) > max_chars:
            break
        kept.append(part)
    out = " ".join(kept) if kept else text
    return out if len(out) <= max_chars else out[:max_chars].rsplit(" ", 1)[0]


def focus(text: str, question: str, max_chars: int = 400) -> str:
    """The sentences of `text` most relevant to `question`, in order, at most `max_chars` long
    (the whole text when it already fits). The heading above the best sentence is kept."""
    text = text.strip()
    if len(text) <= max_chars:
        return text
    pieces = _pieces(text)
    query = Counter(tokenize(question))
    if not query or not pieces:
        return _opening(pieces, text, max_chars)
    tokens = [set(tokenize(p)) for p, _ in pieces]
    # Rarer words within the passage count more (a word in every sentence tells nothing).
    df = Counter(w for ts in tokens for w in ts)
    n = len(pieces)

    def score(i: int) -> float:
        return sum(math.log(1 + n / df[w]) for w in query if w in tokens[i])

    sentences = [i for i, (_, heading) in enumerate(pieces) if not heading]
    ranked = sorted(sentences, key=lambda i: (-score(i), i))
    if not ranked or score(ranked[0]) == 0:
        return _opening(pieces, text, max_chars)
    best = ranked[0]
    heading = next((i for i in range(best - 1, -1, -1) if pieces[i][1]), None)
    chosen = {best}
    used = len(pieces[best][0]) + (len(pieces[heading][0]) + 1 if heading is not None else 0)
    # Then the neighbours of what is kept and other matching sentences, best first, while they fit.
    candidates = [i for i in ranked[1:] if score(i) > 0] + [best + 1, best - 1]
    for i in candidates:
        if i in chosen or not 0 <= i < n or pieces[i][1]:
            continue
        if used + len(pieces[i][0]) + 1 > max_chars:
            continue
        chosen.add(i)
        used += len(pieces[i][0]) + 1
    keep = sorted(chosen | ({heading} if heading is not None else set()))
    return " ".join(pieces[i][0] + (":" if pieces[i][1] else "") for i in keep)
