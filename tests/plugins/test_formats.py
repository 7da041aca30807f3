"""Format validators and repairs as tables of cases, through the real plugin manager."""

from __future__ import annotations

import pytest

from plugins.formats import collect_formats
from plugins.manager import make_manager
from plugins.profile import Profile

SCHEMA = {
    "type": "object",
    "required": ["answer", "days"],
    "properties": {"answer": {"type": "string"}, "days": {"type": "integer", "minimum": 0}},
}
MINUTES_OK = """## Date
2025-03-14
## Participants
- Ana
- Léo
## Agenda
- Holidays
## Decisions
- Summer closure in August
## Actions
- Send the calendar — Ana (due 2025-03-20)
"""


@pytest.fixture(scope="module")
def pm():
    return make_manager(["formats"], entrypoints=False)


def run(pm, answer, fmt, options=None):
    profile = Profile(format=fmt, format_options=options or {})
    repaired = pm.hook.format_answer(answer=answer, profile=profile)
    final = answer if repaired is None else repaired
    violations = [v for result in pm.hook.check_format(answer=final, profile=profile) for v in result]
    return repaired, final, violations


@pytest.mark.parametrize(
    "answer, options, repaired, violations",
    [
        ('{"answer": "yes", "days": 3}', {"schema": SCHEMA}, None, []),
        ('  {"a": 1}\n', {}, '{"a": 1}', []),
        (
            'Here you go:\n```json\n{"answer": "ok", "days": 2}\n```\nBye',
            {"schema": SCHEMA},
            '{"answer": "ok", "days": 2}',
            [],
        ),
        (
            'Sure! {"answer": "ok", "days": 1} hope it helps',
            {"schema": SCHEMA},
            '{"answer": "ok", "days": 1}',
            [],
        ),
        ("The list: [1, 2, 3].", {}, "[1, 2, 3]", []),
        (
            '{"answer": "ok"}',
            {"schema": SCHEMA},
            None,
            ["schema violation at $: 'days' is a required property"],
        ),
        (
            '{"answer": "ok", "days": -1}',
            {"schema": SCHEMA},
            None,
            ["schema violation at $.days: -1 is less than the minimum of 0"],
        ),
        ("no json at all", {}, None, ["the answer is not valid JSON: Expecting value (line 1, column 1)"]),
        ('```json\n{"broken": }\n```', {}, None, ["not valid JSON"]),
    ],
)
def test_json(pm, answer, options, repaired, violations):
    got_repaired, _, got = run(pm, answer, "json", options)
    assert got_repaired == repaired
    assert len(got) == len(violations)
    for want, have in zip(violations, got, strict=True):
        assert want in have


SECTIONS = {"sections": ["Summary", "Steps", "Contacts"]}


@pytest.mark.parametrize(
    "answer, repaired_changes, violations",
    [
        ("## Summary\nShort.\n## Steps\n1. Ask.\n## Contacts\nHR.", False, []),
        ("# summary:\nShort.\n### Steps\n1. Ask.\n## Contacts ##\nHR.", False, []),
        ("**Summary**\nShort.\n**Steps:**\n1. Ask.\nContacts:\nHR.", True, []),
        ("## Summary\nShort.\n## Contacts\nHR.", False, ["missing section: Steps"]),
        ("## Summary\n\n## Steps\n1. Ask.\n## Contacts\nHR.", False, ["empty section: Summary"]),
        (
            "## Steps\n1.\n## Summary\nS.\n## Contacts\nHR.",
            False,
            ["sections out of order: expected Summary, Steps, Contacts"],
        ),
        (
            "Just prose mentioning the summary and steps.",
            False,
            ["missing section: Summary", "missing section: Steps", "missing section: Contacts"],
        ),
    ],
)
def test_sections(pm, answer, repaired_changes, violations):
    repaired, _, got = run(pm, answer, "sections", SECTIONS)
    assert (repaired is not None) == repaired_changes
    assert got == violations


@pytest.mark.parametrize(
    "answer, violations",
    [
        (MINUTES_OK, []),
        (MINUTES_OK.replace("## Decisions\n- Summer closure in August", "## Décisions\nNone."), []),
        (MINUTES_OK.replace("2025-03-14", "last week"), ["the Date section holds no date"]),
        (
            MINUTES_OK.replace("- Send the calendar — Ana (due 2025-03-20)", "- Send the calendar"),
            ["action without an owner: Send the calendar"],
        ),
        (MINUTES_OK.replace("- Send the calendar — Ana (due 2025-03-20)", "- @ana sends the calendar"), []),
        (MINUTES_OK.replace("## Agenda\n- Holidays\n", ""), ["missing section: Agenda"]),
        (MINUTES_OK.replace("## Participants\n- Ana\n- Léo", "**Participants:**\n- Ana\n- Léo"), []),
    ],
)
def test_minutes(pm, answer, violations):
    _, _, got = run(pm, answer, "minutes")
    assert len(got) == len(violations), got
    for want, have in zip(violations, got, strict=True):
        assert have.startswith(want)


def test_instructions_reach_the_system_prompt(pm):
    prompts = pm.hook.system_prompt(profile=Profile(format="sections", format_options=SECTIONS), question="q")
    assert any("## Steps" in p for p in prompts if p)
    prompts = pm.hook.system_prompt(
        profile=Profile(format="json", format_options={"schema": SCHEMA}), question="q"
    )
    assert any('"minimum": 0' in p for p in prompts if p)
    assert not any(pm.hook.system_prompt(profile=Profile(), question="q"))


@pytest.mark.parametrize(
    "name, options, problem",
    [
        ("json", {}, None),
        ("json", {"schema": SCHEMA}, None),
        ("json", {"schema": {"type": "nosuchtype"}}, "invalid JSON Schema"),
        ("json", {"schema": {"required": "answer"}}, "invalid JSON Schema at required"),
        ("json", {"schema": "object"}, "schema must be a JSON Schema object"),
        ("json", {"scheme": {}}, "unknown option 'scheme'"),
        ("sections", {}, "needs format_options.sections"),
        ("sections", {"sections": ["A", ""]}, "non-empty strings"),
        ("sections", {"sections": ["A", "a"]}, "twice"),
        ("minutes", {}, None),
        ("minutes", {"sections": ["A"]}, "takes no format_options"),
    ],
)
def test_options_are_validated(pm, name, options, problem):
    problems = collect_formats(pm)[name].validate_options(options)
    if problem is None:
        assert problems == []
    else:
        assert problems and problem in problems[0]
