"""The general-skills set every candidate adapter must not forget: short factual questions,
arithmetic, instruction following checked by code, translation and summarising, in English and
French. The shipped file is chosen so that the bundled base model scores well above chance on it
(docs/finetune.md has its per-skill scores), which is what makes a drop measurable.

Replaceable by the user's own file in the same JSON Lines shape, one item a line, each with a
``skill`` and one way of scoring it:
- ``"answers": [...]``: right when the answer contains one of them (case and accents ignored);
- ``"reference": "..."``: token F1 against the reference;
- ``"check": {...}``: rules checked by code, all of which must hold: ``contains`` (exact case),
  ``contains_any``, ``starts_with_any`` (case-insensitive), ``max_words``, ``min_lines``, ``min_commas``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finetune.answers import AnswerSetError, _fold, contains_answer, load_items
from finetune.metrics import token_f1

DEFAULT_PATH = Path(__file__).parent / "data" / "general_skills.jsonl"
# General pairs mixed into training (TrainConfig.replay_path); none of them is in the set above.
DEFAULT_REPLAY_PATH = Path(__file__).parent / "data" / "replay.jsonl"
SYSTEM_PROMPT = "You are a helpful assistant. Answer briefly and exactly."
CHECKS = ("contains", "contains_any", "starts_with_any", "max_words", "min_lines", "min_commas")


class GeneralSetError(Exception):
    """The general-skills file is unreadable or malformed; the message names the line."""


@dataclass(frozen=True)
class GeneralItem:
    skill: str
    question: str
    answers: tuple[str, ...] = ()
    reference: str | None = None
    check: dict[str, Any] = field(default_factory=dict, compare=False)

    def messages(self, system_prompt: str | None = None) -> list[dict[str, str]]:
        """The prompt as a served question without sources: the track's system prompt when given
        (what the adapter will be asked with), else a neutral one."""
        return [
            {"role": "system", "content": system_prompt or SYSTEM_PROMPT},
            {"role": "user", "content": self.question},
        ]

    def score(self, answer: str) -> float:
        """1.0 or 0.0 for accepted answers and checks; token F1 for a reference."""
        if self.check:
            return float(passes(answer, self.check))
        if self.answers:
            return float(contains_answer(answer, self.answers))
        return token_f1(answer, self.reference or "")


def passes(answer: str, check: dict[str, Any]) -> bool:
    text = answer.strip()
    folded = _fold(text)
    rules = {
        "contains": lambda v: v in text,
        "contains_any": lambda v: any(_fold(x) in folded for x in v),
        "starts_with_any": lambda v: any(folded.startswith(_fold(x)) for x in v),
        "max_words": lambda v: len(text.split()) <= int(v),
        "min_lines": lambda v: len([line for line in text.splitlines() if line.strip()]) >= int(v),
        "min_commas": lambda v: text.count(",") >= int(v),
    }
    return all(rules[name](value) for name, value in check.items())


def load_general(path: str | Path | None = None) -> list[GeneralItem]:
    path = Path(path) if path else DEFAULT_PATH
    try:
        items = load_items(path, scored_by=("check",))
    except AnswerSetError as exc:
        raise GeneralSetError(f"general-skills file {exc}") from None
    problems, out = [], []
    for number, item in enumerate(items, 1):
        check = item.extra.get("check") or {}
        unknown = set(check) - set(CHECKS) if isinstance(check, dict) else {"(not an object)"}
        if unknown:
            problems.append(
                f"item {number} ({item.question[:40]!r}): unknown check(s) {', '.join(sorted(unknown))}; "
                f"use {', '.join(CHECKS)}"
            )
            continue
        out.append(
            GeneralItem(
                skill=str(item.extra.get("skill", "general")),
                question=item.question,
                answers=item.answers,
                reference=item.reference,
                check=check,
            )
        )
    if problems:
        raise GeneralSetError(f"general-skills file {path}: " + "; ".join(problems))
    return out
