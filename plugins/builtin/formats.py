"""Built-in output formats: `json`, `sections` and `minutes`.

Each format gives the model instructions (system_prompt), lists what is wrong with an answer
(check_format, stored with the interaction and measured by the fine-tune evaluation) and makes
safe repairs only (format_answer): it re-shapes what the model wrote, never invents content.
A profile picks a format with `format:` and passes its options in `format_options:`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from plugins.formats import OutputFormat
from plugins.hookspecs import hookimpl

MAX_VIOLATIONS = 10

# --- json ------------------------------------------------------------------------------------------

FENCE = re.compile(r"```[ \t]*(?:json|JSON|jsonc)?[ \t]*\n(.*?)\n?[ \t]*```", re.DOTALL)


def _parse(answer: str) -> tuple[Any, str | None]:
    try:
        return json.loads(answer), None
    except json.JSONDecodeError as exc:
        return None, f"the answer is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"


def _json_options(options: dict[str, Any]) -> list[str]:
    problems = [
        f"unknown option {key!r} for format json (allowed: schema)" for key in options if key != "schema"
    ]
    if "schema" in options:
        from jsonschema import SchemaError
        from jsonschema.validators import validator_for

        schema = options["schema"]
        if not isinstance(schema, dict | bool):
            return problems + [f"schema must be a JSON Schema object, got {type(schema).__name__}"]
        try:
            validator_for(schema).check_schema(schema)
        except SchemaError as exc:
            where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
            problems.append(f"invalid JSON Schema at {where}: {exc.message}")
    return problems


def _json_instructions(options: dict[str, Any]) -> str:
    text = (
        "Output format: answer with one JSON value and nothing else: no explanation before or after, "
        "no Markdown code fence."
    )
    if "schema" in options:
        text += "\nThe JSON must validate against this JSON Schema:\n" + json.dumps(
            options["schema"], ensure_ascii=False, indent=1
        )
    return text


def _json_check(answer: str, options: dict[str, Any]) -> list[str]:
    value, problem = _parse(answer.strip())
    if problem:
        return [problem]
    if "schema" not in options:
        return []
    from jsonschema.validators import validator_for

    schema = options["schema"]
    validator = validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.absolute_path)))
    out = []
    for error in errors[:MAX_VIOLATIONS]:
        where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        out.append(f"schema violation at {where}: {error.message}")
    return out


def _json_repair(answer: str, options: dict[str, Any]) -> str | None:
    """The JSON the answer contains: a fenced block's content, else the first complete JSON object or
    array in the text. None when the answer is already pure JSON or holds none."""
    stripped = answer.strip()
    if _parse(stripped)[1] is None:
        return None if stripped == answer else stripped
    for match in FENCE.finditer(answer):
        candidate = match.group(1).strip()
        if _parse(candidate)[1] is None:
            return candidate
    decoder = json.JSONDecoder()
    for match in re.finditer(r"[\[{]", answer):
        try:
            _, end = decoder.raw_decode(answer, match.start())
        except json.JSONDecodeError:
            continue
        return answer[match.start() : end]
    return None


JSON = OutputFormat(
    name="json",
    description="One JSON value, optionally validated against a JSON Schema (format_options.schema).",
    instructions=_json_instructions,
    check=_json_check,
    repair=_json_repair,
    validate_options=_json_options,
)

# --- Markdown headings -----------------------------------------------------------------------------

HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
# Lines a model often writes instead of a heading: "**Decisions**", "**Decisions:**", "Decisions:".
PSEUDO_HEADING = re.compile(
    r"^[ \t]*(?:\*\*|__)?[ \t]*([^\n*_:#][^\n*_:]{0,80}?)[ \t]*:?[ \t]*(?:\*\*|__)?[ \t]*:?[ \t]*$",
    re.MULTILINE,
)


def _norm(title: str) -> str:
    title = re.sub(r"[*_`]", "", title)
    return re.sub(r"[\s:.\-–—]+$", "", title.strip()).casefold()


def _sections(answer: str) -> list[tuple[str, str]]:
    """(normalised heading, body) for each Markdown heading, in order."""
    matches = list(HEADING.finditer(answer))
    out = []
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(answer)
        out.append((_norm(match.group(2)), answer[match.end() : end].strip()))
    return out


def _check_headings(
    answer: str, required: list[str], aliases: dict[str, set[str]] | None = None
) -> tuple[list[str], dict[str, str]]:
    """Violations for missing, empty or misordered required headings, and each found section's body."""
    found = _sections(answer)
    names = {title: {_norm(title)} | {_norm(a) for a in (aliases or {}).get(title, ())} for title in required}
    bodies: dict[str, str] = {}
    positions: list[int] = []
    violations: list[str] = []
    for title in required:
        index = next((i for i, (name, _) in enumerate(found) if name in names[title]), None)
        if index is None:
            violations.append(f"missing section: {title}")
            continue
        positions.append(index)
        bodies[title] = found[index][1]
        if not found[index][1]:
            violations.append(f"empty section: {title}")
    if positions != sorted(positions):
        violations.append("sections out of order: expected " + ", ".join(required))
    return violations, bodies


def _repair_headings(
    answer: str, required: list[str], aliases: dict[str, set[str]] | None = None, level: int = 2
) -> str | None:
    """Turn bold or colon lines naming a required section into Markdown headings. None if nothing changed."""
    wanted = {_norm(t) for t in required} | {_norm(a) for names in (aliases or {}).values() for a in names}
    present = {name for name, _ in _sections(answer)}

    def fix(match: re.Match) -> str:
        line = match.group(0)
        name = _norm(match.group(1))
        if name in wanted and name not in present and (":" in line or "**" in line or "__" in line):
            return "#" * level + " " + match.group(1).strip()
        return line

    repaired = PSEUDO_HEADING.sub(fix, answer)
    return None if repaired == answer else repaired


def _sections_options(options: dict[str, Any]) -> list[str]:
    problems = [
        f"unknown option {key!r} for format sections (allowed: sections)"
        for key in options
        if key != "sections"
    ]
    sections = options.get("sections")
    if not isinstance(sections, list) or not sections:
        return problems + ["format sections needs format_options.sections: a list of heading titles"]
    if not all(isinstance(s, str) and s.strip() for s in sections):
        problems.append("format_options.sections must hold non-empty strings")
    elif len({_norm(s) for s in sections}) != len(sections):
        problems.append("format_options.sections lists a heading twice")
    return problems


def _sections_instructions(options: dict[str, Any]) -> str:
    headings = "\n".join(f"## {title}" for title in options["sections"])
    return (
        "Output format: Markdown with exactly these level-2 headings, in this order, each followed by its "
        f"content (write 'None.' under a heading with nothing to say):\n{headings}"
    )


SECTIONS = OutputFormat(
    name="sections",
    description="Markdown with the required headings of format_options.sections, in order.",
    instructions=_sections_instructions,
    check=lambda answer, options: _check_headings(answer, options["sections"])[0],
    repair=lambda answer, options: _repair_headings(answer, options["sections"]),
    validate_options=_sections_options,
)

# --- meeting minutes -------------------------------------------------------------------------------

MINUTES_SECTIONS = ["Date", "Participants", "Agenda", "Decisions", "Actions"]
MINUTES_ALIASES = {
    "Date": {"Date", "When"},
    "Participants": {"Participants", "Attendees", "Présents"},
    "Agenda": {"Agenda", "Ordre du jour", "Topics"},
    "Decisions": {"Decisions", "Décisions"},
    "Actions": {"Actions", "Action items", "Next steps", "Actions à mener"},
}
DATE = re.compile(
    r"\b\d{4}-\d{2}-\d{2}\b|\b\d{1,2}[/.]\d{1,2}[/.]\d{2,4}\b"
    r"|\b\d{1,2}(?:er)?\s+[A-Za-zéû]{3,9}\.?\s+\d{4}\b|\b[A-Z][a-z]{2,8}\.?\s+\d{1,2},?\s+\d{4}\b"
)
NONE = re.compile(r"^\s*[-*]?\s*(none|nothing|n/a|aucune?|néant)\b", re.IGNORECASE)
BULLET = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(.*\S)", re.MULTILINE)
# An action names who does it: "@ana", "— Ana", "(owner: Ana)", "Ana:" at the start.
OWNER = re.compile(
    r"@\w|\s[—–-]\s*\S|\b(?:owner|responsable|who|qui)\s*:|^\s*\**[\w .'-]{2,40}\**\s*:", re.IGNORECASE
)


def _minutes_check(answer: str, options: dict[str, Any]) -> list[str]:
    violations, bodies = _check_headings(answer, MINUTES_SECTIONS, MINUTES_ALIASES)
    if bodies.get("Date") and not DATE.search(bodies["Date"]):
        violations.append("the Date section holds no date (expected e.g. 2025-03-14)")
    if (
        bodies.get("Participants")
        and not BULLET.search(bodies["Participants"])
        and "," not in bodies["Participants"]
    ):
        if not NONE.match(bodies["Participants"]):
            violations.append("Participants should list people (one bullet each, or comma-separated)")
    actions = bodies.get("Actions")
    if actions and not NONE.match(actions):
        items = BULLET.findall(actions)
        if not items:
            violations.append("Actions should be a list: one bullet per action, with its owner")
        for item in items:
            if not OWNER.search(item):
                violations.append(f"action without an owner: {item[:60]}")
    return violations[:MAX_VIOLATIONS]


def _minutes_instructions(options: dict[str, Any]) -> str:
    return (
        "Output format: meeting minutes in Markdown with exactly these headings, in this order:\n"
        "## Date\nThe meeting date as YYYY-MM-DD.\n"
        "## Participants\nOne bullet per person.\n"
        "## Agenda\nOne bullet per topic.\n"
        "## Decisions\nOne bullet per decision taken, or 'None.'\n"
        "## Actions\nOne bullet per action: `- what to do — owner (due YYYY-MM-DD)`, or 'None.'\n"
        "Use only facts from the conversation; do not invent participants, dates or decisions."
    )


def _no_options(name: str):
    return lambda options: (
        [f"format {name} takes no format_options (got {', '.join(map(str, options))})"] if options else []
    )


MINUTES = OutputFormat(
    name="minutes",
    description="Meeting minutes: date, participants, agenda, decisions, actions with owners.",
    instructions=_minutes_instructions,
    check=_minutes_check,
    repair=lambda answer, options: _repair_headings(answer, MINUTES_SECTIONS, MINUTES_ALIASES),
    validate_options=_no_options("minutes"),
)

FORMATS = {fmt.name: fmt for fmt in (JSON, SECTIONS, MINUTES)}


def _format_of(profile) -> OutputFormat | None:
    return FORMATS.get(getattr(profile, "format", None) or "")


# --- hooks -----------------------------------------------------------------------------------------


@hookimpl
def register_formats(register):
    for fmt in FORMATS.values():
        register(fmt)


@hookimpl
def system_prompt(profile):
    fmt = _format_of(profile)
    return fmt.instructions(profile.format_options) if fmt else None


@hookimpl
def format_answer(answer, profile):
    fmt = _format_of(profile)
    return fmt.repair(answer, profile.format_options) if fmt else None


@hookimpl
def check_format(answer, profile):
    fmt = _format_of(profile)
    return fmt.check(answer, profile.format_options) if fmt else []
