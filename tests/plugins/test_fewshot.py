"""Few-shot: approved pairs close to the question, kept in step with reviews through the real hooks."""

from __future__ import annotations

import pytest

from bot.settings import load_settings
from plugins.builtin import fewshot
from plugins.manager import make_manager
from plugins.profile import Profile
from storage.db import open_database
from storage.examples import add_example, review_example

HOLIDAYS = "How do I request paid holidays?"
EXPENSES = "Where do I submit my travel expense receipts?"


def as_hook_dict(row):
    return {
        "id": row.id,
        "question": row.question,
        "answer": row.corrected_answer,
        "track": row.track,
        "status": row.status,
    }


@pytest.fixture
def world(tmp_path):
    settings = load_settings(fewshot_min_score=0.2)
    engine = open_database(settings.database_url)
    pm = make_manager(["fewshot"], entrypoints=False)
    pm.hook.startup(config=settings.model_dump(mode="json"), database=lambda: engine, documents=None)
    yield pm, engine
    engine.dispose()


def shots(pm, question, track="default", k=3):
    return [
        s for r in pm.hook.fewshot_examples(question=question, profile=Profile(track=track), k=k) for s in r
    ]


def test_only_approved_pairs_of_the_track_closest_first(world):
    pm, engine = world
    hol = add_example(engine, HOLIDAYS, "Open the HR portal, then Leave > New request.", status="approved")
    add_example(engine, EXPENSES, "Upload them in the Expenses app within 30 days.", status="approved")
    add_example(engine, "How do I reset my VPN token?", "Ask IT.", status="pending")
    add_example(engine, HOLIDAYS, "Sales use the CRM calendar.", status="approved", track="sales")

    found = shots(pm, "how can I ask for holidays?")
    assert found[0]["question"] == HOLIDAYS
    assert found[0]["answer"] == "Open the HR portal, then Leave > New request."
    assert found[0]["id"] == hol.id
    assert all(s["question"] != "How do I reset my VPN token?" for s in found)
    assert all("CRM" not in s["answer"] for s in found)
    assert [s["answer"] for s in shots(pm, "holidays?", track="sales")] == ["Sales use the CRM calendar."]
    # Unrelated questions get no examples below the similarity floor.
    assert shots(pm, "zebra migration patterns in the Serengeti") == []


def test_review_hooks_add_edit_and_remove_pairs(world):
    pm, engine = world
    assert shots(pm, HOLIDAYS) == []  # opens and syncs the (empty) store
    pending = add_example(engine, HOLIDAYS, "Use the HR portal.")
    pm.hook.example_changed(example=as_hook_dict(pending), action="created")
    assert shots(pm, HOLIDAYS) == []

    approved = review_example(engine, pending.id, "approved", "U_REVIEWER")
    pm.hook.example_changed(example=as_hook_dict(approved), action="approved")
    assert [s["answer"] for s in shots(pm, HOLIDAYS)] == ["Use the HR portal."]

    edited = {**as_hook_dict(approved), "answer": "Use the HR portal, Leave tab."}
    pm.hook.example_changed(example=edited, action="edited")
    assert [s["answer"] for s in shots(pm, HOLIDAYS)] == ["Use the HR portal, Leave tab."]

    pm.hook.example_changed(example={**edited, "status": "approved"}, action="erased")
    assert shots(pm, HOLIDAYS) == []


def test_changes_made_elsewhere_are_reconciled(world, monkeypatch):
    pm, engine = world
    row = add_example(engine, EXPENSES, "In the Expenses app.", status="approved")
    assert [s["answer"] for s in shots(pm, EXPENSES)] == ["In the Expenses app."]
    # Another process rejects it (no hook here); the next reconciliation drops it.
    from sqlalchemy import update

    from storage.db import session_scope
    from storage.models import Example

    with session_scope(engine) as session:
        session.execute(update(Example).where(Example.id == row.id).values(status="rejected"))
    monkeypatch.setattr(fewshot, "RESYNC_SECONDS", 0.0)
    assert shots(pm, EXPENSES) == []


def test_a_broken_store_costs_the_examples_not_the_answer(world, monkeypatch):
    pm, _ = world

    def broken():
        raise RuntimeError("chroma is down")

    monkeypatch.setattr(pm.get_plugin("fewshot"), "get", broken)
    assert shots(pm, HOLIDAYS) == []
