"""Masking personal data with the spans every find_pii implementation reports.

Spans are always offsets into the text the hook was given, so `scrub` replaces exactly the
characters that were found and leaves the rest of the text as it was. A plugin that detects on
a normalised copy (see `normalise`) maps its spans back with the offsets `normalise` returns.
"""

from __future__ import annotations

import unicodedata

# Characters that render as nothing and can hide a number or an address from a pattern.
ZERO_WIDTH = dict.fromkeys(map(ord, "\u00ad\u180e\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff"))


def normalise(text: str) -> tuple[str, list[int], list[int]]:
    """NFKC-normalise `text` and drop zero-width characters, keeping where each character came from.

    Returns the normalised text and, for each of its characters, the start and end offsets of the
    original characters it was made from: a span (s, e) of the normalised text is (starts[s],
    ends[e - 1]) in the original. A base character and the combining marks after it are
    normalised together, so that "e" followed by U+0301 becomes one "é".
    """
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    i, n = 0, len(text)
    while i < n:
        j = i + 1
        while j < n and unicodedata.combining(text[j]):
            j += 1
        piece = unicodedata.normalize("NFKC", text[i:j]).translate(ZERO_WIDTH)
        out.append(piece)
        starts.extend([i] * len(piece))
        ends.extend([j] * len(piece))
        i = j
    return "".join(out), starts, ends


def merge_spans(spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    merged: list[tuple[int, int, str]] = []
    for start, end, label in sorted(spans, key=lambda s: (s[0], -s[1])):
        if merged and start < merged[-1][1]:
            last = merged[-1]
            merged[-1] = (last[0], max(last[1], end), last[2])
        else:
            merged.append((start, end, label))
    return merged


def scrub(pm, text: str | None) -> str | None:
    """Replace every personal-data span found by the plugins with [LABEL]."""
    if not text:
        return text
    spans = [span for result in pm.hook.find_pii(text=text) for span in (result or [])]
    out, last = [], 0
    for start, end, label in merge_spans(spans):
        out.append(text[last:start])
        out.append(f"[{label}]")
        last = end
    out.append(text[last:])
    return "".join(out)
