"""Notifications to the admin channel: what the scheduler and the trainer post through runtime.notify."""

from __future__ import annotations

import json

from slack_sdk import WebClient

from bot.slack import blocks as ui
from bot.slack.notify import Notifier
from storage.db import session_scope
from storage.models import Adapter
from storage.runs import acquire_run, finish_run, get_run


def notifier(fake, engine, channel="CADMIN"):
    return Notifier(WebClient(token="xoxb-test", base_url=fake.api_url), channel, engine)


def test_run_lifecycle_messages(fake_slack, engine):
    n = notifier(fake_slack, engine)
    run = acquire_run(engine, "default", "admin", "UADMIN")

    class State:
        approved, unused = 60, 12

    n.run_queued(run, State())
    with session_scope(engine) as session:
        session.add(
            Adapter(
                track="default",
                version=2,
                name="default/v2",
                base_model="tiny",
                path="/x",
                status="candidate",
                metrics={"rougeL": 0.52, "verdict": "kept as candidate"},
            )
        )
    finish_run(engine, run.id, "succeeded", adapter_name="default/v2")
    n.run_finished(get_run(engine, run.id))
    n.daily_summary(
        {
            "runs": 1,
            "by_status": {"succeeded": 1},
            "tracks": {"default": {"approved": 60, "unused": 0, "due": False}},
        }
    )
    queued, finished, summary = fake_slack.wait_for("chat.postMessage", 3)
    assert all(c["channel"] == "CADMIN" for c in (queued, finished, summary))
    assert (
        "run #1 for track *default* started (admin by <@UADMIN>): 12 new approved example(s), 60 in all"
        in queued["text"]
    )
    rendered = json.dumps(finished["blocks"])
    assert "succeeded" in finished["text"] and "default/v2" in rendered and "rougeL 0.52" in rendered
    buttons = [b for b in finished["blocks"] if b["type"] == "actions"][0]["elements"]
    assert [(b["action_id"], b["value"]) for b in buttons] == [
        (ui.ACTIVATE, "default/v2"),
        (ui.DISCARD, "default/v2"),  # the candidate
        (ui.ROLLBACK, "default"),
        (ui.RETRAIN, "default"),
        (ui.STATUS, "default"),
    ]  # no slash command needed
    assert (
        "1 training run(s) (1 succeeded)" in summary["text"]
        and "track *default*: 60 approved" in summary["text"]
    )


def test_failed_run_and_slack_errors_do_not_raise(fake_slack, engine):
    n = notifier(fake_slack, engine)
    run = acquire_run(engine, "default", "scheduler")
    finish_run(engine, run.id, "failed", error="CUDA out of memory")
    fake_slack.fail("chat.postMessage", "channel_not_found")
    assert n.run_finished(get_run(engine, run.id)) is None  # logged, not raised: training goes on
    n.run_finished(get_run(engine, run.id))
    message = fake_slack.wait_for("chat.postMessage", 2)[-1]
    assert "CUDA out of memory" in message["text"]
    (actions,) = [b for b in message["blocks"] if b["type"] == "actions"]  # nothing to activate, but admins
    assert [e["action_id"] for e in actions["elements"]] == [ui.ROLLBACK, ui.RETRAIN, ui.STATUS]  # may act


def test_no_admin_channel_posts_nothing(fake_slack, engine):
    n = notifier(fake_slack, engine, channel=None)
    assert n.admin("hello") is None
    assert fake_slack.calls() == []
