"""Masking personal data with the spans every find_pii implementation reports."""

from __future__ import annotations


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
