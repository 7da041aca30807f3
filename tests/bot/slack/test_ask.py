"""Asking: mentions, DMs, thread follow-ups, the assistant pane, /apprenti ask; retries and signatures."""

from __future__ import annotations

import json
import time

from bot import messages as text
from bot.llm import Completion, Stream
from bot.slack import blocks as ui
from storage.interactions import recent_interactions
from tests.bot.slack.conftest import MEMBER, FakeLLM


def answer_blocks(call) -> list[dict]:
    return call.get("blocks") or []


def test_mention_is_answered_in_thread_with_blocks(slack):
    body = slack.event(text="<@UAPPRENTI> How do I request holidays?")
    response = slack.send_event(body)
    assert response.status == 200
    update = slack.fake.wait_for("chat.update")[0]
    placeholder = slack.fake.calls("chat.postMessage")[0]
    assert placeholder["text"] == text.SLACK_THINKING
    assert placeholder["thread_ts"] == body["event"]["ts"]
    assert update["ts"] == "1700000000.000001"
    rendered = json.dumps(update["blocks"])
    assert "Holidays are requested in the HR portal." in rendered
    actions = [b for b in update["blocks"] if b["type"] == "actions"][0]
    assert [e["action_id"] for e in actions["elements"]] == [ui.VOTE_UP, ui.VOTE_DOWN, ui.CORRECT]
    (row,) = recent_interactions(slack.engine)
    assert row.question == "How do I request holidays?"  # the mention is stripped
    assert actions["elements"][0]["value"] == str(row.id)
    assert row.thread_ts == body["event"]["ts"] and row.user_id == body["event"]["user"]


def test_retry_of_the_same_event_is_dropped(slack):
    body = slack.event(text="<@UAPPRENTI> once please")
    assert slack.send_event(body).status == 200
    assert slack.send_event(body, retry=1).status == 200
    assert slack.send_event(body, retry=2).status == 200
    slack.settle()
    assert len(slack.fake.calls("chat.update")) == 1
    assert len(recent_interactions(slack.engine)) == 1


def test_forged_and_stale_signatures_are_refused_and_nothing_stored(slack):
    body = json.dumps(slack.event(text="<@UAPPRENTI> hello"))
    assert slack.dispatch(body, secret="not-the-secret").status == 401
    assert slack.dispatch(body, timestamp=int(time.time()) - 10 * 60).status == 401
    headers = {"content-type": "application/json", "x-slack-request-timestamp": str(int(time.time()))}
    assert slack.dispatch(body, headers=headers).status == 401
    slack.settle()
    assert recent_interactions(slack.engine) == []
    assert slack.fake.calls("chat.postMessage") == []
    from storage.db import session_scope
    from storage.models import ProcessedEvent

    with session_scope(slack.engine) as session:
        assert session.query(ProcessedEvent).count() == 0


def test_direct_message_and_the_bots_own_messages(slack):
    slack.send_event(slack.event("message_im_event.json"))
    slack.fake.wait_for("chat.update")
    # the bot's own message (Bolt knows its user id from auth.test) and other bots are ignored
    slack.send_event(slack.event("message_im_event.json", user="UAPPRENTI"))
    slack.send_event(slack.event("message_im_event.json", user="UOTHER", bot_id="BOTHER"))
    slack.settle()
    assert len(recent_interactions(slack.engine)) == 1


def test_follow_up_only_in_threads_the_bot_answered(slack):
    first = slack.event("message_channel_event.json", text="a chat between people", thread_ts="1.000")
    slack.send_event(first)
    slack.settle()
    assert recent_interactions(slack.engine) == []
    mention = slack.event(text="<@UAPPRENTI> first question")
    slack.send_event(mention)
    slack.fake.wait_for("chat.update")
    follow = slack.event("message_channel_event.json", text="and a follow-up?", thread_ts=mention["event"]["ts"])
    slack.send_event(follow)
    slack.fake.wait_for("chat.update", 2)
    # a mention inside the thread is answered once, through app_mention
    again = slack.event("message_channel_event.json", text="<@UAPPRENTI> third", thread_ts=mention["event"]["ts"])
    slack.send_event(again)
    slack.settle()
    assert [r.question for r in recent_interactions(slack.engine)] == ["and a follow-up?", "first question"]


def test_assistant_pane(slack):
    slack.send_event(slack.event("assistant_thread_started_event.json"))
    prompts = slack.fake.wait_for("assistant.threads.setSuggestedPrompts")[0]
    assert prompts["channel_id"] == "D111" and len(prompts["prompts"]) == len(text.SLACK_SUGGESTED_PROMPTS)
    slack.send_event(slack.event("message_im_thread_event.json"))
    status = slack.fake.wait_for("assistant.threads.setStatus")[0]
    assert status["status"] == text.SLACK_STATUS_THINKING and status["thread_ts"] == "1726133698.626339"
    posted = slack.fake.wait_for("chat.postMessage", 2)[-1]
    assert posted["thread_ts"] == "1726133698.626339" and "blocks" in posted


def test_slash_ask_is_private_with_share(slack):
    response = slack.command("ask what is our VPN?")
    assert response.status == 200
    reply = slack.fake.wait_for("response_url")[0]
    assert reply["response_type"] == "ephemeral"
    elements = [b for b in reply["blocks"] if b["type"] == "actions"][0]["elements"]
    assert elements[-1]["action_id"] == ui.SHARE
    (row,) = recent_interactions(slack.engine)
    slack.action(ui.SHARE, str(row.id), user=MEMBER)
    shared = slack.fake.wait_for("chat.postMessage")[0]
    assert shared["channel"] == "C111" and f"<@{MEMBER}>" in json.dumps(shared["blocks"])
    slack.fake.wait_for("response_url", where=lambda c: c.get("delete_original"))


def test_model_failure_and_crash_are_told_in_the_thread(slack):
    slack.llm.queue = [Completion(text="", error="TimeoutError: no answer in 60 s"), RuntimeError("index on fire")]
    slack.send_event(slack.event(text="<@UAPPRENTI> one"))
    slack.send_event(slack.event(text="<@UAPPRENTI> two"))
    updates = slack.fake.wait_for("chat.update", 2)
    texts = " ".join(json.dumps(u["blocks"]) for u in updates)
    assert "TimeoutError: no answer in 60 s" in texts
    assert "RuntimeError: index on fire" in texts
    for update in updates:  # nothing to rate or correct when there is no answer
        assert not [b for b in update["blocks"] if b["type"] == "actions"]


def test_long_answer_is_split_under_slack_limits(slack):
    slack.llm.reply = ("A sentence about the policy. " * 40 + "\n\n") * 20  # ~24k characters
    slack.send_event(slack.event(text="<@UAPPRENTI> tell me everything"))
    slack.settle()
    messages = slack.fake.calls("chat.update") + slack.fake.calls("chat.postMessage")[1:]
    assert len(messages) >= 2
    for message in messages:
        assert len(message["blocks"]) <= 50
        for block in message["blocks"]:
            if block["type"] == "section":
                assert len(block["text"]["text"]) <= 3000
    joined = "".join(b["text"]["text"] for m in messages for b in m["blocks"] if b.get("block_id", "").startswith(
        "apprenti-text:"))
    assert joined.count("A sentence about the policy.") == 800


def test_ephemeral_profile_answers_privately(fake_slack, tmp_path):
    from tests.bot.slack.conftest import make_harness

    config = tmp_path / "apprenti.yaml"
    config.write_text("default:\n  mode: prompt\nchannels:\n  CSECRET:\n    ephemeral: true\n")
    harness = make_harness(fake_slack, tmp_path, config=config)
    harness.send_event(harness.event(text="<@UAPPRENTI> private?", channel="CSECRET"))
    ephemeral = fake_slack.wait_for("chat.postEphemeral")[0]
    assert ephemeral["user"] == "W222" and ephemeral["channel"] == "CSECRET"
    assert [e["action_id"] for e in ephemeral["blocks"][-1]["elements"]][-1] == ui.SHARE
    harness.settle()
    assert fake_slack.calls("chat.postMessage") == []
    harness.close()


class SlowStreamLLM(FakeLLM):
    """Writes its answer a word at a time, slowly, as a streaming backend does."""

    def stream(self, messages, track="default"):
        words = "Holidays are requested in the HR portal under Absences.".split()

        def pieces():
            for word in words:
                time.sleep(0.25)
                yield word + " "

        return Stream(pieces, lambda written, failure: Completion(text=written.strip()))


def test_answer_is_streamed_into_the_placeholder(fake_slack, tmp_path):
    from tests.bot.slack.conftest import make_harness

    harness = make_harness(fake_slack, tmp_path, llm=SlowStreamLLM())
    try:
        body = harness.event(text="<@UAPPRENTI> holidays?")
        harness.send_event(body)
        harness.settle()
        updates = fake_slack.calls("chat.update")
        live = [u for u in updates if u["blocks"][0].get("block_id") == ui.LIVE_BLOCK]
        final = [u for u in updates if u["blocks"][0].get("block_id") != ui.LIVE_BLOCK]
        assert live, "the answer shows up while it is written"
        assert live[0]["blocks"][0]["text"]["text"].endswith(" …")
        assert len(final) == 1 and updates[-1] is final[0]  # the full answer comes last
        assert "Holidays are requested in the HR portal under Absences." in json.dumps(final[0]["blocks"])
        assert {u["ts"] for u in updates} == {fake_slack.calls("chat.postMessage")[0]["_response"]["ts"]}
    finally:
        harness.close()


def test_answer_slack_refuses_is_reported_to_the_asker(slack):
    slack.fake.fail("chat.update", "channel_not_found")
    body = slack.event(text="<@UAPPRENTI> hello?")
    slack.send_event(body)
    dm = slack.fake.wait_for("chat.postMessage", where=lambda c: c["channel"] == body["event"]["user"])[0]
    assert "channel_not_found" in dm["text"]
