"""The general-skills set: a small shipped file (arithmetic, French and English grammar, summarising,
translation) that every candidate adapter must not forget. Replaceable by the user's own file in
the same JSON Lines shape: {"skill": ..., "question": ..., "answers": [...]} (or "answer")."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PATH = Path(__file__).parent / "data" / "general_skills.jsonl"
SYSTEM_PROMPT = "You are a helpful assistant. Answer briefly and exactly."


class GeneralSetError(Exception):
    """The general-skills file is unreadable or malformed; the message names the line."""


@dataclass(frozen=True)
class GeneralItem:
    skill: str
    question: str
    answers: tuple[str, ...]

    def messages(self) -> list[dict[str, str]]:
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": self.question}]


def load_general(path: str | Path | None = None) -> list[GeneralItem]:
    path = Path(path) if path else DEFAULT_PATH
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise GeneralSetError(f"general-skills file {path} cannot be read ({exc.strerror or exc})") from None
    items, problems = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {number}: invalid JSON ({exc.msg})")
            continue
        answers = obj.get("answers") or ([obj["answer"]] if obj.get("answer") else [])
        if not isinstance(obj.get("question"), str) or not obj["question"].strip() or not answers or not all(
                isinstance(a, str) and a.strip() for a in answers):
            problems.append(f"line {number}: needs a non-empty 'question' and 'answers' (or 'answer')")
            continue
        items.append(GeneralItem(skill=str(obj.get("skill", "general")), question=obj["question"],
                                 answers=tuple(answers)))
    if problems:
        raise GeneralSetError(f"general-skills file {path}: " + "; ".join(problems))
    if not items:
        raise GeneralSetError(f"general-skills file {path} holds no items")
    return items
