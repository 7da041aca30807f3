"""Least privilege through the real Bolt app, with signed requests: the shortcut and every answer
button act only on the bot's own messages and on interactions the clicker may see; no one approves
their own correction; members' App Home leaves out run errors; /apprenti ingest reads only inside
APPRENTI_DOCUMENT_ROOTS; the training process gets no Slack secret."""

from __future__ import annotations

import json
import os

import pytest

from bot import messages as text
from bot.slack import blocks as ui
from storage.audit import list_events
from storage.examples import add_example, get_example
from storage.interactions import add_interaction, get_interaction
from storage.runs import acquire_run, finish_run
from tests.bot.slack.conftest import ADMIN, MEMBER, REVIEW_CHANNEL, REVIEWER, make_harness
from tests.slack_fakes import BOT_ID, form_body

PRIVATE = "my salary is being renegotiated, what are my options?"


def private_interaction(engine):
    """Someone else's question, asked in their own DM with the bot."""
    return add_interaction(
        engine,
        channel_id="DOTHER",
        user_id="UOTHER",
        question=PRIVATE,
        answer="Talk to HR about it.",
        track="default",
    )


def shortcut(h, message: dict, user: str = MEMBER, channel: str = "C111"):
    payload = {
        "type": "message_action",
        "callback_id": ui.CORRECT_SHORTCUT,
        "trigger_id": "1.2.3",
        "user": {"id": user},
        "channel": {"id": channel},
        "team": {"id": "T111"},
        "response_url": h.fake.response_url("shortcut"),
        "message": message,
    }
    return h.dispatch(form_body(payload))


def answer_blocks(interaction_id: int) -> list[dict]:
    return [
        {
            "type": "section",
            "block_id": f"apprenti-answer:{interaction_id}",
            "text": {"type": "mrkdwn", "text": "an answer"},
        }
    ]


def told(h) -> list[str]:
    return [c["text"] for c in h.fake.calls("response_url")]


def test_shortcut_on_a_members_forged_message_opens_nothing(slack):
    row = private_interaction(slack.engine)
    forged = {"type": "message", "ts": "5.6", "user": MEMBER, "text": "x", "blocks": answer_blocks(row.id)}
    assert shortcut(slack, forged).status == 200
    slack.settle()
    assert slack.fake.calls("views.open") == []
    assert text.SLACK_NOT_AN_ANSWER in told(slack)


def test_shortcut_on_the_bots_message_from_another_conversation_opens_nothing(slack):
    row = private_interaction(slack.engine)
    message = {"type": "message", "ts": "5.6", "bot_id": BOT_ID, "text": "x", "blocks": answer_blocks(row.id)}
    shortcut(slack, message, channel="C111")
    slack.settle()
    assert slack.fake.calls("views.open") == []
    assert text.SLACK_NOT_VISIBLE in told(slack)
    assert [e.target for e in list_events(slack.engine, action="slack.denied")] == [f"interaction:{row.id}"]
    shortcut(slack, message, user="UOTHER", channel="DOTHER")  # the asker, in their DM
    view = slack.fake.wait_for("views.open")[0]["view"]
    assert json.loads(view["private_metadata"])["interaction"] == row.id


@pytest.mark.parametrize(
    "action_id,value",
    [
        (ui.CORRECT, "{id}"),
        (ui.VOTE_UP, "{id}"),
        (ui.VOTE_DOWN, "{id}"),
        (ui.FEEDBACK, "down:{id}"),
        (ui.SHARE, "{id}"),
    ],
)
def test_answer_buttons_refuse_an_interaction_the_clicker_cannot_see(slack, action_id, value):
    row = private_interaction(slack.engine)
    slack.action(action_id, value.format(id=row.id), user=MEMBER, channel="C111")
    slack.settle()
    stored = get_interaction(slack.engine, row.id)
    assert stored.votes == {} and stored.feedback is None
    assert slack.fake.calls("views.open") == []
    assert [c for c in slack.fake.calls("chat.postMessage") if PRIVATE in json.dumps(c)] == []
    assert text.SLACK_NOT_VISIBLE in told(slack)


def test_a_correction_modal_for_an_unseen_interaction_is_refused(slack):
    row = private_interaction(slack.engine)
    response = slack.submit_view(
        ui.CORRECTION_VIEW,
        {ui.ANSWER_BLOCK: "better", ui.NOTE_BLOCK: None},
        {"interaction": row.id, "channel": "C111"},
        user=MEMBER,
    )
    assert json.loads(response.body)["errors"][ui.ANSWER_BLOCK] == text.SLACK_NOT_VISIBLE


def test_channel_members_still_vote_on_an_answer_posted_in_their_channel(slack):
    row = add_interaction(slack.engine, channel_id="C111", user_id="UASKER", question="q?", answer="a.")
    slack.action(ui.VOTE_UP, str(row.id), user=MEMBER, channel="C111")
    slack.settle()
    assert get_interaction(slack.engine, row.id).votes == {MEMBER: 1}


def test_a_reviewer_cannot_approve_their_own_correction(slack):
    own = add_example(slack.engine, "q?", "my own answer.", author_id=REVIEWER)
    for action_id in (ui.APPROVE, ui.EDIT_APPROVE):
        slack.action(action_id, str(own.id), user=REVIEWER, channel=REVIEW_CHANNEL)
    slack.settle()
    assert get_example(slack.engine, own.id).status == "pending"
    assert slack.fake.calls("views.open") == []  # no edit modal either
    assert told(slack).count(text.SLACK_SELF_REVIEW.format(id=own.id)) == 2
    # the modal path (a modal opened before the rule) is refused too
    slack.submit_view(ui.EDIT_VIEW, {ui.ANSWER_BLOCK: "edited"}, {"example": own.id}, user=REVIEWER)
    slack.settle()
    assert get_example(slack.engine, own.id).status == "pending"
    slack.action(ui.REJECT, str(own.id), user=REVIEWER, channel=REVIEW_CHANNEL)  # withdrawing is fine
    slack.settle()
    assert get_example(slack.engine, own.id).status == "rejected"
    other = add_example(slack.engine, "q2?", "their answer.", author_id=REVIEWER)
    slack.action(ui.APPROVE, str(other.id), user=ADMIN, channel=REVIEW_CHANNEL)
    slack.settle()
    assert get_example(slack.engine, other.id).status == "approved"


def test_self_review_is_allowed_when_set_on_purpose(fake_slack, tmp_path):
    h = make_harness(fake_slack, tmp_path, allow_self_review=True)
    try:
        own = add_example(h.engine, "q?", "my own answer.", author_id=REVIEWER)
        h.action(ui.APPROVE, str(own.id), user=REVIEWER, channel=REVIEW_CHANNEL)
        h.settle()
        assert get_example(h.engine, own.id).status == "approved"
    finally:
        h.close()


def test_members_home_leaves_out_run_errors(slack):
    run = acquire_run(slack.engine, "default", "admin", ADMIN)
    finish_run(slack.engine, run.id, "failed", error="Traceback: /srv/apprenti/secret-path.py line 3")
    for user in (MEMBER, ADMIN):
        slack.dispatch(
            json.dumps(slack.event("app_mention_event.json", type="app_home_opened", user=user, tab="home"))
        )
    slack.settle()
    views = {c["user_id"]: json.dumps(c["view"]) for c in slack.fake.wait_for("views.publish", 2)}
    assert "secret-path" not in views[MEMBER] and f"#{run.id}" in views[MEMBER]
    assert "secret-path" in views[ADMIN]


# --- /apprenti ingest ------------------------------------------------------------------------------
@pytest.fixture
def documents(tmp_path):
    root = tmp_path / "docs"
    (root / "team").mkdir(parents=True)
    (root / "team" / "guide.md").write_text("# Guide\nUse the VPN.")
    outside = tmp_path / "server"
    outside.mkdir()
    (outside / "passwords.md").write_text("# Secrets\nroot password")
    return root, outside


def ingest_reply(h, args: str) -> str:
    before = len(h.fake.calls("response_url"))
    h.command(f"ingest {args}", user=ADMIN)
    h.settle()
    return h.fake.wait_for("response_url", before + 1)[-1]["text"]


def test_ingest_is_refused_without_document_roots(slack, documents):
    assert ingest_reply(slack, str(documents[0])) == text.SLACK_INGEST_NO_ROOTS


def test_ingest_refuses_paths_and_symlinks_outside_the_roots(fake_slack, tmp_path, documents, monkeypatch):
    root, outside = documents
    (root / "team" / "link.md").symlink_to(outside / "passwords.md")
    (root / "escape").symlink_to(outside)
    indexed = []
    monkeypatch.setattr(
        "bot.slack.operations.ingest_paths",
        lambda settings, paths, **_: indexed.append(paths) or {"documents": 1},
    )
    h = make_harness(fake_slack, tmp_path, document_roots=[str(root)])
    try:
        for args in (
            str(outside),
            str(outside / "passwords.md"),
            f"{root}/../server",
            str(root / "escape"),
            str(root / "team" / "link.md"),
            str(root),
        ):  # the folder holds a link that leads out
            assert "is not inside an allowed document folder" in ingest_reply(h, args), args
        assert indexed == []
        assert len(list_events(h.engine, action="slack.denied")) == 6
        (root / "team" / "link.md").unlink()
        (root / "escape").unlink()
        assert "Indexed" in ingest_reply(h, str(root))
        assert indexed == [[str((root / "team" / "guide.md").resolve())]]
    finally:
        h.close()


def test_sources_are_shown_relative_to_their_root(tmp_path):
    from plugins.builtin.rag import shown_source

    root = tmp_path / "docs"
    assert shown_source(str(root / "team" / "guide.md"), [root]) == "team/guide.md"
    assert shown_source("/srv/elsewhere/notes.md", [root]) == "notes.md"  # never the server's path
    assert shown_source("https://wiki.example.com/page", [root]) == "https://wiki.example.com/page"


def test_the_training_process_gets_no_slack_secret(tmp_path, monkeypatch):
    import bot.scheduler
    from bot.runtime import Runtime
    from bot.settings import Settings

    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-env-token")
    seen = {}

    class Popen:
        pid = 1

        def __init__(self, args, env, **kwargs):
            seen.update(env)

    monkeypatch.setattr(bot.scheduler.subprocess, "Popen", Popen)
    monkeypatch.setattr(bot.scheduler, "_PROCESSES", {})  # the fake process must not outlive the test
    settings = Settings(
        home=tmp_path / "home",
        slack_bot_token="xoxb-settings",
        slack_app_token="xapp-x",
        slack_signing_secret="signing",
        pii="off",
    )
    bot.scheduler.spawn_training(Runtime(settings, entrypoints=False), 7)
    assert seen["APPRENTI_HOME"] == str(tmp_path / "home")
    values = json.dumps(seen)
    for secret in ("xoxb-env-token", "xoxb-settings", "xapp-x", "signing"):
        assert secret not in values
    assert not {"SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"} & set(seen)
    assert os.environ["SLACK_BOT_TOKEN"] == "xoxb-env-token"  # this process keeps its own
