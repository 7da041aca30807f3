"""Golden answer sets: questions with accepted answers or a reference, and how an answer is scored.

A file is JSON Lines, one item a line: ``{"question": ..., "answers": [...]}`` (accepted strings:
an answer is a hit when it contains one, case- and accent-insensitively, whitespace collapsed) or
``{"question": ..., "reference": ...}`` (scored by token F1 and ROUGE-L against the reference).
Other keys are kept and ignored. `apprenti eval answers` reads these files.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finetune import metrics as m


class AnswerSetError(Exception):
    """The file is unreadable or malformed; the message names the file and the lines."""


@dataclass(frozen=True)
class AnswerItem:
    question: str
    answers: tuple[str, ...] = ()
    reference: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return re.sub(r"\s+", " ", text).strip()


def contains_answer(answer: str, accepted: tuple[str, ...] | list[str]) -> bool:
    """Whether the answer contains one of the accepted strings (case, accents and spacing ignored)."""
    folded = _fold(answer)
    return any(_fold(a) and _fold(a) in folded for a in accepted)


def score(answer: str, item: AnswerItem) -> dict[str, Any]:
    """hit (None when the item has a reference only), f1 and, for a reference, rouge_l."""
    if item.answers:
        return {
            "hit": contains_answer(answer, item.answers),
            "f1": round(m.token_f1(answer, list(item.answers)), 4),
        }
    return {
        "hit": None,
        "f1": round(m.token_f1(answer, item.reference or ""), 4),
        "rouge_l": round(m.rouge_l(answer, item.reference or ""), 4),
    }


def load_items(path: str | Path, scored_by: tuple[str, ...] = ()) -> list[AnswerItem]:
    """Every item of the file, or AnswerSetError listing each bad line (nothing half-read).
    `scored_by`: other keys that may score an item instead of answers or a reference (kept in extra)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise AnswerSetError(f"{path}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    items, problems = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {number}: invalid JSON ({exc.msg})")
            continue
        if not isinstance(obj, dict):
            problems.append(f"line {number}: expected an object with 'question'")
            continue
        question = obj.get("question")
        answers = obj.get("answers", [])
        if isinstance(answers, str):
            answers = [answers]
        reference = obj.get("reference")
        if not isinstance(question, str) or not question.strip():
            problems.append(f"line {number}: needs a non-empty 'question'")
        elif not isinstance(answers, list) or not all(isinstance(a, str) and a.strip() for a in answers):
            problems.append(f"line {number}: 'answers' must be a list of non-empty strings")
        elif (
            not answers
            and not (isinstance(reference, str) and reference.strip())
            and not (scored_by and any(k in obj for k in scored_by))
        ):
            problems.append(
                f"line {number}: needs 'answers' (accepted strings) or a 'reference'"
                + "".join(f" or a '{k}'" for k in scored_by)
            )
        else:
            extra = {k: v for k, v in obj.items() if k not in ("question", "answers", "reference")}
            items.append(AnswerItem(question.strip(), tuple(answers), reference, extra))
    if problems:
        raise AnswerSetError(f"{path}: " + "; ".join(problems[:20]) + (" …" if len(problems) > 20 else ""))
    if not items:
        raise AnswerSetError(f"{path}: holds no questions")
    return items


def summarise(scored: list[dict[str, Any]]) -> dict[str, Any]:
    """count, accuracy (over items with accepted answers; None when none has), token_f1."""
    hits = [s["hit"] for s in scored if s.get("hit") is not None]
    return {
        "count": len(scored),
        "accuracy": round(sum(hits) / len(hits), 4) if hits else None,
        "token_f1": round(sum(s["f1"] for s in scored) / len(scored), 4) if scored else None,
    }
