"""In Slack, through the real Bolt app with signed requests: a person corrects a wrong fact, a reviewer
approves it as a fact, the next person asking a paraphrase gets the team answer cited, before any
training, and the document that caused it is listed in /apprenti status."""

from __future__ import annotations

import copy
import json

import pytest

from bot import messages as text
from bot.cli.rag import ingest_paths
from bot.slack import blocks as ui
from storage.examples import get_example, list_examples
from storage.interactions import recent_interactions
from storage.knowledge import open_suspects
from tests.bot.slack.conftest import ADMIN, MEMBER, REVIEW_CHANNEL, REVIEWER, FakeLLM, make_harness
from tests.slack_fakes import form_body, template

HANDBOOK = (
    "# IT handbook\n\n## VPN\nThe VPN client is Cisco AnyConnect. Install it from the software center.\n"
)


class EchoFirstLine(FakeLLM):
    """Answers with the last user turn's first line: the passage the plain layout shows."""

    def generate(self, messages, track="default"):
        self.calls.append(messages)
        from bot.llm import Completion

        return Completion(
            text=messages[-1]["content"].split("\n")[0].removeprefix("Text: "),
            adapter=None,
            prompt_tokens=10,
            completion_tokens=5,
        )


@pytest.fixture
def h(fake_slack, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "it.md").write_text(HANDBOOK)
    harness = make_harness(
        fake_slack,
        tmp_path,
        llm=EchoFirstLine(),
        plugins=["rag", "fewshot"],
        pii="off",
        prompt_layout="plain",
        document_roots=[str(docs)],
    )
    ingest_paths(harness.runtime.settings, [str(docs)], collection="handbook")
    yield harness
    harness.close()


def submit_correction(h, metadata, corrected, kind=None):
    payload = copy.deepcopy(template("view_submission.json"))
    payload["user"]["id"] = MEMBER
    payload["view"]["callback_id"] = ui.CORRECTION_VIEW
    payload["view"]["private_metadata"] = json.dumps(metadata)
    payload["trigger_id"] = h.fresh_ts()
    values = {
        ui.ANSWER_BLOCK: {"value": {"type": "plain_text_input", "value": corrected}},
        ui.NOTE_BLOCK: {"value": {"type": "plain_text_input", "value": None}},
        ui.KIND_BLOCK: {
            "value": {"type": "radio_buttons", "selected_option": {"value": kind} if kind else None}
        },
    }
    payload["view"]["state"]["values"] = values
    return h.dispatch(form_body(payload))


def choose_kind(h, example_id, kind, user=REVIEWER):
    payload = copy.deepcopy(template("block_actions_button.json"))
    payload["user"]["id"] = user
    payload["channel"]["id"] = REVIEW_CHANNEL
    payload["container"].update(
        {"channel_id": REVIEW_CHANNEL, "message_ts": "111.222", "is_ephemeral": False}
    )
    payload["response_url"] = h.fake.response_url(f"kind-{user}")
    payload["trigger_id"] = h.fresh_ts()
    action = payload["actions"][0]
    action.pop("value", None)
    action.update(
        {
            "type": "static_select",
            "action_id": ui.REVIEW_KIND,
            "block_id": f"apprenti-review:{example_id}",
            "selected_option": {
                "value": f"{example_id}:{kind}",
                "text": {"type": "plain_text", "text": kind},
            },
            "action_ts": h.fresh_ts(),
        }
    )
    return h.dispatch(form_body(payload))


def ask(h, question):
    h.send_event(h.event(text=f"<@UAPPRENTI> {question}"))
    h.settle()
    return recent_interactions(h.engine)[0]


def test_a_fact_corrected_in_slack_answers_the_next_person_with_the_team_citation(h):
    row = ask(h, "Which VPN client do we use?")
    assert row.sources[0]["kind"] == "document" and "AnyConnect" in row.answer

    h.action(ui.CORRECT, str(row.id), user=MEMBER)
    view = h.fake.wait_for("views.open")[-1]["view"]
    kinds = [b for b in view["blocks"] if b.get("block_id") == ui.KIND_BLOCK]
    assert [o["value"] for o in kinds[0]["element"]["options"]] == ["fact", "behaviour", "both"]
    metadata = json.loads(view["private_metadata"])

    # left empty, the kind is suggested from the edit: a changed tool name is a fact
    response = submit_correction(
        h, metadata, "The VPN client is WireGuard. Install it from the software center."
    )
    assert response.status == 200
    h.settle()
    (example,) = list_examples(h.engine)
    assert example.kind == "fact" and example.kind_source == "suggested"
    review_post = h.fake.wait_for("chat.postMessage", where=lambda c: c["channel"] == REVIEW_CHANNEL)[0]
    assert "suggested" in json.dumps(review_post["blocks"])

    # the reviewer switches it to behaviour and back in one click each, then approves
    choose_kind(h, example.id, "behaviour")
    h.settle()
    assert get_example(h.engine, example.id).kind == "behaviour"
    choose_kind(h, example.id, "fact")
    h.settle()
    h.action(ui.APPROVE, str(example.id), user=REVIEWER, channel=REVIEW_CHANNEL)
    h.settle()
    approved = get_example(h.engine, example.id)
    assert approved.status == "approved" and approved.kind == "fact" and approved.indexed_at is not None
    update = [u for u in h.fake.calls("chat.update") if u["channel"] == REVIEW_CHANNEL][-1]
    assert text.SLACK_REVIEW_FACT_INDEXED in json.dumps(update["blocks"], ensure_ascii=False)

    # the next person asks a paraphrase: answered from the team answer, cited with who approved it
    h.fake.reset()
    answered = ask(h, "What VPN software should I install?")
    assert answered.sources[0]["kind"] == "team_answer" and "WireGuard" in answered.answer
    shown = json.dumps([c for c in h.fake.calls() if c.get("channel") not in (REVIEW_CHANNEL, "CADMIN")])
    assert f"team answer, approved by <@{REVIEWER}>" in shown

    # the document that produced the wrong answer is listed for its owner
    assert [s.source for s in open_suspects(h.engine)] == ["it.md"]
    h.command("status", user=ADMIN)
    status = json.dumps([c.get("text") for c in h.fake.wait_for("response_url")], ensure_ascii=False)
    assert (
        "Documents that produced corrected answers" in status and "it.md" in status and "WireGuard" in status
    )


def test_a_member_cannot_change_the_kind(h):
    row = ask(h, "Which VPN client do we use?")
    h.action(ui.CORRECT, str(row.id), user=MEMBER)
    metadata = json.loads(h.fake.wait_for("views.open")[-1]["view"]["private_metadata"])
    submit_correction(h, metadata, "Be nicer please: the VPN client is Cisco AnyConnect.", kind="behaviour")
    h.settle()
    (example,) = list_examples(h.engine)
    assert example.kind == "behaviour" and example.kind_source == "author"
    choose_kind(h, example.id, "fact", user=MEMBER)
    h.settle()
    assert get_example(h.engine, example.id).kind == "behaviour"
