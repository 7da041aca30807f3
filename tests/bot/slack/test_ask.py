"""Asking: mentions, DMs, thread follow-ups, /apprenti ask; answers streamed with Slack's streaming
API (start, appends, stop with the tail), Markdown rendered, failures told; retries and signatures."""

from __future__ import annotations

import json
import time

from bot import messages as text
from bot.llm import Completion, Stream
from bot.slack import blocks as ui
from bot.slack.standin import final_message, message_text
from storage.interactions import recent_interactions
from tests.bot.slack.conftest import MEMBER, FakeLLM, make_harness


def stops(fake, n=1):
    return fake.wait_for("chat.stopStream", n)


def mrkdwn_texts(value) -> list[str]:
    """Every mrkdwn text object in a payload (Markdown must never reach one unconverted)."""
    if isinstance(value, dict):
        found = (
            [value["text"]] if value.get("type") == "mrkdwn" and isinstance(value.get("text"), str) else []
        )
        return found + [t for v in value.values() for t in mrkdwn_texts(v)]
    if isinstance(value, list):
        return [t for v in value for t in mrkdwn_texts(v)]
    return []


def feedback_values(blocks: list[dict]) -> tuple[str, str]:
    (block,) = [b for b in blocks if b["type"] == "context_actions"]
    (element,) = block["elements"]
    assert element["type"] == "feedback_buttons" and element["action_id"] == ui.FEEDBACK
    return element["positive_button"]["value"], element["negative_button"]["value"]


def test_mention_is_streamed_in_its_thread_with_the_tail(slack):
    body = slack.event(text="<@UAPPRENTI> How do I request holidays?")
    assert slack.send_event(body).status == 200
    stop = stops(slack.fake)[0]
    start = slack.fake.calls("chat.startStream")[0]
    status = slack.fake.calls("assistant.threads.setStatus")[0]
    thread = body["event"]["ts"]
    assert (start["channel"], start["thread_ts"]) == (body["event"]["channel"], thread)
    assert (
        start["recipient_user_id"] == body["event"]["user"] and start["recipient_team_id"] == body["team_id"]
    )
    assert status["thread_ts"] == thread and status["loading_messages"] == list(text.SLACK_LOADING_MESSAGES)
    (row,) = recent_interactions(slack.engine)
    assert row.question == "How do I request holidays?"  # the mention is stripped
    assert row.thread_ts == thread and row.user_id == body["event"]["user"]
    assert feedback_values(stop["blocks"]) == (f"up:{row.id}", f"down:{row.id}")
    assert ui.CORRECT in json.dumps(stop["blocks"])
    shown = final_message(slack.fake, body["event"]["channel"], thread)
    assert shown["streamed"] and shown["stopped"]
    assert "Holidays are requested in the HR portal." in message_text(shown)
    assert slack.fake.calls("chat.postMessage") == [] and slack.fake.calls("chat.update") == []


def test_retry_of_the_same_event_is_dropped(slack):
    body = slack.event(text="<@UAPPRENTI> once please")
    assert slack.send_event(body).status == 200
    assert slack.send_event(body, retry=1).status == 200
    assert slack.send_event(body, retry=2).status == 200
    slack.settle()
    assert len(slack.fake.calls("chat.startStream")) == 1 and len(slack.fake.calls("chat.stopStream")) == 1
    assert len(recent_interactions(slack.engine)) == 1


def test_forged_and_stale_signatures_are_refused_and_nothing_stored(slack):
    body = json.dumps(slack.event(text="<@UAPPRENTI> hello"))
    assert slack.dispatch(body, secret="not-the-secret").status == 401
    assert slack.dispatch(body, timestamp=int(time.time()) - 10 * 60).status == 401
    headers = {"content-type": "application/json", "x-slack-request-timestamp": str(int(time.time()))}
    assert slack.dispatch(body, headers=headers).status == 401
    slack.settle()
    assert recent_interactions(slack.engine) == []
    assert slack.fake.calls("chat.startStream") == [] and slack.fake.calls("chat.postMessage") == []
    from storage.db import session_scope
    from storage.models import SlackEvent

    with session_scope(slack.engine) as session:
        assert session.query(SlackEvent).count() == 0  # never queued


def test_direct_message_and_the_bots_own_messages(slack):
    body = slack.event("message_im_event.json")
    slack.send_event(body)
    stop = stops(slack.fake)[0]
    start = slack.fake.calls("chat.startStream")[0]
    assert start["channel"] == "D111" and start["thread_ts"] == body["event"]["ts"]  # the DM's own thread
    assert stop["ts"] == start["_response"]["ts"]
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
    stops(slack.fake)
    follow = slack.event(
        "message_channel_event.json", text="and a follow-up?", thread_ts=mention["event"]["ts"]
    )
    slack.send_event(follow)
    stops(slack.fake, 2)
    # a mention inside the thread is answered once, through app_mention
    again = slack.event(
        "message_channel_event.json", text="<@UAPPRENTI> third", thread_ts=mention["event"]["ts"]
    )
    slack.send_event(again)
    slack.settle()
    assert [r.question for r in recent_interactions(slack.engine)] == ["and a follow-up?", "first question"]


def test_slash_ask_is_private_markdown_with_share(slack):
    slack.llm.reply = "## Steps\n\n1. Open the **VPN** app."
    assert slack.command("ask what is our VPN?").status == 200
    reply = slack.fake.wait_for("response_url")[0]
    assert reply["response_type"] == "ephemeral"
    assert reply["blocks"][0] == {
        "type": "markdown",
        "block_id": reply["blocks"][0]["block_id"],
        "text": "## Steps\n\n1. Open the **VPN** app.",
    }
    elements = [b for b in reply["blocks"] if b["type"] == "actions"][0]["elements"]
    assert elements[-1]["action_id"] == ui.SHARE
    assert not [t for t in mrkdwn_texts(reply) if "##" in t or "**" in t]
    (row,) = recent_interactions(slack.engine)
    slack.action(ui.SHARE, str(row.id), user=MEMBER)
    shared = slack.fake.wait_for("chat.postMessage")[0]
    assert shared["channel"] == "C111" and f"<@{MEMBER}>" in json.dumps(shared["blocks"])
    slack.fake.wait_for("response_url", where=lambda c: c.get("delete_original"))


def test_model_failure_and_crash_are_told_in_the_thread(slack):
    slack.llm.queue = [
        Completion(text="", error="TimeoutError: no answer in 60 s"),
        RuntimeError("index on fire"),
    ]
    slack.send_event(slack.event(text="<@UAPPRENTI> one"))
    slack.send_event(slack.event(text="<@UAPPRENTI> two"))
    stopped = stops(slack.fake, 2)
    shown = " ".join(m["text"] for m in slack.fake.streams())
    # Both are told with an error id; the backend's and the exception's words stay in the log.
    assert shown.count("error id `") == 2 and "TimeoutError" not in shown and "index on fire" not in shown
    for stop in stopped:  # nothing to rate or correct when there is no answer
        assert not [b for b in stop["blocks"] if b["type"] in ("actions", "context_actions")]


def test_long_answer_continues_in_new_streamed_messages(slack):
    slack.llm.reply = ("A sentence about the policy. " * 40 + "\n\n") * 20  # ~24k characters
    slack.send_event(slack.event(text="<@UAPPRENTI> tell me everything"))
    slack.settle()
    streams = slack.fake.streams()
    assert len(streams) >= 3 and all(s["stopped"] for s in streams)
    assert all(len(s["text"]) <= 12_000 for s in streams)
    assert "".join(s["text"] for s in streams).count("A sentence about the policy.") == 800
    assert [bool(s["blocks"]) for s in streams] == [False] * (len(streams) - 1) + [
        True
    ]  # the tail comes last


def test_ephemeral_profile_answers_privately_in_markdown(fake_slack, tmp_path):
    config = tmp_path / "apprenti.yaml"
    config.write_text("default:\n  mode: prompt\nchannels:\n  CSECRET:\n    ephemeral: true\n")
    harness = make_harness(fake_slack, tmp_path, config=config)
    try:
        harness.send_event(harness.event(text="<@UAPPRENTI> private?", channel="CSECRET"))
        ephemeral = fake_slack.wait_for("chat.postEphemeral")[0]
        assert ephemeral["user"] == "W222" and ephemeral["channel"] == "CSECRET"
        assert ephemeral["blocks"][0]["type"] == "markdown"
        assert [e["action_id"] for e in ephemeral["blocks"][-1]["elements"]][-1] == ui.SHARE
        harness.settle()
        assert fake_slack.calls("chat.postMessage") == [] and fake_slack.calls("chat.startStream") == []
    finally:
        harness.close()


class SlowStreamLLM(FakeLLM):
    """Writes its answer a word at a time, slowly, as a streaming backend does."""

    words = (
        "## Holidays\n\nHolidays are **requested** in the HR portal under Absences; "
        "your manager approves them within two days. Plan long ones early, tell your team, and "
        "check the shared calendar first so that two people of one team are not away at once."
    ).split(" ")

    def stream(self, messages, track="default"):
        def pieces():
            for word in self.words:
                time.sleep(0.15)
                yield word + " "

        return Stream(pieces, lambda written, failure: Completion(text=written.strip()))


def test_a_dm_is_streamed_end_to_end(fake_slack, tmp_path):
    harness = make_harness(fake_slack, tmp_path, llm=SlowStreamLLM())
    try:
        body = harness.event("message_im_event.json", text="How do I take holidays?")
        harness.send_event(body)
        harness.settle(60)  # the answer takes seconds to write
        methods = [c["_method"] for c in fake_slack.calls() if c["_method"].startswith("chat.")]
        assert methods[0] == "chat.startStream" and methods[-1] == "chat.stopStream"
        assert "chat.appendStream" in methods, "the answer shows up while it is written"
        (stream,) = fake_slack.streams()
        assert stream["text"].strip() == " ".join(SlowStreamLLM.words).strip()  # the Markdown, as written
        (row,) = recent_interactions(harness.engine)
        assert feedback_values(stream["blocks"]) == (f"up:{row.id}", f"down:{row.id}")
        assert ui.CORRECT in json.dumps(stream["blocks"])
        assert not [t for c in fake_slack.calls() for t in mrkdwn_texts(c) if "##" in t or "**" in t]
        title = fake_slack.calls("assistant.threads.setTitle")[0]
        assert title["title"] == "How do I take holidays?" and title["thread_ts"] == body["event"]["ts"]
    finally:
        harness.close()


def test_a_stream_that_fails_midway_is_told_and_nothing_is_lost(fake_slack, tmp_path):
    harness = make_harness(fake_slack, tmp_path, llm=SlowStreamLLM())
    try:
        fake_slack.fail("chat.appendStream", "message_not_in_streaming_state", times=5)
        body = harness.event(text="<@UAPPRENTI> holidays?")
        harness.send_event(body)
        harness.settle(60)  # the answer takes seconds to write
        assert fake_slack.calls("chat.startStream"), "the answer had started to show"
        notice, answer = [
            m for m in fake_slack.messages(body["event"]["channel"], body["event"]["ts"]) if not m["streamed"]
        ]
        assert "message_not_in_streaming_state" in message_text(
            notice
        ) and "Nothing was lost" in message_text(notice)
        assert answer["blocks"][0] == {
            "type": "markdown",
            "block_id": answer["blocks"][0]["block_id"],
            "text": " ".join(SlowStreamLLM.words).strip(),
        }
        (row,) = recent_interactions(harness.engine)
        assert feedback_values(answer["blocks"]) == (f"up:{row.id}", f"down:{row.id}")
    finally:
        harness.close()


def test_a_channel_refusing_streams_gets_markdown_blocks(slack):
    slack.fake.fail("chat.startStream", "not_allowed_token_type")
    body = slack.event(text="<@UAPPRENTI> hi")
    slack.send_event(body)
    posted = slack.fake.wait_for("chat.postMessage")[0]
    assert posted["thread_ts"] == body["event"]["ts"] and posted["blocks"][0]["type"] == "markdown"
    assert len(slack.fake.calls("chat.postMessage")) == 1  # no "interrupted" notice: nothing was shown


def test_markdown_is_rendered_never_literal(slack):
    slack.llm.reply = (
        "## Summary\n\n**Holidays** are requested in the [HR portal](https://hr.example.com).\n\n"
        "- ask early\n- tell your team\n\nPing <!channel> if urgent."
    )
    body = slack.event(text="<@UAPPRENTI> summarise the holiday policy")
    slack.send_event(body)
    stop = stops(slack.fake)[0]
    (stream,) = slack.fake.streams()
    assert stream["text"].startswith("## Summary\n\n**Holidays**")  # Slack renders it
    assert "<!channel>" not in stream["text"]  # model output cannot ping a channel
    assert not [t for c in slack.fake.calls() for t in mrkdwn_texts(c) if "##" in t or "**" in t]
    assert stop["blocks"]


def test_answer_slack_refuses_is_reported_to_the_asker(slack):
    slack.fake.fail("chat.startStream", "channel_not_found")
    slack.fake.fail("chat.postMessage", "channel_not_found")
    body = slack.event(text="<@UAPPRENTI> hello?")
    slack.send_event(body)
    dm = slack.fake.wait_for("chat.postMessage", where=lambda c: c["channel"] == body["event"]["user"])[0]
    assert "channel_not_found" in dm["text"]
