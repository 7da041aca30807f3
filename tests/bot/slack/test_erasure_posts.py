"""`/apprenti forget` through the real Bolt app: the review-channel posts about the person's
corrections are deleted through the Web API (redacted when Slack refuses the delete), and the
exports that held their data, the Slack one included, are listed."""

from __future__ import annotations

import json
import time

import pytest

from bot.erasure import REDACTED
from bot.slack import blocks as ui
from storage.audit import list_events
from storage.examples import list_examples
from storage.interactions import recent_interactions
from tests.bot.slack.conftest import ADMIN, MEMBER, REVIEW_CHANNEL, make_harness

QUESTION = "<@UAPPRENTI> How do I book the blue meeting room?"
CORRECTED = "Book the blue meeting room in the room planner, tab Rooms."


@pytest.fixture
def slack(fake_slack, tmp_path):
    harness = make_harness(fake_slack, tmp_path)
    yield harness
    harness.close()


def correct(h) -> dict:
    """MEMBER asks, clicks Correct and submits: the review post Apprenti made for it."""
    h.send_event(h.event(text=QUESTION, user=MEMBER))
    h.settle()
    row = recent_interactions(h.engine)[0]
    h.action(ui.CORRECT, str(row.id), user=MEMBER)
    view = h.fake.wait_for("views.open")[-1]["view"]
    h.submit_view(
        ui.CORRECTION_VIEW,
        {ui.ANSWER_BLOCK: CORRECTED, ui.NOTE_BLOCK: None},
        json.loads(view["private_metadata"]),
        user=MEMBER,
    )
    (post,) = h.fake.wait_for("chat.postMessage", where=lambda c: c["channel"] == REVIEW_CHANNEL)
    h.settle()
    deadline = time.monotonic() + 10  # the listener stores where the post went once Slack has answered
    while [e.review_ts for e in list_examples(h.engine)] != [post["_response"]["ts"]]:
        assert time.monotonic() < deadline, "the review post's ts was never stored"
        time.sleep(0.05)
    assert [m["ts"] for m in h.fake.messages(REVIEW_CHANNEL)] == [post["_response"]["ts"]]
    return post


def forget(h, user=MEMBER) -> str:
    seen = len(h.fake.calls("response_url"))
    h.command(f"forget <@{user}>", user=ADMIN)
    return h.fake.wait_for("response_url", seen + 1, timeout=60)[-1]["text"]


def test_forget_deletes_the_review_post(slack):
    post = correct(slack)
    reply = forget(slack)
    assert [(c["channel"], c["ts"]) for c in slack.fake.calls("chat.delete")] == [
        (REVIEW_CHANNEL, post["_response"]["ts"])
    ]
    assert slack.fake.messages(REVIEW_CHANNEL) == []
    assert "deleted" in reply and list_examples(slack.engine) == []


def test_a_refused_delete_redacts_the_post(slack):
    post = correct(slack)
    slack.fake.fail("chat.delete", "cant_delete_message")
    reply = forget(slack)
    (shown,) = slack.fake.messages(REVIEW_CHANNEL)
    assert shown["ts"] == post["_response"]["ts"]
    assert CORRECTED not in json.dumps(shown) and shown["text"] == REDACTED
    assert "redacted (delete refused: cant_delete_message)" in reply


def test_forget_lists_the_slack_export_that_held_the_data(slack):
    from storage.examples import review_example

    correct(slack)
    (example,) = list_examples(slack.engine)
    review_example(slack.engine, example.id, "approved", "UREVIEWER")
    slack.command("export", user=ADMIN)
    slack.fake.wait_for("response_url")
    (recorded,) = list_events(slack.engine, action="examples.export")
    assert recorded.details["people"] == [MEMBER] and recorded.target == f"slack:dm:{ADMIN}"

    reply = forget(slack)
    assert f"slack:dm:{ADMIN}" in reply and "delete it there" in reply
    (recorded,) = list_events(slack.engine, action="examples.export")
    assert MEMBER not in json.dumps(recorded.details)  # pseudonymised, like every audit row
