"""/apprenti subcommands and the App Home, with what they show."""

from __future__ import annotations

import json

from bot.slack import blocks as ui
from storage.adapters import list_adapters
from storage.audit import list_events
from storage.db import session_scope
from storage.examples import add_example, list_examples, review_example
from storage.models import Adapter, utcnow
from storage.runs import acquire_run, list_runs
from tests.bot.slack.conftest import ADMIN, AUDITOR, MEMBER, REVIEWER, make_harness


def replies(slack, n=1):
    return slack.fake.wait_for("response_url", n)


def add_adapter(engine, version=1, status="active", metrics=None, folder=None, example_ids=None):
    """An adapter row; with `folder`, a folder holding the files the registry checks for."""
    path = f"/nonexistent/a{version}"
    if folder is not None:
        from finetune.registry import ADAPTER_FILES

        target = folder / f"v{version}"
        target.mkdir(parents=True)
        for name in ADAPTER_FILES:
            (target / name).write_text("{}")
        path = str(target)
    with session_scope(engine) as session:
        session.add(
            Adapter(
                track="default",
                version=version,
                name=f"default/v{version}",
                base_model="tiny",
                path=path,
                status=status,
                metrics=metrics or {},
                example_ids=example_ids or [],
                activated_at=utcnow() if status in ("active", "retired") else None,
            )
        )


def test_status_shows_adapters_pending_and_runs(slack):
    add_adapter(slack.engine, metrics={"rougeL": 0.4123, "format_compliance": 1.0})
    add_example(slack.engine, "q1", "a1", author_id=MEMBER)
    acquire_run(slack.engine, "default", "admin", ADMIN)
    slack.command("status", user=AUDITOR)
    status = replies(slack)[-1]["text"]
    assert "default/v1" in status and "rougeL 0.412" in status
    assert "Pending reviews:* 1" in status
    assert "run #1 default: queued (admin by <@UADMIN>" in status


def test_retrain_is_refused_without_enough_examples(slack):
    slack.command("retrain", user=ADMIN)
    slack.command("retrain nosuchtrack", user=ADMIN)
    texts = [c["text"] for c in replies(slack, 2)]
    assert any("cannot be retrained now" in t and "training needs at least 50" in t for t in texts)
    assert any("unknown track" in t for t in texts)
    assert list_runs(slack.engine) == []


def test_retrain_starts_one_run_and_tells_the_admin_channel(fake_slack, tmp_path, monkeypatch):
    import bot.scheduler

    spawned = []
    # the training process itself is the trainer's business (and minutes long): record the spawn
    monkeypatch.setattr(bot.scheduler, "spawn_training", lambda runtime, run_id: spawned.append(run_id))
    h = make_harness(fake_slack, tmp_path, min_examples=1)
    try:
        e = add_example(h.engine, "q?", "a.", author_id=MEMBER)
        review_example(h.engine, e.id, "approved", REVIEWER)
        h.command("retrain", user=ADMIN)
        h.settle()
        h.command("retrain default", user=ADMIN)
        texts = [c["text"] for c in fake_slack.wait_for("response_url", 2)]
        assert "Training run #1 for track *default* has started" in texts[0]
        assert "run #1 is already queued" in texts[1]
        (run,) = list_runs(h.engine)
        assert (run.trigger, run.triggered_by, run.status, spawned) == ("admin", ADMIN, "queued", [run.id])
        notice = fake_slack.wait_for("chat.postMessage", where=lambda c: c["channel"] == "CADMIN")[0]
        assert "Training run #1 for track *default* started (admin by <@UADMIN>)" in notice["text"]
    finally:
        h.close()


def test_activate_rollback_discard_through_the_registry(slack, tmp_path):
    folder = tmp_path / "adapters"
    add_adapter(slack.engine, 1, "active", folder=folder)
    add_adapter(slack.engine, 2, "candidate", folder=folder)
    add_adapter(slack.engine, 3, "candidate", folder=folder)
    slack.command("activate default/v2", user=ADMIN)
    slack.settle()
    assert {a.name: a.status for a in list_adapters(slack.engine)}["default/v2"] == "active"
    slack.command("rollback", user=ADMIN)
    slack.settle()
    assert {a.name: a.status for a in list_adapters(slack.engine)}["default/v1"] == "active"
    slack.command("discard v3", user=ADMIN)
    slack.command("activate default/v9", user=ADMIN)
    slack.settle()
    texts = [c["text"] for c in replies(slack, 4)]
    assert "Track *default* now serves *default/v2* (before: default/v1)" in texts[0]
    assert "now serves *default/v1* (before: default/v2)" in texts[1]
    assert any("discard v3: done" in t for t in texts)
    assert any("activate default/v9 failed: no adapter named 'default/v9'" in t for t in texts)
    assert {a.name: a.status for a in list_adapters(slack.engine)}["default/v3"] == "rejected"
    actions = [e.action for e in list_events(slack.engine)]
    assert "adapter.activate" in actions and "adapter.rollback" in actions and "adapter.discard" in actions


def test_home_buttons_run_the_registry(slack, tmp_path):
    folder = tmp_path / "adapters"
    add_adapter(slack.engine, 1, "active", folder=folder)
    add_adapter(slack.engine, 2, "candidate", folder=folder)
    slack.action(ui.ACTIVATE, "default/v2", user=ADMIN, view={"type": "home", "id": "VHOME"})
    slack.settle()
    assert {a.name: a.status for a in list_adapters(slack.engine)}["default/v2"] == "active"
    assert slack.fake.calls("views.publish"), "the home is refreshed after the click"


def test_forget_erases_a_person(slack):
    slack.send_event(slack.event(text="<@UAPPRENTI> my question", user="UFORGET"))
    slack.settle()
    add_example(slack.engine, "q?", "a.", author_id="UFORGET")
    slack.command("forget <@UFORGET|someone>", user=ADMIN)
    text_ = replies(slack)[0]["text"]
    assert "Erased <@UFORGET>: 1 interaction(s) and 1 example(s)" in text_
    from storage.interactions import recent_interactions

    assert recent_interactions(slack.engine) == [] and list_examples(slack.engine) == []


def test_review_queue_lists_pending_with_buttons(slack):
    a = add_example(slack.engine, "first?", "one", author_id=MEMBER)
    b = add_example(slack.engine, "second?", "two", author_id=MEMBER)
    review_example(slack.engine, b.id, "approved", REVIEWER)
    slack.command("review", user=REVIEWER)
    reply = replies(slack)[0]
    rendered = json.dumps(reply["blocks"])
    assert "first?" in rendered and "second?" not in rendered
    buttons = [b for b in reply["blocks"] if b["type"] == "actions"]
    elements = buttons[0]["elements"]
    assert [e["value"] for e in elements if e["type"] == "button"] == [str(a.id)] * 3
    kind = [e for e in elements if e["type"] == "static_select"]
    assert [o["value"] for o in kind[0]["options"]] == [f"{a.id}:fact", f"{a.id}:behaviour", f"{a.id}:both"]
    assert kind[0]["initial_option"]["value"] == f"{a.id}:behaviour"


def test_review_queue_is_paginated_under_slacks_block_limit(slack):
    examples = [
        add_example(slack.engine, f"question {i}?", f"answer {i}", author_id=MEMBER) for i in range(25)
    ]
    pages = []
    for page in ("", "2", "3", "4"):
        before = len(slack.fake.calls("response_url"))
        slack.command(f"review {page}".strip(), user=REVIEWER)
        pages.append(replies(slack, before + 1)[-1])
    assert all(len(p.get("blocks") or []) <= ui.MESSAGE_BLOCKS for p in pages)
    shown = [
        [
            int(b["value"])
            for block in p.get("blocks") or []
            if block["type"] == "actions"
            for b in block["elements"][:1]
        ]
        for p in pages
    ]
    assert [len(ids) for ids in shown] == [9, 9, 7, 0]
    assert sum(shown, []) == [e.id for e in examples]  # every pending example, once, in order
    assert "`/apprenti review 2`" in json.dumps(pages[0]["blocks"]) and "past the end" in pages[3]["text"]


def test_export_sends_the_approved_pairs_as_jsonl(slack):
    a = add_example(slack.engine, "What is X?", "X is Y.", author_id=MEMBER)
    add_example(slack.engine, "pending?", "not yet", author_id=MEMBER)
    review_example(slack.engine, a.id, "approved", REVIEWER)
    slack.command("export", user=ADMIN)
    slack.fake.wait_for("files.completeUploadExternal")
    upload = slack.fake.calls("files.getUploadURLExternal")[0]
    assert upload["filename"] == "apprenti-approved.jsonl"
    assert int(upload["length"]) == len(
        (
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": "What is X?"},
                        {"role": "assistant", "content": "X is Y."},
                    ]
                }
            )
            + "\n"
        ).encode()
    )
    assert "1 pairs" in replies(slack)[0]["text"]


def test_unknown_subcommand_and_usage(slack):
    slack.command("frobnicate", user=MEMBER)
    slack.command("ask", user=MEMBER)
    texts = [c["text"] for c in replies(slack, 2)]
    assert any("Unknown command `frobnicate`" in t for t in texts)
    assert any("Ask me something" in t for t in texts)


def test_home_for_a_member_and_an_admin(slack):
    add_adapter(slack.engine, metrics={"eval_loss": 1.25})
    add_adapter(slack.engine, version=2, status="candidate")
    add_example(slack.engine, "pending question?", "answer", author_id=MEMBER)
    for user in (MEMBER, ADMIN):
        body = slack.event("app_mention_event.json")
        body["event"] = {
            "type": "app_home_opened",
            "user": user,
            "channel": "D1",
            "tab": "home",
            "event_ts": "1.2",
        }
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


def test_status_and_home_give_readiness_advice(slack):
    for i in range(3):
        example = add_example(slack.engine, f"q{i}", f"a{i}", author_id=MEMBER)
        review_example(slack.engine, example.id, "approved", REVIEWER)
    add_example(slack.engine, "pending q", "pending a", author_id=MEMBER)
    slack.command("status", user=AUDITOR)
    slack.settle()
    status = replies(slack)[0]["text"]
    assert "Readiness advice" in status
    assert "3 approved tone/format pairs; fine-tuning needs at least 50" in status and "47 to go" in status
    assert "1 correction(s) wait for review" in status
    slack.dispatch(
        json.dumps(slack.event("app_mention_event.json", type="app_home_opened", user=MEMBER, tab="home"))
    )
    slack.settle()
    home = json.dumps(slack.fake.wait_for("views.publish")[-1]["view"])
    assert "Readiness advice" in home and "47 to go" in home


def test_retrain_dry_run_shows_what_would_train_and_starts_nothing(slack):
    for i in range(5):
        example = add_example(slack.engine, f"dry question {i}?", f"a{i}", author_id=MEMBER)
        review_example(slack.engine, example.id, "approved", REVIEWER)
    slack.command("retrain --dry-run", user=ADMIN)
    slack.settle()
    reply = replies(slack)[0]["text"]
    assert "Dry run for track *default*" in reply and "(5 not used by any adapter yet)" in reply
    assert "would be refused" in reply and "training needs at least 50" in reply
    assert list_runs(slack.engine) == []


def test_export_writes_the_user_turn_training_sees(slack):
    example = add_example(slack.engine, "q?", "a.", context="[1] Handbook\ntext", author_id=MEMBER)
    review_example(slack.engine, example.id, "approved", REVIEWER)
    from bot.slack.operations import Operations
    from finetune.dataset import to_record

    line, count = Operations(slack.runtime).export(ADMIN)
    record = json.loads(line)
    assert count == 1
    assert record["messages"][0]["content"] == to_record(example, system_prompt=None)["prompt"][0]["content"]
