"""Fact corrections answer at once: approval indexes a team knowledge entry (dense and BM25), the
next paraphrase is answered from it and cites it, contradictions are replaced, documents flagged,
and rejecting, re-kinding, erasing or a failed index write keep the knowledge base honest.

Real plugin manager, real embedded Chroma and BM25, the bundled MiniLM; the model is a recorder
(what reaches the prompt is what is checked; answer quality is measured in bench/fact_corrections.py).
"""

from __future__ import annotations

import json

import pytest

from bot import corrections
from bot.llm import LLM, Completion, Stream
from bot.runtime import Runtime
from bot.settings import load_settings
from finetune.dataset import build_dataset
from plugins.builtin.knowledge import TEAM_COLLECTION
from storage.examples import add_example, get_example
from storage.knowledge import knowledge_entries, open_suspects
from storage.models import ExampleStatus
from storage.usage import count_unused_examples
from tests.cli import run_main

HANDBOOK = """# IT handbook

## VPN
The VPN client is Cisco AnyConnect. Install it from the software center before your first day.

## Printers
The printers are on the second floor, next to the kitchen.
"""


class Recorder(LLM):
    """Answers with the first line of the text it was given, and remembers every prompt."""

    def __init__(self):
        self.seen: list[list[dict]] = []

    def generate(self, messages, track="default"):
        self.seen.append(messages)
        return Completion(text="noted", adapter=None, prompt_tokens=10, messages=messages)

    def stream(self, messages, track="default"):
        whole = self.generate(messages, track)
        return Stream(
            lambda: iter([whole.text]), lambda written, failure: Completion(text=written, messages=messages)
        )

    def generate_many(self, prompts, track="default", adapter=None):
        return [self.generate(p, track) for p in prompts]


@pytest.fixture
def rt(isolated_env, monkeypatch, tmp_path, capsys):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "it.md").write_text(HANDBOOK)
    monkeypatch.setenv("APPRENTI_PLUGINS", "rag,fewshot")
    monkeypatch.setenv("APPRENTI_PII", "off")
    monkeypatch.setenv("APPRENTI_PROMPT_LAYOUT", "plain")
    code, out, err = run_main(["ingest", str(docs), "--collection", "handbook", "--json"], capsys)
    assert code == 0, err
    runtime = Runtime(load_settings(), entrypoints=False)
    runtime.__dict__["llm"] = Recorder()
    runtime.docs = docs
    return runtime


def fact_correction(rt, question, corrected, *, ask_first=True, author="U_AUTHOR"):
    """A person corrects the answer to `question` (asked first, so the answer cited the handbook)."""
    interaction_id = None
    if ask_first:
        interaction_id = rt.assistant.answer(question, user="U_ASKER").interaction_id
    return add_example(
        rt.engine,
        question,
        corrected,
        kind="fact",
        kind_source="author",
        author_id=author,
        interaction_id=interaction_id,
        original_answer="The VPN client is Cisco AnyConnect.",
    )


def last_prompt(rt) -> str:
    return rt.llm.seen[-1][-1]["content"]


def test_an_approved_fact_answers_the_next_paraphrase_and_cites_the_team(rt):
    before = rt.assistant.answer("What VPN software do I need to install?")
    assert all(s["kind"] == "document" for s in before.sources) and "AnyConnect" in last_prompt(rt)

    example = fact_correction(rt, "Which VPN client do we use?", "The VPN client is WireGuard, since March.")
    decision = corrections.decide(rt.engine, rt.plugins, example.id, ExampleStatus.approved, "U_REVIEWER")
    assert decision.done and decision.indexed is True
    assert get_example(rt.engine, example.id).indexed_at is not None

    after = rt.assistant.answer("What VPN software do I need to install?")
    first = after.sources[0]
    assert first["kind"] == "team_answer" and first["example_id"] == example.id
    assert first["approved_by"] == "U_REVIEWER" and first["approved_at"]
    assert "WireGuard" in last_prompt(rt) and "AnyConnect" not in last_prompt(
        rt
    )  # the team entry comes first
    assert after.mode == "rag"

    # the documents the wrong answer cited are listed for their owners, with the correction
    (suspect,) = open_suspects(rt.engine)
    assert suspect.source == "it.md" and suspect.collection == "handbook" and suspect.example_id == example.id
    assert decision.flagged == 1

    # an unrelated question is not answered from the team entry
    other = rt.assistant.answer("Where are the printers?")
    assert all(s["kind"] == "document" for s in other.sources)


def test_team_answers_apply_in_prompt_mode_and_a_profile_can_opt_out(rt, tmp_path, monkeypatch):
    example = fact_correction(rt, "Which VPN client do we use?", "WireGuard.", ask_first=False)
    corrections.decide(rt.engine, rt.plugins, example.id, ExampleStatus.approved, "U_REVIEWER")
    assert (
        rt.assistant.answer("Which VPN client do we use?", mode="prompt").sources[0]["kind"] == "team_answer"
    )

    config = tmp_path / "apprenti.yaml"
    config.write_text("default:\n  team_answers: false\n")
    monkeypatch.setenv("APPRENTI_CONFIG", str(config))
    opted_out = Runtime(load_settings(), entrypoints=False)
    opted_out.__dict__["llm"] = Recorder()
    answer = opted_out.assistant.answer("Which VPN client do we use?", mode="prompt")
    assert answer.sources == [] and "WireGuard" not in opted_out.llm.seen[-1][-1]["content"]


def test_a_later_fact_on_the_same_question_replaces_the_earlier_one(rt):
    first = fact_correction(
        rt, "Which VPN client do we use?", "The VPN client is WireGuard.", ask_first=False
    )
    corrections.decide(rt.engine, rt.plugins, first.id, ExampleStatus.approved, "U_REVIEWER")
    rt.assistant.answer("Which VPN client do we use?", user="U_ASKER")  # cites the first team answer
    second = fact_correction(rt, "Which VPN client do we use?", "The VPN client is Tailscale now.")
    decision = corrections.decide(rt.engine, rt.plugins, second.id, ExampleStatus.approved, "U_REVIEWER")
    assert [e.id for e in decision.replaced] == [first.id]
    assert get_example(rt.engine, first.id).superseded_by == second.id
    assert [e.id for e in knowledge_entries(rt.engine)] == [second.id]
    answer = rt.assistant.answer("What VPN client should I use?")
    assert [s["example_id"] for s in answer.sources if s["kind"] == "team_answer"] == [second.id]
    assert "Tailscale" in last_prompt(rt) and "WireGuard" not in last_prompt(rt)


def test_reject_edit_rekind_and_erase_update_the_entry_at_once(rt):
    example = fact_correction(rt, "Which VPN client do we use?", "WireGuard.", ask_first=False)
    corrections.decide(rt.engine, rt.plugins, example.id, ExampleStatus.approved, "U_REVIEWER")
    index = rt.plugins.get_plugin("rag").knowledge().index

    def held():
        got = index.chroma.get(where={"collection": TEAM_COLLECTION}, include=["documents"])
        return got["documents"]

    assert held() == ["WireGuard."]
    # to behaviour: out of the knowledge base, into training
    corrections.change_kind(rt.engine, rt.plugins, example.id, "behaviour", "U_REVIEWER")
    assert held() == [] and count_unused_examples(rt.engine, "default") == 1
    corrections.change_kind(rt.engine, rt.plugins, example.id, "both", "U_REVIEWER")
    assert held() == ["WireGuard."] and count_unused_examples(rt.engine, "default") == 1

    # a pending fact edited and approved is indexed with the edited text; a rejected one never is
    pending = fact_correction(rt, "Where are the printers?", "Fourth floor.", ask_first=False)
    corrections.decide(
        rt.engine,
        rt.plugins,
        pending.id,
        ExampleStatus.approved,
        "U_REVIEWER",
        corrected="On the fourth floor, by the lifts.",
    )
    assert sorted(held()) == ["On the fourth floor, by the lifts.", "WireGuard."]
    rejected = fact_correction(rt, "Who approves purchases?", "Marc.", ask_first=False)
    corrections.decide(rt.engine, rt.plugins, rejected.id, ExampleStatus.rejected, "U_REVIEWER")
    assert "Marc." not in held()

    from bot.erasure import forget_user

    forget_user(rt.engine, "U_AUTHOR", "U_ADMIN", pm=rt.plugins)
    assert held() == [] and knowledge_entries(rt.engine) == []


def test_a_failed_index_write_keeps_the_approval_shows_the_error_and_is_retried(rt, monkeypatch):
    team = rt.plugins.get_plugin("rag").knowledge()
    example = fact_correction(
        rt, "Which VPN client do we use?", "The VPN client is WireGuard.", ask_first=False
    )

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(team.index, "add_chunks", broken)
    decision = corrections.decide(rt.engine, rt.plugins, example.id, ExampleStatus.approved, "U_REVIEWER")
    row = get_example(rt.engine, example.id)
    assert decision.done and decision.indexed is False
    assert row.status == "approved" and row.indexed_at is None and "disk full" in row.index_error

    monkeypatch.undo()
    team._synced_at = None  # the next answer reconciles
    answer = rt.assistant.answer("Which VPN client do we use?")
    assert answer.sources[0]["kind"] == "team_answer"
    row = get_example(rt.engine, example.id)
    assert row.indexed_at is not None and row.index_error is None


def test_training_learns_behaviour_and_both_and_reports_the_facts(rt):
    for i in range(3):
        fact = fact_correction(rt, f"Fact question {i}?", f"Fact answer {i}.", ask_first=False)
        corrections.decide(rt.engine, rt.plugins, fact.id, ExampleStatus.approved, "U_REVIEWER")
    for kind in ("behaviour", "both"):
        pair = add_example(
            rt.engine, f"Form question {kind}?", f"Answer: {kind}.", kind=kind, author_id="U_AUTHOR"
        )
        corrections.decide(rt.engine, rt.plugins, pair.id, ExampleStatus.approved, "U_REVIEWER")
    dataset = build_dataset(rt.engine, "default", min_examples=1)
    assert sorted(r["prompt"][-1]["content"] for r in dataset.train + dataset.test) == [
        "Form question behaviour?",
        "Form question both?",
    ]
    assert dataset.summary()["facts_to_knowledge"] == 3
    assert count_unused_examples(rt.engine, "default") == 2


def test_reingesting_a_changed_document_clears_it(rt, capsys):
    example = fact_correction(rt, "Which VPN client do we use?", "WireGuard.")
    corrections.decide(rt.engine, rt.plugins, example.id, ExampleStatus.approved, "U_REVIEWER")
    assert len(open_suspects(rt.engine)) == 1
    code, out, _ = run_main(["ingest", str(rt.docs), "--collection", "handbook", "--json"], capsys)
    assert code == 0 and json.loads(out)["suspects_cleared"] == 0  # unchanged: still suspect
    (rt.docs / "it.md").write_text(HANDBOOK.replace("Cisco AnyConnect", "WireGuard"))
    code, out, _ = run_main(["ingest", str(rt.docs), "--collection", "handbook", "--json"], capsys)
    assert code == 0 and json.loads(out)["suspects_cleared"] == 1
    assert open_suspects(rt.engine) == []


def test_cli_imports_lists_approves_and_rekinds(rt, tmp_path, capsys):
    pairs = tmp_path / "facts.jsonl"
    pairs.write_text(
        json.dumps({"instruction": "Which VPN client do we use?", "input": "", "output": "WireGuard."}) + "\n"
    )
    code, out, err = run_main(
        ["examples", "import", str(pairs), "--format", "alpaca", "--kind", "fact", "--approved", "--json"],
        capsys,
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["kind"] == "fact" and report["knowledge_indexed"] == 1
    code, out, _ = run_main(["examples", "list", "--kind", "fact", "--json"], capsys)
    (row,) = json.loads(out)["examples"]
    assert row["kind"] == "fact" and row["kind_source"] == "import" and row["indexed_at"]
    code, out, _ = run_main(["ask", "What VPN client should I install?", "--json"], capsys)
    assert json.loads(out)["sources"][0]["kind"] == "team_answer"
    code, out, _ = run_main(["examples", "kind", str(row["id"]), "behaviour", "--json"], capsys)
    assert code == 0 and json.loads(out)["kind"] == "behaviour"
    code, _, err = run_main(
        ["examples", "import", str(pairs), "--format", "alpaca", "--kind", "facts"], capsys
    )
    assert code == 2 and "--kind 'facts'" in err


def test_weekly_notice_and_readiness_advice_count_facts_and_behaviour(rt):
    from bot.advice import readiness_report
    from bot.scheduler import weekly_documents

    class Notify:
        posted: list[list[str]] = []

        def weekly_documents(self, lines):
            self.posted.append(lines)

    rt.notify = Notify()
    assert weekly_documents(rt) == 0 and Notify.posted == []  # nothing to say: nothing posted
    for i in range(5):
        fact = fact_correction(
            rt, f"Which VPN client do we use, case {i}?", f"WireGuard {i}.", ask_first=i == 0
        )
        corrections.decide(rt.engine, rt.plugins, fact.id, ExampleStatus.approved, "U_REVIEWER")
    pair = add_example(rt.engine, "Form question?", "Answer: form.", kind="behaviour", author_id="U_AUTHOR")
    corrections.decide(rt.engine, rt.plugins, pair.id, ExampleStatus.approved, "U_REVIEWER")

    assert weekly_documents(rt) == 1
    (lines,) = Notify.posted
    assert any("it.md" in line and "WireGuard 0." in line for line in lines)

    report = readiness_report(rt.engine, rt.settings)
    (track,) = [t for t in report["tracks"] if t["track"] == "default"]
    assert track["kinds"] == {"fact": 5, "behaviour": 1, "both": 0} and track["recommendation"] == "rag"
    assert track["approved"] == 1 and track["unused"] == 1  # facts never count towards training
    assert any("Mostly facts" in a for a in track["advice"])
    assert report["knowledge"] == {"suspect_documents": 1, "unindexed": [], "index_errors": []}


def test_a_later_fact_on_the_same_question_asked_afresh_replaces_the_earlier_one(rt):
    """No answer cited the earlier entry: the two questions alone are compared (a paraphrase is not
    replaced)."""
    first = fact_correction(rt, "Which VPN client do we use?", "WireGuard.", ask_first=False)
    corrections.decide(rt.engine, rt.plugins, first.id, ExampleStatus.approved, "U_REVIEWER")
    other = fact_correction(
        rt, "What VPN software should I install on a new laptop?", "The WireGuard app.", ask_first=False
    )
    assert (
        corrections.decide(rt.engine, rt.plugins, other.id, ExampleStatus.approved, "U_REVIEWER").replaced
        == []
    )
    second = fact_correction(rt, "What VPN client do we use?", "Tailscale.", ask_first=False)
    decision = corrections.decide(rt.engine, rt.plugins, second.id, ExampleStatus.approved, "U_REVIEWER")
    assert [e.id for e in decision.replaced] == [first.id]
    assert sorted(e.id for e in knowledge_entries(rt.engine)) == [other.id, second.id]
