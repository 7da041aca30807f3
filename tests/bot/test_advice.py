from __future__ import annotations

import time

from bot.advice import document_churn, readiness_report
from bot.settings import load_settings
from storage.db import session_scope
from storage.examples import add_example, review_example
from storage.interactions import add_interaction, record_vote
from storage.models import Adapter


def _approve(engine, n, track="default"):
    ids = []
    for i in range(n):
        ex = add_example(engine, f"q{i}", f"a{i}", track=track)
        review_example(engine, ex.id, "approved", "R")
        ids.append(ex.id)
    return ids


def _votes(engine, adapter, up, down):
    for i in range(up + down):
        row = add_interaction(engine, question="q", answer="a", adapter_version=adapter)
        record_vote(engine, row.id, f"U{i}", 1 if i < up else -1)


def test_too_few_examples_points_to_fewshot(engine):
    _approve(engine, 4)
    report = readiness_report(engine, load_settings(min_examples=50, train_threshold=50))
    (track,) = report["tracks"]
    assert track["approved"] == 4 and track["unused"] == 4
    assert any("needs at least 50" in a and "46 to go" in a for a in track["advice"])


def test_changing_documents_favour_rag():
    now = time.time()
    sources = [{"indexed_at": now - 86400}] * 3 + [{"indexed_at": now - 200 * 86400}] * 2
    churn = document_churn(sources, now)
    assert churn == {"documents": 5, "changed_recently": 3, "window_days": 30, "often": True}
    assert document_churn([{"indexed_at": now - 200 * 86400}] * 5, now)["often"] is False


def test_a_disliked_adapter_suggests_rollback(engine):
    ids = _approve(engine, 3)
    with session_scope(engine) as s:
        s.add(
            Adapter(
                track="default",
                version=1,
                name="default/v1",
                base_model="m",
                path="/p",
                status="retired",
                example_ids=ids[:2],
            )
        )
        s.add(
            Adapter(
                track="default",
                version=2,
                name="default/v2",
                base_model="m",
                path="/p",
                status="active",
                parent_version="default/v1",
                example_ids=ids,
                metrics={"passed": True},
            )
        )
    _votes(engine, "default/v1", 9, 1)
    _votes(engine, "default/v2", 4, 8)
    settings = load_settings(min_examples=3, train_threshold=3)
    (track,) = readiness_report(engine, settings)["tracks"]
    rates = {f["adapter"]: f["approval"] for f in track["feedback"]}
    assert rates == {"default/v1": 0.9, "default/v2": 0.333}
    assert track["active"] == "default/v2" and track["unused"] == 0
    assert any("/apprenti rollback" in a for a in track["advice"])
    assert track["last_gate"] == {"adapter": "default/v2", "status": "active", "passed": True}
