"""The gate's rules as a table of cases."""

from __future__ import annotations

import pytest

from finetune.evaluate import Evaluation, GateConfig, gate


def evaluation(
    cand_f1,
    ref_f1,
    cand_general,
    base_general,
    cand_fmt=None,
    ref_fmt=None,
    active=None,
    cand_leak=None,
    base_leak=0.0,
):
    ref = active or "base"
    scores = {
        "candidate": {"target": {"token_f1": cand_f1}, "general": {"score": cand_general}},
        ref: {"target": {"token_f1": ref_f1}},
        "base": {"general": {"score": base_general}},
    }
    if cand_leak is not None:
        scores["candidate"]["general"].update(leak_rate=cand_leak, template=["answer:", "source:"])
        scores["base"]["general"]["leak_rate"] = base_leak
    scores["base"].setdefault("target", {"token_f1": ref_f1} if ref == "base" else {})
    if cand_fmt is not None:
        scores["candidate"]["target"]["format_compliance"] = cand_fmt
        scores[ref]["target"]["format_compliance"] = ref_fmt
    return Evaluation(scores=scores, active=active)


@pytest.mark.parametrize(
    ("case", "kwargs", "config", "passed", "why"),
    [
        (
            "better, no forgetting",
            dict(cand_f1=0.8, ref_f1=0.5, cand_general=0.60, base_general=0.62),
            {},
            True,
            "beats",
        ),
        (
            "not better",
            dict(cand_f1=0.5, ref_f1=0.5, cand_general=0.6, base_general=0.6),
            {},
            False,
            "does not beat",
        ),
        (
            "better but under the margin",
            dict(cand_f1=0.52, ref_f1=0.5, cand_general=0.6, base_general=0.6),
            {"margin": 0.05},
            False,
            "margin 0.05",
        ),
        (
            "forgot general skills",
            dict(cand_f1=0.9, ref_f1=0.5, cand_general=0.40, base_general=0.60),
            {},
            False,
            "general skills regressed",
        ),
        (
            "noise-level base has nothing to lose",
            dict(cand_f1=1.0, ref_f1=0.0, cand_general=0.0, base_general=0.001),
            {},
            True,
            "tolerance",
        ),
        (
            "format compliance dropped",
            dict(
                cand_f1=0.9,
                ref_f1=0.5,
                cand_general=0.6,
                base_general=0.6,
                cand_fmt=0.7,
                ref_fmt=0.9,
                active="default/v1",
            ),
            {},
            False,
            "format compliance dropped",
        ),
        (
            "template leaks into general answers",
            dict(cand_f1=0.9, ref_f1=0.5, cand_general=0.6, base_general=0.6, cand_leak=3 / 12),
            {},
            False,
            "leaks into general answers",
        ),
        (
            "one leak in twelve is tolerated",
            dict(cand_f1=0.9, ref_f1=0.5, cand_general=0.6, base_general=0.6, cand_leak=1 / 12),
            {},
            True,
            "template kept out",
        ),
        (
            "compared with the active adapter",
            dict(cand_f1=0.6, ref_f1=0.7, cand_general=0.6, base_general=0.6, active="default/v2"),
            {},
            False,
            "default/v2 0.700",
        ),
    ],
)
def test_gate_rules(case, kwargs, config, passed, why):
    verdict = gate(evaluation(**kwargs), GateConfig(**config))
    assert verdict.passed is passed, (case, verdict.reasons)
    assert any(why in reason for reason in verdict.reasons), verdict.reasons


def test_template_lines_and_leaks():
    from finetune.evaluate import leaks, template_lines

    completions = [f"Answer: fact {i}.\nSource: Handbook — section {i}" for i in range(5)] + [
        "Just a sentence."
    ]
    template = template_lines(completions)
    assert template == ["answer:", "source:"]
    assert leaks("Answer: Paris.\nSource: Geography handbook", template)
    assert not leaks("The answer is: Paris.", template)
    assert not leaks("Paris is the capital of France.", template)
    assert template_lines(["One answer.", "Another answer entirely."]) == []


def test_general_items_are_scored_by_their_rule():
    from finetune.general import GeneralItem

    assert GeneralItem("facts", "Capital of France?", answers=("Paris",)).score("It is PARIS.") == 1.0
    shout = GeneralItem("instructions", "Say hello loudly.", check={"contains": "HELLO"})
    assert shout.score("HELLO!") == 1.0 and shout.score("hello") == 0.0
    lines = GeneralItem("instructions", "Three colours, one per line.", check={"min_lines": 3})
    assert lines.score("red\nblue\ngreen") == 1.0 and lines.score("red, blue, green") == 0.0
    summary = GeneralItem("summarising", "Summarise.", reference="the office is closed on monday")
    assert 0.5 < summary.score("The office is closed Monday.") < 1.0
