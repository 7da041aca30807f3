"""/apprenti subcommands and the App Home, with what they show."""

from __future__ import annotations

import json

from bot.slack import blocks as ui
from storage.adapters import list_adapters
from storage.db import session_scope
from storage.examples import add_example, review_example
from storage.models import Adapter
from storage.runs import list_runs
from tests.bot.slack.conftest import ADMIN, AUDITOR, MEMBER, REVIEWER


def replies(slack, n=1):
    return slack.fake.wait_for("response_url", n)


def add_adapter(engine, version=1, status="active", metrics=None):
    with session_scope(engine) as session:
        session.add(Adapter(track="default", version=version, name=f"default/v{version}", base_model="tiny",
                            path=f"/tmp/a{version}", status=status, metrics=metrics or {}))


def test_status_shows_adapters_pending_and_runs(slack):
    add_adapter(slack.engine, metrics={"rougeL": 0.4123, "format_compliance": 1.0})
    add_example(slack.engine, "q1", "a1", author_id=MEMBER)
    slack.command("retrain", user=ADMIN)
    slack.settle()
    slack.command("status", user=AUDITOR)
    status = replies(slack, 2)[-1]["text"]
    assert "default/v1" in status and "rougeL 0.412" in status
    assert "Pending reviews:* 1" in status
    assert "run #1 default: queued (admin by <@UADMIN>" in status


def test_retrain_queues_once(slack):
    slack.command("retrain", user=ADMIN)
    slack.settle()
    slack.command("retrain default", user=ADMIN)
    slack.command("retrain nosuchtrack", user=ADMIN)
    texts = [c["text"] for c in replies(slack, 3)]
    assert any("run #1 for track *default* is queued" in t for t in texts)
    assert any("already has a training run in flight (run #1)" in t for t in texts)
    assert any("unknown track" in t for t in texts)
    (run,) = list_runs(slack.engine)
    assert (run.trigger, run.triggered_by, run.status) == ("admin", ADMIN, "queued")


def test_review_queue_lists_pending_with_buttons(slack):
    a = add_example(slack.engine, "first?", "one", author_id=MEMBER)
    b = add_example(slack.engine, "second?", "two", author_id=MEMBER)
    review_example(slack.engine, b.id, "approved", REVIEWER)
    slack.command("review", user=REVIEWER)
    reply = replies(slack)[0]
    rendered = json.dumps(reply["blocks"])
    assert "first?" in rendered and "second?" not in rendered
    buttons = [b for b in reply["blocks"] if b["type"] == "actions"]
    assert [e["value"] for e in buttons[0]["elements"]] == [str(a.id)] * 3


def test_export_sends_the_approved_pairs_as_jsonl(slack):
    a = add_example(slack.engine, "What is X?", "X is Y.", author_id=MEMBER)
    add_example(slack.engine, "pending?", "not yet", author_id=MEMBER)
    review_example(slack.engine, a.id, "approved", REVIEWER)
    slack.command("export", user=ADMIN)
    slack.fake.wait_for("files.completeUploadExternal")
    upload = slack.fake.calls("files.getUploadURLExternal")[0]
    assert upload["filename"] == "apprenti-approved.jsonl"
    assert int(upload["length"]) == len((json.dumps({"messages": [
        {"role": "user", "content": "What is X?"}, {"role": "assistant", "content": "X is Y."}]}) + "\n").encode())
    assert "1 pairs" in replies(slack)[0]["text"]


def test_unknown_subcommand_and_usage(slack):
    slack.command("frobnicate", user=MEMBER)
    slack.command("ask", user=MEMBER)
    texts = [c["text"] for c in replies(slack, 2)]
    assert any("Unknown command `frobnicate`" in t for t in texts)
    assert any("Ask me something" in t for t in texts)


def test_unavailable_engine_is_explained(slack):
    from bot.slack.operations import available

    if available("activate")[0]:
        return  # the registry has landed; its own tests cover it
    slack.command("activate default/v1", user=ADMIN)
    assert "not available in this installation yet" in replies(slack)[0]["text"]
    assert list_adapters(slack.engine) == []


def test_home_for_a_member_and_an_admin(slack):
    add_adapter(slack.engine, metrics={"eval_loss": 1.25})
    add_adapter(slack.engine, version=2, status="candidate")
    add_example(slack.engine, "pending question?", "answer", author_id=MEMBER)
    for user in (MEMBER, ADMIN):
        body = slack.event("app_mention_event.json")
        body["event"] = {"type": "app_home_opened", "user": user, "channel": "D1", "tab": "home",
                         "event_ts": "1.2"}
        assert slack.send_event(body).status == 200
    member_view, admin_view = (c["view"] for c in slack.fake.wait_for("views.publish", 2))
    if member_view is None or json.dumps(member_view).count(ui.RETRAIN):
        member_view, admin_view = admin_view, member_view
    member, admin = json.dumps(member_view), json.dumps(admin_view)
    assert "default/v1" in member and "eval_loss 1.25" in member and "waiting for review:* 1" in member
    assert ui.RETRAIN not in member and ui.APPROVE not in member
    assert ui.RETRAIN in admin and ui.ROLLBACK in admin and ui.APPROVE in admin
    assert ui.ACTIVATE in admin and "default/v2" in admin


def test_unknown_action_is_acknowledged_and_ignored(slack, caplog):
    response, _ = slack.action("some_old_button", "1", user=MEMBER)
    assert response.status == 200
    slack.settle()
    assert "ignored unknown action 'some_old_button'" in caplog.text
