"""Import and export of training pairs: Alpaca, ShareGPT (with preference pairs) and OpenAI/Mistral chat.

Parsing never stops at the first bad record: it reads the whole file and returns every problem with
its line number, so a caller can refuse the file as a whole (nothing imported) and tell the user
everything to fix at once. JSON arrays are scanned element by element so their problems carry line
numbers too. A multi-turn conversation becomes one pair: its last question and answer, with the
earlier turns kept as context.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finetune.dataset import split_user_message, user_message

FORMATS = ("alpaca", "sharegpt", "openai")
MAX_CHARS = 16_000  # ~4,000 tokens: a message longer than this cannot fit a training sequence
HISTORY_HEADER = "Earlier in this conversation:"

_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "model": "assistant",
    "system": "system",
}
_OPENAI_ROLES = {"system", "user", "assistant"}


class FormatError(Exception):
    """The file cannot be read at all (missing, not JSON, unknown format)."""


@dataclass(frozen=True)
class Pair:
    """One training pair as files carry it."""

    question: str
    answer: str
    context: str | None = None
    system: str | None = None
    rejected: str | None = None  # the worse answer of a preference pair (an original the team corrected)


@dataclass(frozen=True)
class Problem:
    where: str  # "line 4" or "record 3 (line 12)"
    message: str
    severity: str = "error"  # error: the file is refused; warning: reported, not blocking

    def __str__(self) -> str:
        return f"{self.where}: {self.severity}: {self.message}"

    def as_dict(self) -> dict[str, str]:
        return {"where": self.where, "severity": self.severity, "message": self.message}


@dataclass
class ParseResult:
    path: str
    format: str
    pairs: list[Pair] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    skipped: list[Problem] = field(default_factory=list)  # valid records that are not training pairs
    records: int = 0

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors


# --- reading JSON and JSONL with positions ----------------------------------------------------------
def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _iter_json_array(text: str, problems: list[Problem]) -> Iterable[tuple[str, Any]]:
    decoder = json.JSONDecoder()
    i = text.index("[") + 1
    n, number = len(text), 0
    while True:
        while i < n and text[i] in " \t\r\n,":
            i += 1
        if i >= n:
            problems.append(Problem(f"line {_line_of(text, n)}", "the JSON array is not closed with ]"))
            return
        if text[i] == "]":
            return
        number += 1
        where = f"record {number} (line {_line_of(text, i)})"
        try:
            obj, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError as exc:
            problems.append(Problem(f"line {_line_of(text, exc.pos)}", f"invalid JSON: {exc.msg}"))
            return
        yield where, obj


def read_json_records(path: str | Path, problems: list[Problem]) -> list[tuple[str, Any]]:
    """[(where, object)] from a JSON array or JSONL file; syntax problems go to `problems`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FormatError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise FormatError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise FormatError(f"{path}: cannot be read ({exc.strerror})") from None
    if text.lstrip().startswith("["):
        return list(_iter_json_array(text, problems))
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append((f"line {number}", json.loads(line)))
        except json.JSONDecodeError as exc:
            problems.append(Problem(f"line {number}", f"invalid JSON: {exc.msg} (column {exc.colno})"))
    return records


# --- record parsers ---------------------------------------------------------------------------------
def _text(
    value: Any, name: str, errors: list[str], *, required: bool = True, max_chars: int = MAX_CHARS
) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            errors.append(f"{name} is missing or empty")
        return None
    if not isinstance(value, str):
        errors.append(f"{name} must be a string, not {type(value).__name__}")
        return None
    if len(value) > max_chars:
        errors.append(
            f"{name} has {len(value):,} characters (limit {max_chars:,}): too long to train on; "
            "shorten it or split the record"
        )
        return None
    return value


def _history_context(turns: Sequence[tuple[str, str]], embedded: str | None) -> str | None:
    parts = []
    if turns:
        lines = [f"{'User' if role == 'user' else 'Assistant'}: {text}" for role, text in turns]
        parts.append("\n".join([HISTORY_HEADER, *lines]))
    if embedded:
        parts.append(embedded)
    return "\n\n".join(parts) or None


def _pair(question: str, answer: str, history=(), system=None, rejected=None) -> Pair:
    question, embedded = split_user_message(question)
    return Pair(
        question=question,
        answer=answer,
        context=_history_context(list(history), embedded),
        system=system,
        rejected=rejected,
    )


def _parse_alpaca(obj: dict, errors: list[str], max_chars: int) -> Pair | None:
    instruction = _text(obj.get("instruction"), "instruction", errors, max_chars=max_chars)
    output = _text(obj.get("output"), "output", errors, max_chars=max_chars)
    extra = _text(obj.get("input"), "input", errors, required=False, max_chars=max_chars)
    system = _text(obj.get("system"), "system", errors, required=False, max_chars=max_chars)
    history = obj.get("history") or []
    turns: list[tuple[str, str]] = []
    if not isinstance(history, list) or not all(
        isinstance(h, list | tuple) and len(h) == 2 and all(isinstance(x, str) for x in h) for h in history
    ):
        errors.append("history must be a list of [question, answer] string pairs")
    else:
        for q, a in history:
            turns += [("user", q), ("assistant", a)]
    if errors:
        return None
    pair = _pair(instruction, output, turns, system)
    if extra:
        context = "\n\n".join(p for p in (pair.context, extra) if p)
        pair = Pair(pair.question, pair.answer, context, pair.system, pair.rejected)
    return pair


def _sharegpt_turn(turn: Any, name: str, errors: list[str], max_chars: int) -> tuple[str, str] | None:
    if not isinstance(turn, dict):
        errors.append(f"{name} must be an object with 'from' and 'value'")
        return None
    role = _SHAREGPT_ROLES.get(turn.get("from"))
    if role is None:
        errors.append(f"{name} has an unknown 'from' {turn.get('from')!r} (expected human, gpt or system)")
        return None
    value = _text(turn.get("value"), f"{name} value", errors, max_chars=max_chars)
    return (role, value) if value is not None else None


def _conversation(turns: list[tuple[str, str]], errors: list[str], *, wants_answer: bool, label: str):
    """Split [(role, text)] into (system, history, question, answer) after checking the turn order."""
    system = None
    if turns and turns[0][0] == "system":
        system = turns[0][1]
        turns = turns[1:]
    if any(role == "system" for role, _ in turns):
        errors.append(f"a system {label} appears after the first one")
        return None
    if not any(role == "user" for role, _ in turns):
        errors.append(f"no user {label}: there is no question to learn from")
        return None
    if wants_answer:
        if turns[-1][0] != "assistant":
            errors.append(f"the last {label} is not an assistant answer")
            return None
        if turns[-2][0] != "user" if len(turns) > 1 else True:
            errors.append(f"the answer is not preceded by a user {label}")
            return None
        return system, turns[:-2], turns[-2][1], turns[-1][1]
    if turns[-1][0] != "user":
        errors.append(f"a preference record must end with the user {label} that chosen/rejected answer")
        return None
    return system, turns[:-1], turns[-1][1], None


def _parse_sharegpt(obj: dict, errors: list[str], max_chars: int) -> Pair | None:
    conversations = obj.get("conversations")
    if not isinstance(conversations, list) or not conversations:
        errors.append("conversations is missing or not a non-empty list")
        return None
    turns = [_sharegpt_turn(t, f"turn {i}", errors, max_chars) for i, t in enumerate(conversations, 1)]
    top_system = _text(obj.get("system"), "system", errors, required=False, max_chars=max_chars)
    preference = "chosen" in obj or "rejected" in obj
    chosen = rejected = None
    if preference:
        for key in ("chosen", "rejected"):
            turn = _sharegpt_turn(obj.get(key), key, errors, max_chars)
            if turn and turn[0] != "assistant":
                errors.append(f"{key} must come from gpt, not {obj[key].get('from')!r}")
            if turn:
                chosen, rejected = (turn[1], rejected) if key == "chosen" else (chosen, turn[1])
    if errors:
        return None
    parts = _conversation(turns, errors, wants_answer=not preference, label="turn")
    if parts is None:
        return None
    system, history, question, answer = parts
    return _pair(question, chosen if preference else answer, history, system or top_system, rejected)


def _parse_openai(obj: dict, errors: list[str], max_chars: int) -> Pair | None:
    messages = obj.get("messages")
    if not isinstance(messages, list) or not messages:
        errors.append("messages is missing or not a non-empty list")
        return None
    turns = []
    for i, message in enumerate(messages, 1):
        if not isinstance(message, dict):
            errors.append(f"message {i} must be an object with 'role' and 'content'")
            continue
        role = message.get("role")
        if role not in _OPENAI_ROLES:
            errors.append(
                f"message {i} has an unsupported role {role!r} (expected system, user or assistant)"
            )
            continue
        content = _text(message.get("content"), f"message {i} ({role}) content", errors, max_chars=max_chars)
        if content is not None:
            turns.append((role, content))
    if "label" in obj and not isinstance(obj["label"], bool):
        errors.append("label must be true or false")
    if errors:
        return None
    parts = _conversation(turns, errors, wants_answer=True, label="message")
    if parts is None:
        return None
    system, history, question, answer = parts
    return _pair(question, answer, history, system)


_PARSERS: dict[str, Callable[[dict, list[str], int], Pair | None]] = {
    "alpaca": _parse_alpaca,
    "sharegpt": _parse_sharegpt,
    "openai": _parse_openai,
}


def parse_file(path: str | Path, fmt: str, *, max_chars: int = MAX_CHARS) -> ParseResult:
    """Parse and validate a whole file. Check `result.ok` before writing anything."""
    if fmt not in FORMATS:
        raise FormatError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    result = ParseResult(path=str(path), format=fmt)
    parser = _PARSERS[fmt]
    has_system: list[tuple[str, bool]] = []
    for where, obj in read_json_records(path, result.problems):
        result.records += 1
        if not isinstance(obj, dict):
            result.problems.append(
                Problem(where, f"a record must be a JSON object, not {type(obj).__name__}")
            )
            continue
        errors: list[str] = []
        pair = parser(obj, errors, max_chars)
        result.problems += [Problem(where, message) for message in errors]
        if pair is None:
            continue
        if fmt == "openai":
            has_system.append((where, pair.system is not None))
            if obj.get("label") is False:
                result.skipped.append(
                    Problem(where, "label is false (a thumbs-down answer): not a training pair", "warning")
                )
                continue
        result.pairs.append(pair)
    with_system = sum(flag for _, flag in has_system)
    if 0 < with_system < len(has_system):
        result.problems += [
            Problem(where, f"no system message, while {with_system} other record(s) have one", "warning")
            for where, flag in has_system
            if not flag
        ]
    if result.records == 0 and not result.problems:
        result.problems.append(Problem("line 1", "the file holds no records"))
    return result


# --- writing ----------------------------------------------------------------------------------------
def to_format(pair: Pair, fmt: str, *, preference: bool = False) -> dict[str, Any]:
    """One record in `fmt`. With preference=True (ShareGPT), pairs with a rejected answer become
    chosen/rejected records."""
    question = user_message(pair.question, pair.context)
    if fmt == "alpaca":
        record = {"instruction": pair.question, "input": pair.context or "", "output": pair.answer}
        if pair.system:
            record["system"] = pair.system
        return record
    if fmt == "sharegpt":
        turns = ([{"from": "system", "value": pair.system}] if pair.system else []) + [
            {"from": "human", "value": question}
        ]
        if preference and pair.rejected:
            return {
                "conversations": turns,
                "chosen": {"from": "gpt", "value": pair.answer},
                "rejected": {"from": "gpt", "value": pair.rejected},
            }
        return {"conversations": [*turns, {"from": "gpt", "value": pair.answer}]}
    if fmt == "openai":
        messages = ([{"role": "system", "content": pair.system}] if pair.system else []) + [
            {"role": "user", "content": question},
            {"role": "assistant", "content": pair.answer},
        ]
        return {"messages": messages}
    raise FormatError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


class DatabasePairs(list):
    """Pairs read from the database that remember whose data they hold (authors and askers): the file
    `write_file` writes them to is recorded as an export, so erasing one of those people lists it."""

    def __init__(self, pairs: Iterable[Pair], *, engine, people: Iterable[str]):
        super().__init__(pairs)
        self.engine = engine
        self.people = sorted({p for p in people if p})


def people_of(engine, examples: Iterable[Any]) -> list[str]:
    """Whose data these examples hold: their authors and the people who asked the questions they correct."""
    from sqlmodel import select

    from storage.db import session_scope
    from storage.models import Interaction

    examples = list(examples)
    people = {e.author_id for e in examples if e.author_id}
    asked = [e.interaction_id for e in examples if e.interaction_id is not None]
    if asked:
        with session_scope(engine) as session:
            people |= {
                u for u in session.exec(select(Interaction.user_id).where(Interaction.id.in_(asked))) if u
            }
    return sorted(people)


def write_file(
    pairs: Iterable[Pair], fmt: str, path: str | Path, *, preference: bool = False, actor: str = "cli"
) -> int:
    """Write pairs to `path`: a JSON array when it ends in .json, JSON Lines otherwise. Returns the count.

    Pairs read from the database (`training_pairs`) are recorded as an export of `path` with the ids
    of the people whose data it holds and the file's digest (see storage.audit.exports_holding)."""
    records = [to_format(p, fmt, preference=preference) for p in pairs]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as out:
        if path.suffix == ".json":
            json.dump(records, out, ensure_ascii=False, indent=2)
        else:
            for record in records:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
    tmp.replace(path)
    if isinstance(pairs, DatabasePairs):
        import hashlib

        from storage.audit import record_export

        where = str(path.resolve())
        record_export(
            pairs.engine,
            actor,
            where,
            pairs.people,
            count=len(records),
            file=where,
            format=fmt,
            sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        )
    return len(records)


def detect_format(record: dict) -> str | None:
    if "prompt" in record and "completion" in record:
        return "prompt-completion"
    if "messages" in record:
        return "openai"
    if "conversations" in record:
        return "sharegpt"
    if "instruction" in record and "output" in record:
        return "alpaca"
    return None


def read_records(path: str | Path, system_prompt: str | None = None) -> list[dict[str, Any]]:
    """Prompt-completion records from a file in any supported format (a replay or golden set).
    Raises FormatError listing every problem."""
    problems: list[Problem] = []
    raw = read_json_records(path, problems)
    if problems:
        raise FormatError(f"{path}: " + "; ".join(map(str, problems)))
    if not raw:
        raise FormatError(f"{path}: the file holds no records")
    fmt = detect_format(raw[0][1]) if isinstance(raw[0][1], dict) else None
    if fmt is None:
        raise FormatError(
            f"{path}: {raw[0][0]}: unrecognised record; expected prompt/completion, messages, "
            "conversations or instruction/output"
        )
    if fmt == "prompt-completion":
        return [obj for _, obj in raw]
    result = parse_file(path, fmt)
    if not result.ok:
        raise FormatError(f"{path}: " + "; ".join(map(str, result.errors)))
    from finetune.dataset import prompt_messages

    return [
        {
            "prompt": prompt_messages(p.question, p.context, p.system or system_prompt),
            "completion": [{"role": "assistant", "content": p.answer}],
        }
        for p in result.pairs
    ]


# --- the database side: import into review, export what training uses ------------------------------
def import_pairs(
    engine,
    pairs: Sequence[Pair],
    *,
    track: str = "default",
    approved: bool = False,
    actor: str = "cli",
    scrub: Callable[[str | None], str | None] | None = None,
    source: str | None = None,
    kind: str = "behaviour",
):
    """Store pairs as examples of a kind (fact, behaviour, both), pending review unless approved,
    scrubbed, in one transaction. Returns (stored examples, duplicates skipped)."""
    from storage.examples import add_examples, new_example
    from storage.models import ExampleOrigin, ExampleStatus, utcnow

    def clean(text: str | None) -> str | None:
        return scrub(text) if scrub and text else text

    status = ExampleStatus.approved.value if approved else ExampleStatus.pending.value
    rows = []
    for pair in pairs:
        fields = dict(
            context=clean(pair.context),
            original_answer=clean(pair.rejected),
            track=track,
            origin=ExampleOrigin.imported.value,
            status=status,
            author_id=actor,
            note=f"imported from {source}" if source else None,
            kind=kind,
            kind_source="import",
        )
        if approved:
            fields.update(reviewer_id=actor, reviewed_at=utcnow())
        rows.append(new_example(clean(pair.question), clean(pair.answer), **fields))
    return add_examples(engine, rows, actor)


def training_pairs(engine, track: str = "default") -> DatabasePairs:
    """The pairs training would use for a track: approved, deduplicated, contradictions left out
    (a list that records the export when written with `write_file`)."""
    from finetune.dataset import prepare
    from storage.examples import training_examples

    examples = {e.id: e for e in training_examples(engine, track)}
    dataset = prepare(examples.values(), track=track, min_examples=0)
    used = [examples[i] for i in dataset.example_ids]
    return DatabasePairs(
        (
            Pair(
                question=e.question, answer=e.corrected_answer, context=e.context, rejected=e.original_answer
            )
            for e in used
        ),
        engine=engine,
        people=people_of(engine, used),
    )
