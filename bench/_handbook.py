"""The demo handbook's questions (bot/demo/questions.jsonl, English and French) and the reference prompt
built for each: the plain layout given the right section by hand. Shared by the answer-quality and
decode-speed benchmarks, so both read the same prompts."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ROOT / "bot" / "demo" / "questions.jsonl"
HANDBOOK = ROOT / "bot" / "demo" / "handbook"
SYSTEM = "You are a helpful assistant. Answer briefly and exactly."


def items() -> list[dict]:
    return [json.loads(line) for line in QUESTIONS.read_text(encoding="utf-8").splitlines() if line.strip()]


def right_passage(item) -> str:
    """The section of the item's document that holds an accepted answer (the reference's passage)."""
    from finetune.answers import contains_answer

    text = (HANDBOOK / item["source"]).read_text(encoding="utf-8")
    sections = [s.strip() for s in text.split("\n## ") if s.strip()]
    return next((s for s in sections if contains_answer(s, item["answers"])), sections[-1]).replace("\n", " ")


def reference_prompts(questions: list[dict]) -> list[list[dict[str, str]]]:
    """ "Text: <the whole right section> Question: …" under a short system prompt, one per item."""
    return [
        [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Text: {right_passage(i)}\n\nQuestion: {i['question']}"},
        ]
        for i in questions
    ]
