"""Citations people can act on: title and section, linked when there is a URL, the last indexed date,
and a clear warning when a retrieval answer cites none of its sources."""

from __future__ import annotations

import json

import pytest

from bot import messages as text
from bot.slack.answers import AnswerView, answer_tail, citation
from plugins.hookspecs import hookimpl
from tests.bot.slack.conftest import make_harness


class Wiki:
    @hookimpl
    def retrieve(self, question, profile, k):
        return [
            {
                "title": "Holiday policy",
                "source": "https://wiki.example.com/holidays",
                "score": 0.9,
                "text": "Holidays are requested in the HR portal.",
            },
            {"title": "Handbook", "source": "docs/handbook.md", "score": 0.7, "text": "Ask HR."},
        ]


@pytest.fixture
def rag(fake_slack, tmp_path):
    config = tmp_path / "apprenti.yaml"
    config.write_text("default:\n  mode: rag\n")
    # The numbered layout asks the model to cite its sources: an answer that does not is flagged.
    harness = make_harness(
        fake_slack,
        tmp_path,
        config=config,
        plugins=["pii", "wiki"],
        plugins_extra={"wiki": Wiki()},
        prompt_layout="numbered",
    )
    yield harness
    harness.close()


def tail_text(h) -> str:
    return json.dumps(h.fake.wait_for("chat.stopStream", timeout=60)[-1]["blocks"], ensure_ascii=False)


def test_sources_are_linked_and_cited_answers_carry_no_warning(rag):
    rag.llm.reply = "Use the HR portal [1]."
    rag.send_event(rag.event(text="<@UAPPRENTI> holidays?"))
    tail = tail_text(rag)
    assert "[1] <https://wiki.example.com/holidays|Holiday policy>" in tail
    assert "mode *rag*" in tail and "No source was cited" not in tail


def test_an_answer_citing_no_source_is_flagged(rag):
    rag.llm.reply = "Use the HR portal."
    rag.send_event(rag.event(text="<@UAPPRENTI> holidays?"))
    assert text.SLACK_NO_CITATION.split(":")[0] in tail_text(rag)


def test_citation_shows_section_page_and_indexed_date():
    line = citation(
        {
            "title": "Handbook",
            "source": "https://wiki.example.com/h",
            "heading": "## Leave",
            "page": 4,
            "indexed_at": 1782770450.0,
        },
        3,
    )
    assert line == "[3] <https://wiki.example.com/h|Handbook> — Leave · p. 4 · indexed 2026-06-29"
    assert (
        citation({"title": "Handbook", "source": "docs/handbook.md"}, 2)
        == "[2] *Handbook* — `docs/handbook.md`"
    )
    team = citation(
        {
            "title": "How many days?",
            "source": "team:12",
            "kind": "team_answer",
            "indexed_at": "2026-07-01T10:00:00",
        },
        1,
    )
    assert team == "[1] *How many days?* — team answer · indexed 2026-07-01"


def test_plain_layout_answers_are_not_flagged():
    # A small model reading the plain layout is not asked to cite: Apprenti attaches the source itself.
    view = AnswerView(
        text="Use the HR portal.",
        interaction_id=1,
        mode="rag",
        sources=[{"title": "Holiday policy", "source": "wiki", "layout": "plain"}],
    )
    assert "No source was cited" not in json.dumps([b.to_dict() for b in answer_tail(view)])


def test_prompt_answers_are_never_flagged():
    view = AnswerView(text="Hello", interaction_id=1, mode="prompt")
    assert "No source was cited" not in json.dumps([b.to_dict() for b in answer_tail(view)])
