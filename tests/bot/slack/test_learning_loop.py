"""Corrections and review through the real Bolt app: ask → Correct → modal → pending example →
review channel → Approve / Edit & approve / Reject, with plugin hooks and two clicks approving once."""

from __future__ import annotations

import json

import pytest

from bot import messages as text
from bot.slack import blocks as ui
from plugins.hookspecs import hookimpl
from storage.audit import list_events
from storage.examples import get_example, list_examples
from storage.interactions import get_interaction, recent_interactions
from tests.bot.slack.conftest import GROUP_REVIEWER, MEMBER, REVIEW_CHANNEL, REVIEWER, make_harness
from tests.slack_fakes import BOT_ID, form_body


class Recorder:
    def __init__(self):
        self.changes = []

    @hookimpl
    def example_changed(self, example, action):
        self.changes.append((action, example["id"], example["status"], example["answer"]))


@pytest.fixture
def loop(fake_slack, tmp_path):
    recorder = Recorder()
    harness = make_harness(
        fake_slack, tmp_path, plugins=["pii", "recorder"], plugins_extra={"recorder": recorder}
    )
    harness.recorder = recorder
    yield harness
    harness.close()


def ask(h, question="<@UAPPRENTI> How many days of holiday do I get?"):
    h.send_event(h.event(text=question))
    h.settle()
    return recent_interactions(h.engine)[0]


def open_correction(h, interaction_id):
    h.action(ui.CORRECT, str(interaction_id), user=MEMBER)
    view = h.fake.wait_for("views.open")[-1]["view"]
    return view, json.loads(view["private_metadata"])


def test_ask_correct_review_approve(loop):
    h = loop
    row = ask(h)
    view, metadata = open_correction(h, row.id)
    assert view["callback_id"] == ui.CORRECTION_VIEW
    assert "How many days of holiday do I get?" in view["blocks"][0]["text"]["text"]
    assert view["blocks"][1]["element"]["initial_value"] == row.answer  # pre-filled

    # empty and unchanged corrections are refused inside the modal
    for value, message in [
        ("  ", text.SLACK_CORRECT_EMPTY),
        (row.answer + "  ", text.SLACK_CORRECT_UNCHANGED),
    ]:
        response = h.submit_view(ui.CORRECTION_VIEW, {ui.ANSWER_BLOCK: value, ui.NOTE_BLOCK: None}, metadata)
        assert json.loads(response.body) == {
            "response_action": "errors",
            "errors": {ui.ANSWER_BLOCK: message},
        }
    assert list_examples(h.engine) == []

    corrected = "25 days a year, plus public holidays. Ask jane.doe@example.com for details."
    response = h.submit_view(
        ui.CORRECTION_VIEW, {ui.ANSWER_BLOCK: corrected, ui.NOTE_BLOCK: "policy 2024"}, metadata
    )
    assert response.status == 200 and not response.body
    review_post = h.fake.wait_for("chat.postMessage", where=lambda c: c["channel"] == REVIEW_CHANNEL)[0]
    thanks = h.fake.wait_for("chat.postEphemeral")[0]
    (example,) = list_examples(h.engine)
    assert example.status == "pending" and example.author_id == MEMBER and example.interaction_id == row.id
    assert "jane.doe@example.com" not in example.corrected_answer  # scrubbed before storage
    assert example.review_channel == REVIEW_CHANNEL and example.review_ts == review_post["_response"]["ts"]
    assert thanks["user"] == MEMBER and f"#{example.id}" in thanks["text"]
    assert [e["action_id"] for e in review_post["blocks"][-1]["elements"]] == [
        ui.APPROVE,
        ui.EDIT_APPROVE,
        ui.REJECT,
        ui.REVIEW_KIND,
    ]

    # a member may not approve; a reviewer (through a user group) may, and two clicks approve once
    h.action(ui.APPROVE, str(example.id), user=MEMBER, channel=REVIEW_CHANNEL)
    assert get_example(h.engine, example.id).status == "pending"
    h.action(ui.APPROVE, str(example.id), user=GROUP_REVIEWER, channel=REVIEW_CHANNEL)
    h.action(ui.APPROVE, str(example.id), user=REVIEWER, channel=REVIEW_CHANNEL)
    h.settle()
    decided = get_example(h.engine, example.id)
    assert decided.status == "approved" and decided.reviewer_id == GROUP_REVIEWER
    updates = h.fake.calls("chat.update")
    review_updates = [u for u in updates if u["channel"] == REVIEW_CHANNEL]
    assert review_updates and review_updates[0]["ts"] == example.review_ts
    assert f"Approved by <@{GROUP_REVIEWER}>" in json.dumps(review_updates[0]["blocks"])
    # the decision buttons are gone; the kind can still be changed
    actions = [
        e["action_id"] for b in review_updates[0]["blocks"] if b["type"] == "actions" for e in b["elements"]
    ]
    assert actions == [ui.REVIEW_KIND]
    told = [c["text"] for c in h.fake.calls("response_url")]
    assert any("already approved" in t for t in told)
    assert [a for a, *_ in h.recorder.changes] == ["created", "approved"]
    assert [e.action for e in list_events(h.engine, action="example.approved")] == ["example.approved"]


def test_edit_and_approve_and_reject(loop):
    h = loop
    row = ask(h)
    _, metadata = open_correction(h, row.id)
    h.submit_view(ui.CORRECTION_VIEW, {ui.ANSWER_BLOCK: "First correction", ui.NOTE_BLOCK: None}, metadata)
    row2 = ask(h, "<@UAPPRENTI> Where is the VPN guide?")
    _, metadata2 = open_correction(h, row2.id)
    h.submit_view(ui.CORRECTION_VIEW, {ui.ANSWER_BLOCK: "On the wiki", ui.NOTE_BLOCK: None}, metadata2)
    h.settle()
    first, second = list_examples(h.engine)

    h.action(ui.EDIT_APPROVE, str(first.id), user=REVIEWER, channel=REVIEW_CHANNEL)
    edit_view = h.fake.wait_for("views.open", where=lambda c: c["view"]["callback_id"] == ui.EDIT_VIEW)[0][
        "view"
    ]
    assert edit_view["blocks"][1]["element"]["initial_value"] == "First correction"
    meta = json.loads(edit_view["private_metadata"])
    assert (
        json.loads(h.submit_view(ui.EDIT_VIEW, {ui.ANSWER_BLOCK: ""}, meta, user=REVIEWER).body)[
            "response_action"
        ]
        == "errors"
    )
    assert (
        h.submit_view(ui.EDIT_VIEW, {ui.ANSWER_BLOCK: "Edited correction"}, meta, user=REVIEWER).status == 200
    )
    h.settle()  # the edit is handled in the background: let it land before the next click
    h.action(ui.REJECT, str(second.id), user=REVIEWER, channel=REVIEW_CHANNEL)
    h.settle()
    first, second = get_example(h.engine, first.id), get_example(h.engine, second.id)
    assert (first.status, first.corrected_answer) == ("approved", "Edited correction")
    assert second.status == "rejected"
    outcomes = json.dumps(
        [u["blocks"] for u in h.fake.calls("chat.update") if u["channel"] == REVIEW_CHANNEL]
    )
    assert f"Edited and approved by <@{REVIEWER}>" in outcomes and f"Rejected by <@{REVIEWER}>" in outcomes
    assert [a for a, *_ in h.recorder.changes] == ["created", "created", "edited", "rejected"]
    opened = len(h.fake.calls("views.open"))
    h.action(ui.EDIT_APPROVE, str(second.id), user=REVIEWER, channel=REVIEW_CHANNEL)
    h.settle()
    assert len(h.fake.calls("views.open")) == opened  # no modal for a decided example
    assert any(f"#{second.id} was already rejected" in c["text"] for c in h.fake.calls("response_url"))
    # a modal submitted for an example erased meanwhile says so
    gone = h.submit_view(ui.EDIT_VIEW, {ui.ANSWER_BLOCK: "x"}, {"example": 999}, user=REVIEWER)
    assert "no longer exists" in json.loads(gone.body)["errors"][ui.ANSWER_BLOCK]


def test_votes_one_per_person_and_changeable(loop):
    h = loop
    row = ask(h)
    h.action(ui.VOTE_UP, str(row.id), user="U1")
    h.action(ui.VOTE_DOWN, str(row.id), user="U2")  # at the same time as U1
    h.settle()
    h.action(ui.VOTE_DOWN, str(row.id), user="U1")  # U1 changes their mind
    h.settle()
    h.action(ui.VOTE_DOWN, str(row.id), user="U1")  # and clicking twice counts once
    h.settle()
    stored = get_interaction(h.engine, row.id)
    assert stored.votes == {"U1": -1, "U2": -1} and stored.feedback == -1
    assert len(h.fake.wait_for("response_url", 4)) == 4


def test_message_shortcut_finds_the_answer(loop):
    h = loop
    row = ask(h)
    answer_message = h.fake.calls("chat.stopStream")[0]  # the streamed answer's tail
    payload = {
        "type": "message_action",
        "callback_id": ui.CORRECT_SHORTCUT,
        "trigger_id": "1.2.3",
        "user": {"id": MEMBER},
        "channel": {"id": "C111"},
        "team": {"id": "T111"},
        "response_url": h.fake.response_url("shortcut"),
        "message": {
            "ts": answer_message["ts"],
            "text": "x",
            "blocks": answer_message["blocks"],
            "bot_id": BOT_ID,
        },
    }

    assert h.dispatch(form_body(payload)).status == 200
    view = h.fake.wait_for("views.open")[0]["view"]
    assert json.loads(view["private_metadata"])["interaction"] == row.id
    payload["message"]["blocks"] = [
        {"type": "section", "block_id": "other", "text": {"type": "mrkdwn", "text": "hi"}}
    ]
    h.dispatch(form_body(payload))
    assert text.SLACK_NOT_AN_ANSWER in h.fake.wait_for("response_url")[0]["text"]


def test_review_channel_failure_is_reported_to_the_author(loop):
    h = loop
    row = ask(h)
    _, metadata = open_correction(h, row.id)
    h.fake.fail("chat.postMessage", "channel_not_found")
    h.submit_view(ui.CORRECTION_VIEW, {ui.ANSWER_BLOCK: "Better answer", ui.NOTE_BLOCK: None}, metadata)
    thanks = h.fake.wait_for("chat.postEphemeral")[0]
    assert "channel_not_found" in thanks["text"] and "APPRENTI_REVIEW_CHANNEL" in thanks["text"]
    (example,) = list_examples(h.engine)
    assert example.review_ts is None and example.status == "pending"


def test_rate_limited_stream_stop_is_retried(loop):
    h = loop
    h.fake.fail("chat.stopStream", "ratelimited", status=429, headers={"Retry-After": "1"})
    row = ask(h)
    calls = h.fake.wait_for("chat.stopStream", 2)
    assert calls[0].get("_error") == "ratelimited" and "_error" not in calls[1]
    assert f"down:{row.id}" in json.dumps(calls[1]["blocks"])  # the tail arrived after the wait
    assert h.fake.calls("chat.postMessage") == []
