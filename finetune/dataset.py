"""Approved examples of a track become TRL conversational prompt-completion records.

A record is what the model sees: the system prompt, the retrieved context and the question as the
prompt, the corrected answer as the completion (the loss is computed on the completion only).
The train/test split is the one fixed on each example when it was stored (a hash of the question),
so it never moves as data grows. Duplicates (same normalised question, context and answer) are
kept once; contradictions (one question approved with different answers) are left out and flagged
for reviewers. The fingerprint is a sha256 of the canonical dataset.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, update
from sqlmodel import select

from storage.audit import record as audit_record
from storage.db import session_scope
from storage.examples import count_by_kind, training_examples
from storage.hashing import normalise
from storage.models import Example, ExampleOrigin, utcnow

DEFAULT_SYSTEM_PROMPT = "You are Apprenti, the team's assistant. Answer accurately and concisely."
CONTRADICTION_FLAG = "contradiction"

# The user turn with retrieved context (user_message), and the layout earlier versions wrote, which
# imported files may still carry.
_CONTEXT_MESSAGES = (
    re.compile(r"\AText: (?P<context>.*)\n\nQuestion: (?P<question>.*)\Z", re.S),
    re.compile(r"\ATexte : (?P<context>.*)\n\nQuestion : (?P<question>.*)\Z", re.S),
    re.compile(r"\AContext:\n(?P<context>.*)\n\nQuestion:\n(?P<question>.*)\Z", re.S),
)


class NotEnoughExamples(Exception):
    """The track has fewer usable examples than training needs."""

    def __init__(self, track: str, have: int, need: int):
        self.track, self.have, self.need = track, have, need
        super().__init__(
            f"track {track!r} has {have} usable approved example(s); training needs at least {need} "
            f"({need - have} more). Approve more corrections or import pairs with `apprenti examples import`."
        )


# Words that only a French question uses (accents folded): they switch the labels to French.
_FRENCH = frozenset(
    """quel quelle quels quelles combien comment pourquoi quand ou est sont dois doit faut peut
peux puis je nous vous le la les un une des du de au aux dans pour avec sur qui que qu est-ce""".split()
)


def looks_french(text: str) -> bool:
    words = re.findall(r"[a-zàâçéèêëîïôûùüÿœ'-]+", (text or "").lower())
    words = [w.split("'")[-1] for w in words]
    return sum(w in _FRENCH for w in words) >= 2 or bool(
        re.search(r"\b(qu'|est-ce|combien|pourquoi)", text.lower())
    )


def user_message(question: str, context: str | None = None) -> str:
    """The user turn: the question, preceded by the retrieved context when there is one.

    "Text: … Question: …" is the reading-comprehension layout instruct models are tuned on: with it
    SmolLM2-135M answered 9/16 handbook questions from the right passage, against 4/16 with
    "Context:" and the question on lines of their own. A French question gets French labels
    ("Texte : … Question : …"): 5/6 French handbook questions against 3/6 (docs/benchmarks.md)."""
    if context and context.strip():
        if looks_french(question):
            return f"Texte : {context}\n\nQuestion : {question}"
        return f"Text: {context}\n\nQuestion: {question}"
    return question


def split_user_message(text: str) -> tuple[str, str | None]:
    """Inverse of user_message: (question, context)."""
    for layout in _CONTEXT_MESSAGES:
        match = layout.match(text or "")
        if match:
            return match["question"], match["context"]
    return text, None


def prompt_messages(
    question: str, context: str | None = None, system_prompt: str | None = None
) -> list[dict]:
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": user_message(question, context)})
    return messages


def to_record(example: Example, system_prompt: str | None = DEFAULT_SYSTEM_PROMPT) -> dict[str, Any]:
    """One conversational prompt-completion record (TRL's format)."""
    return {
        "prompt": prompt_messages(example.question, example.context, system_prompt),
        "completion": [{"role": "assistant", "content": example.corrected_answer.strip()}],
    }


def to_preference(
    example: Example, system_prompt: str | None = DEFAULT_SYSTEM_PROMPT
) -> dict[str, Any] | None:
    """A (corrected, original) preference pair for DPO, or None when there is no distinct original."""
    original = (example.original_answer or "").strip()
    if not original or normalise(original) == normalise(example.corrected_answer):
        return None
    return {
        "prompt": prompt_messages(example.question, example.context, system_prompt),
        "chosen": [{"role": "assistant", "content": example.corrected_answer.strip()}],
        "rejected": [{"role": "assistant", "content": original}],
    }


@dataclass
class TrainingSet:
    """The canonical dataset of one training run."""

    track: str
    system_prompt: str | None
    train: list[dict[str, Any]]
    test: list[dict[str, Any]]
    golden: list[dict[str, Any]]
    preferences: list[dict[str, Any]]
    example_ids: list[int]
    train_ids: list[int]
    test_ids: list[int]
    fingerprint: str
    duplicates: list[int] = field(default_factory=list)
    contradictions: dict[int, list[int]] = field(default_factory=dict)  # example id -> conflicting ids
    # Approved fact corrections of the track, answered from the knowledge base instead of trained.
    facts_to_knowledge: int = 0

    @property
    def size(self) -> int:
        return len(self.train) + len(self.test)

    def summary(self) -> dict[str, Any]:
        return {
            "track": self.track,
            "train": len(self.train),
            "test": len(self.test),
            "golden": len(self.golden),
            "preference_pairs": len(self.preferences),
            "duplicates_dropped": len(self.duplicates),
            "contradictions_excluded": sorted(self.contradictions),
            "facts_to_knowledge": self.facts_to_knowledge,
            "fingerprint": self.fingerprint,
        }


def _key(example: Example) -> tuple[str, str]:
    return normalise(example.question), normalise(example.context or "")


def fingerprint(train: Sequence[dict], test: Sequence[dict], system_prompt: str | None) -> str:
    """sha256 of the canonical dataset: order-independent, id-independent, exactly what training sees."""
    rows = sorted(
        json.dumps({"split": split, "record": rec}, sort_keys=True, ensure_ascii=False)
        for split, records in (("train", train), ("test", test))
        for rec in records
    )
    canonical = json.dumps({"system_prompt": system_prompt, "rows": rows}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def prepare(
    examples: Iterable[Example],
    *,
    track: str = "default",
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
    min_examples: int = 1,
) -> TrainingSet:
    """Deduplicate, drop contradictions, split and fingerprint approved examples (no database access).

    Raises NotEnoughExamples when fewer than `min_examples` usable pairs remain."""
    examples = sorted(examples, key=lambda e: e.id or 0)
    golden = [e for e in examples if e.origin == ExampleOrigin.golden.value]
    pool = [e for e in examples if e.origin != ExampleOrigin.golden.value]

    kept: dict[tuple[str, str, str], Example] = {}
    duplicates: list[int] = []
    for example in pool:
        key = (*_key(example), normalise(example.corrected_answer))
        if key in kept:
            duplicates.append(example.id)
        else:
            kept[key] = example

    by_question: dict[tuple[str, str], list[Example]] = defaultdict(list)
    for example in kept.values():
        by_question[_key(example)].append(example)
    contradictions: dict[int, list[int]] = {}
    usable: list[Example] = []
    for group in by_question.values():
        if len(group) > 1:
            ids = [e.id for e in group]
            for e in group:
                contradictions[e.id] = [i for i in ids if i != e.id]
        else:
            usable.extend(group)
    usable.sort(key=lambda e: e.id or 0)

    if len(usable) < min_examples:
        raise NotEnoughExamples(track, len(usable), min_examples)

    train_rows = [e for e in usable if e.split != "test"]
    test_rows = [e for e in usable if e.split == "test"]
    train = [to_record(e, system_prompt) for e in train_rows]
    test = [to_record(e, system_prompt) for e in test_rows]
    preferences = [p for p in (to_preference(e, system_prompt) for e in train_rows) if p]
    return TrainingSet(
        track=track,
        system_prompt=system_prompt,
        train=train,
        test=test,
        golden=[to_record(e, system_prompt) for e in golden],
        preferences=preferences,
        example_ids=[e.id for e in usable],
        train_ids=[e.id for e in train_rows],
        test_ids=[e.id for e in test_rows],
        fingerprint=fingerprint(train, test, system_prompt),
        duplicates=duplicates,
        contradictions=contradictions,
    )


def flag_contradictions(engine: Engine, dataset: TrainingSet, track: str) -> None:
    """Mark contradicting examples for reviewers (Example.flag) and clear flags that no longer apply."""
    with session_scope(engine) as session:
        flagged = session.exec(
            select(Example).where(Example.track == track, Example.flag.like(f"{CONTRADICTION_FLAG}%"))
        ).all()
        for row in flagged:
            if row.id not in dataset.contradictions:
                session.execute(
                    update(Example).where(Example.id == row.id).values(flag=None, updated_at=utcnow())
                )
        for example_id, others in dataset.contradictions.items():
            note = (
                f"{CONTRADICTION_FLAG}: same question approved with a different answer in "
                + ", ".join(f"#{i}" for i in others)
                + "; reject or edit one of them"
            )
            result = session.execute(
                update(Example)
                .where(Example.id == example_id, (Example.flag.is_(None)) | (Example.flag != note))
                .values(flag=note, updated_at=utcnow())
            )
            if result.rowcount:
                audit_record(
                    session,
                    "system",
                    "example.flag",
                    f"example:{example_id}",
                    reason=CONTRADICTION_FLAG,
                    conflicts=others,
                )


def build_dataset(
    engine: Engine, track: str, *, system_prompt: str | None = DEFAULT_SYSTEM_PROMPT, min_examples: int = 50
) -> TrainingSet:
    """The training set of a track from its approved behaviour and both pairs (facts go to the knowledge
    base); contradictions are flagged in the database even when the set turns out too small to train."""
    examples = training_examples(engine, track)
    dataset = prepare(examples, track=track, system_prompt=system_prompt, min_examples=0)
    dataset.facts_to_knowledge = count_by_kind(engine, track)["fact"]
    flag_contradictions(engine, dataset, track)
    if dataset.size < min_examples:
        raise NotEnoughExamples(track, dataset.size, min_examples)
    return dataset


def write_jsonl(records: Iterable[dict[str, Any]], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for rec in records:
            out.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return path
