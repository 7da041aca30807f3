"""The agent experience: the Chat tab, the viewed channel's profile, native feedback buttons, and
admin actions from the App Home (slash commands do not work inside agent threads)."""

from __future__ import annotations

import json

import pytest

from bot import messages as text
from bot.slack import blocks as ui
from storage.adapters import list_adapters
from storage.audit import list_events
from storage.interactions import get_interaction, recent_interactions
from tests.bot.slack.conftest import ADMIN, MEMBER, make_harness
from tests.bot.slack.test_commands_home import add_adapter

CHANNEL_CONTEXT = {"entities": [{"type": "slack#/types/channel_id", "value": "CSALES", "team_id": "T111"}]}


@pytest.fixture
def agent(fake_slack, tmp_path):
    config = tmp_path / "apprenti.yaml"
    config.write_text(
        "default:\n  mode: prompt\nchannels:\n  CSALES:\n    track: sales\n    tone: friendly\n"
    )
    harness = make_harness(fake_slack, tmp_path, config=config)
    yield harness
    harness.close()


def home_event(h, tab: str, **extra):
    body = h.event("app_mention_event.json")
    body["event"] = {
        "type": "app_home_opened",
        "user": MEMBER,
        "channel": "D111",
        "tab": tab,
        "event_ts": "1.2",
        **extra,
    }
    return body


def replies(h) -> str:
    """What was said privately through response_url."""
    return " ".join(c.get("text") or "" for c in h.fake.calls("response_url"))


def dm(h, **fields):
    h.send_event(h.event("message_im_event.json", **fields))
    h.settle()
    return recent_interactions(h.engine)[0]


def test_chat_tab_suggests_prompts_and_the_home_tab_is_the_dashboard(agent):
    agent.send_event(home_event(agent, "messages", context=CHANNEL_CONTEXT))
    prompts = agent.fake.wait_for("assistant.threads.setSuggestedPrompts")[0]
    assert prompts["channel_id"] == "D111" and "thread_ts" not in prompts
    assert [(p["title"], p["message"]) for p in prompts["prompts"]] == list(text.SLACK_SUGGESTED_PROMPTS)
    agent.settle()
    assert agent.fake.calls("views.publish") == []
    agent.send_event(home_event(agent, "home"))
    agent.fake.wait_for("views.publish")
    # the context of the Chat tab already selects the viewed channel's profile
    assert dm(agent).track == "sales"


def test_the_viewed_channels_profile_applies_to_a_dm(agent):
    assert dm(agent).track == "default"  # nothing viewed: the DM's own profile
    body = agent.event("message_im_event.json")
    body["event"] = {
        "type": "app_context_changed",
        "channel": "D111",
        "user": "W222",
        "context": CHANNEL_CONTEXT,
        "event_ts": "1.3",
    }
    agent.send_event(body)
    agent.settle()
    row = dm(agent, text="What is our discount policy?")
    assert (row.track, row.channel_id) == ("sales", "D111")  # the answer stays in the DM
    assert agent.fake.streams()[-1]["channel"] == "D111"


def test_context_sent_with_the_message_itself(agent):
    row = dm(
        agent,
        context={
            "entities": [
                {
                    "type": "slack#/types/message_context",
                    "value": {"channel_id": "CSALES", "message_ts": "1.0"},
                }
            ]
        },
    )
    assert row.track == "sales"


def test_the_older_assistant_pane_through_bolts_assistant(agent):
    started = agent.event("assistant_thread_started_event.json")
    started["event"]["assistant_thread"]["context"]["channel_id"] = "CSALES"
    agent.send_event(started)
    agent.fake.wait_for("assistant.threads.setSuggestedPrompts")
    greeting = agent.fake.wait_for("chat.postMessage")[0]
    assert greeting["text"] == text.SLACK_ASSISTANT_GREETING and greeting["thread_ts"] == "1726133698.626339"
    agent.send_event(agent.event("message_im_thread_event.json"))
    agent.settle()
    (row,) = recent_interactions(agent.engine)
    assert row.track == "sales" and row.thread_ts == "1726133698.626339"
    status = agent.fake.calls("assistant.threads.setStatus")[0]
    assert status["thread_ts"] == "1726133698.626339"
    assert agent.fake.calls("chat.stopStream")[0]["channel"] == "D111"
    # the pane's context changes: Bolt's default handler saves it in Apprenti's store
    changed = agent.event("assistant_thread_started_event.json", type="assistant_thread_context_changed")
    changed["event"]["assistant_thread"]["context"]["channel_id"] = "COTHER"
    agent.send_event(changed)
    agent.settle()
    assert agent.services.viewed.viewed("D111", "1726133698.626339") == "COTHER"


def test_thumbs_down_records_the_vote_and_offers_the_correction(agent):
    row = dm(agent)
    stop = agent.fake.calls("chat.stopStream")[0]
    feedback = [b for b in stop["blocks"] if b["type"] == "context_actions"][0]["elements"][0]
    up, down = feedback["positive_button"]["value"], feedback["negative_button"]["value"]
    agent.action(ui.FEEDBACK, up, user="U1", channel="D111")
    agent.action(ui.FEEDBACK, up, user="U2", channel="D111")
    agent.settle()
    assert get_interaction(agent.engine, row.id).feedback == 1
    agent.action(ui.FEEDBACK, down, user="U1", channel="D111")  # U1 changes their mind: last write wins
    agent.action(ui.FEEDBACK, down, user="U2", channel="D111")
    agent.settle()
    stored = get_interaction(agent.engine, row.id)
    assert stored.votes == {"U1": -1, "U2": -1} and stored.feedback == -1
    views = agent.fake.wait_for("views.open", 2)
    view = views[0]["view"]
    assert (
        view["callback_id"] == ui.CORRECTION_VIEW
        and view["blocks"][0]["text"]["text"] == text.SLACK_FEEDBACK_DOWN_INTRO
    )
    assert json.loads(view["private_metadata"])["interaction"] == row.id
    assert text.SLACK_FEEDBACK_THANKS in replies(agent)
    # a correction submitted from that modal goes to review as before
    agent.submit_view(
        ui.CORRECTION_VIEW,
        {ui.ANSWER_BLOCK: "Ask HR first.", ui.NOTE_BLOCK: None},
        json.loads(view["private_metadata"]),
        user="U1",
    )
    agent.fake.wait_for("chat.postMessage", where=lambda c: c["channel"] == "CREVIEW")


def test_feedback_on_an_erased_answer_or_a_bad_value(agent):
    agent.action(ui.FEEDBACK, "down:999", user=MEMBER)
    agent.action(ui.FEEDBACK, "sideways", user=MEMBER)
    agent.settle()
    assert text.SLACK_ANSWER_GONE in replies(agent)
    assert agent.fake.calls("views.open") == []


HOME = {"type": "home", "id": "VHOME"}


@pytest.mark.parametrize("user, allowed", [(ADMIN, True), (MEMBER, False)])
def test_home_rollback_is_for_admins_only(slack, tmp_path, user, allowed):
    folder = tmp_path / "adapters"
    add_adapter(slack.engine, 1, "retired", folder=folder)
    add_adapter(slack.engine, 2, "active", folder=folder)
    response, _ = slack.action(ui.ROLLBACK, "default", user=user, view=HOME)
    assert response.status == 200
    slack.settle()
    active = {a.name for a in list_adapters(slack.engine) if a.status == "active"}
    told = json.dumps(slack.fake.calls("chat.postMessage"))  # no response_url from a Home tab: a DM
    if allowed:
        assert active == {"default/v1"} and "now serves *default/v1*" in told
        assert slack.fake.calls("views.publish"), "the home is refreshed after the click"
        assert "adapter.rollback" in [e.action for e in list_events(slack.engine)]
    else:
        assert active == {"default/v2"} and "admin" in told
        assert ("slack.denied", user) in [(e.action, e.actor) for e in list_events(slack.engine)]


def test_status_button_on_the_home_and_the_reports(slack):
    add_adapter(slack.engine, metrics={"rougeL": 0.5})
    slack.action(ui.STATUS, "all", user=ADMIN, view=HOME)
    slack.action(ui.STATUS, "default", user=MEMBER)
    slack.settle()
    assert "default/v1" in json.dumps(slack.fake.calls("chat.postMessage"))  # the admin, by DM
    assert "status" in replies(slack) and ("slack.denied", MEMBER) in [
        (e.action, e.actor) for e in list_events(slack.engine)
    ]


def test_home_lists_the_admin_buttons(fake_slack, tmp_path):
    h = make_harness(fake_slack, tmp_path)
    try:
        from bot.slack.home import home_view

        view = json.dumps(home_view(h.services, ADMIN))
        for action in (ui.STATUS, ui.RETRAIN, ui.ROLLBACK):
            assert action in view
        assert ui.STATUS not in json.dumps(home_view(h.services, MEMBER))
    finally:
        h.close()
