from __future__ import annotations

import json

import pytest

from finetune.formats import FormatError, Pair, import_pairs, parse_file, training_pairs, write_file
from storage.examples import list_examples

CASES = [
    ("alpaca_2000.jsonl", "alpaca", False),
    ("sharegpt_fastchat_dummy_conversation.json", "sharegpt", False),
    ("sharegpt_pref_llamafactory_dpo_en_demo.json", "sharegpt", True),
    ("openai_messages_llamafactory_kto_en_demo.json", "openai", False),
]


def test_toy_openai_file_lists_every_problem_with_its_line(samples):
    result = parse_file(samples / "openai_chat_toy_chat_fine_tuning.jsonl", "openai")
    assert not result.ok
    problems = {(p.where, p.severity): p.message for p in result.problems}
    assert "no user message" in problems[("line 4", "error")]
    assert "26,000 characters" in problems[("line 5", "error")]
    assert "no system message" in problems[("line 3", "warning")]
    assert [p.where for p in result.errors] == ["line 4", "line 5"]


def test_alpaca_sample_empty_outputs_are_reported(samples):
    result = parse_file(samples / "alpaca_2000.jsonl", "alpaca")
    assert [p.where for p in result.errors] == ["line 285", "line 1224", "line 1348", "line 1737"]
    assert all("output is missing" in p.message for p in result.errors)
    assert len(result.pairs) == 1996


@pytest.mark.parametrize("name,fmt,preference", CASES)
def test_samples_round_trip(samples, tmp_path, name, fmt, preference):
    first = parse_file(samples / name, fmt)
    assert first.pairs
    for suffix in (".jsonl", ".json"):
        out = tmp_path / f"out{suffix}"
        assert write_file(first.pairs, fmt, out, preference=preference) == len(first.pairs)
        again = parse_file(out, fmt)
        assert again.ok, again.problems[:3]
        assert again.pairs == first.pairs


def test_single_turn_records_export_exactly_as_read(samples, tmp_path):
    lines = (samples / "alpaca_2000.jsonl").read_text().splitlines()[:50]
    src = tmp_path / "a.jsonl"
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "b.jsonl"
    write_file(parse_file(src, "alpaca").pairs, "alpaca", out)
    assert [json.loads(x) for x in out.read_text().splitlines()] == [json.loads(x) for x in lines]


def test_preferences_and_multi_turn_context(samples):
    pref = parse_file(samples / "sharegpt_pref_llamafactory_dpo_en_demo.json", "sharegpt").pairs
    assert all(p.rejected for p in pref)
    multi = parse_file(samples / "sharegpt_fastchat_dummy_conversation.json", "sharegpt").pairs
    assert any(p.context and p.context.startswith("Earlier in this conversation:") for p in multi)
    kto = parse_file(samples / "openai_messages_llamafactory_kto_en_demo.json", "openai")
    assert len(kto.pairs) == 150 and len(kto.skipped) == 150  # thumbs-down answers are not training pairs


def test_json_array_problems_carry_line_numbers(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(
        '[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "", "output": "c"},\n  3\n]'
    )
    result = parse_file(path, "alpaca")
    assert [str(p) for p in result.errors] == [
        "record 2 (line 3): error: instruction is missing or empty",
        "record 3 (line 4): error: a record must be a JSON object, not int",
    ]


def test_broken_json_and_missing_file(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(
        '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n{oops\n'
    )
    result = parse_file(path, "openai")
    assert [p.where for p in result.errors] == ["line 2"] and len(result.pairs) == 1
    with pytest.raises(FormatError, match="no such file"):
        parse_file(tmp_path / "missing.jsonl", "openai")
    with pytest.raises(FormatError, match="unknown format"):
        parse_file(path, "csv")


def test_database_round_trip(engine, samples, tmp_path):
    pairs = parse_file(samples / "sharegpt_pref_llamafactory_dpo_en_demo.json", "sharegpt").pairs[:40]
    stored, dupes = import_pairs(engine, pairs, track="support", approved=True, scrub=str.strip, source="dpo")
    assert len(stored) + dupes == 40
    assert {e.status for e in list_examples(engine, track="support")} == {"approved"}
    exported = training_pairs(engine, "support")
    out = tmp_path / "export.json"
    write_file(exported, "sharegpt", out, preference=True)
    again = parse_file(out, "sharegpt").pairs
    assert [(p.question, p.answer, p.context, p.rejected) for p in again] == [
        (p.question, p.answer, p.context, p.rejected) for p in exported
    ]
    # pending imports do not reach training
    import_pairs(engine, [Pair("new question?", "new answer")], track="support")
    assert len(training_pairs(engine, "support")) == len(exported)
