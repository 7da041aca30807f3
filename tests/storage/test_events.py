"""The durable Slack event queue (storage/events.py), on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import multiprocessing
from datetime import timedelta

import pytest
from sqlmodel import select

from storage.db import open_database, session_scope
from storage.events import (
    claim_due,
    enqueue_event,
    enqueue_events,
    finish_event,
    get_event,
    prune_events,
    queued_count,
    release_events,
    renew_events,
)
from storage.models import SlackEvent, utcnow

LEASE = timedelta(seconds=30)


@pytest.fixture(params=["sqlite", "postgres"])
def db(request):
    if request.param == "sqlite":
        return request.getfixturevalue("engine")
    return request.getfixturevalue("pg_engine")


def expire(engine, *event_ids: str, by: timedelta = timedelta(seconds=1)) -> None:
    """Make these claims look expired, as when their holder died `by` ago."""
    with session_scope(engine) as session:
        for event_id in event_ids:
            session.get(SlackEvent, event_id).expires_at = utcnow() - by


def test_an_event_is_queued_once_and_a_retry_is_refused(db):
    assert enqueue_event(db, "Ev1", '{"a": 1}', "replica-a", LEASE) is True
    assert enqueue_event(db, "Ev1", '{"a": 1}', "replica-b", LEASE) is False  # Slack's retry, elsewhere
    row = get_event(db, "Ev1")
    assert (row.status, row.holder, row.attempts, row.body) == ("queued", "replica-a", 1, '{"a": 1}')
    assert queued_count(db) == 1


def test_a_live_claim_is_not_taken_an_expired_one_is_once(db):
    enqueue_event(db, "Ev1", "{}", "replica-a", LEASE)
    assert claim_due(db, "replica-b", LEASE) == []
    expire(db, "Ev1")
    assert claim_due(db, "replica-b", LEASE) == [("Ev1", "{}")]
    assert claim_due(db, "replica-c", LEASE) == []  # replica-b's claim is live now
    row = get_event(db, "Ev1")
    assert (row.holder, row.attempts) == ("replica-b", 2)


def test_renewal_keeps_a_claim_and_tells_the_old_holder_it_lost_one(db):
    for event_id in ("Ev1", "Ev2"):
        enqueue_event(db, event_id, "{}", "replica-a", timedelta(seconds=1))
    assert renew_events(db, "replica-a", ["Ev1", "Ev2"], LEASE) == {"Ev1", "Ev2"}
    assert claim_due(db, "replica-b", LEASE) == []  # renewed: not expired
    expire(db, "Ev2")
    assert [e for e, _ in claim_due(db, "replica-b", LEASE)] == ["Ev2"]
    assert renew_events(db, "replica-a", ["Ev1", "Ev2"], LEASE) == {"Ev1"}


def test_only_the_holder_finishes_and_a_done_event_is_never_claimed_again(db):
    enqueue_event(db, "Ev1", "{}", "replica-a", LEASE)
    assert finish_event(db, "Ev1", "replica-b") is False
    assert finish_event(db, "Ev1", "replica-a") is True
    expire(db, "Ev1")
    assert claim_due(db, "replica-b", LEASE) == []
    assert enqueue_event(db, "Ev1", "{}", "replica-b", LEASE) is False  # a late retry
    assert get_event(db, "Ev1").status == "done" and queued_count(db) == 0


def test_an_event_tried_too_often_is_marked_failed(db):
    enqueue_event(db, "Ev1", "{}", "replica-a", LEASE)
    expire(db, "Ev1")
    assert claim_due(db, "replica-b", LEASE, max_attempts=2)  # attempt 2
    expire(db, "Ev1")
    assert claim_due(db, "replica-c", LEASE, max_attempts=2) == []
    row = get_event(db, "Ev1")
    assert row.status == "failed" and "2 attempts" in row.error


def test_released_claims_are_due_at_once_without_counting_an_attempt(db):
    enqueue_event(db, "Ev1", "{}", "replica-a", LEASE)
    assert release_events(db, "replica-a", ["Ev1"]) == 1
    assert claim_due(db, "replica-b", LEASE) == [("Ev1", "{}")]
    assert get_event(db, "Ev1").attempts == 1


def test_old_events_are_pruned(db):
    enqueue_event(db, "Ev-old", "{}", "a", LEASE, now=utcnow() - timedelta(days=3))
    enqueue_event(db, "Ev-new", "{}", "a", LEASE)
    assert prune_events(db) == 1
    with session_scope(db) as session:
        assert session.exec(select(SlackEvent.event_id)).all() == ["Ev-new"]


def _claim_all(url: str, holder: str, start, out) -> None:
    engine = open_database(url)
    start.wait()
    claimed = []
    for _ in range(20):
        claimed += [event_id for event_id, _ in claim_due(engine, holder, LEASE, limit=5)]
    out.put(claimed)
    engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_two_processes_racing_for_expired_claims_never_both_get_one(backend, tmp_path, request):
    engine = request.getfixturevalue("engine" if backend == "sqlite" else "pg_engine")
    url = engine.url.render_as_string(hide_password=False)
    ids = [f"Ev{i:03d}" for i in range(40)]
    for event_id in ids:
        enqueue_event(engine, event_id, "{}", "dead-replica", LEASE)
    expire(engine, *ids)
    context = multiprocessing.get_context("spawn")
    start, out = context.Event(), context.Queue()
    workers = [context.Process(target=_claim_all, args=(url, f"replica-{i}", start, out)) for i in range(2)]
    for worker in workers:
        worker.start()
    start.set()
    first, second = out.get(timeout=120), out.get(timeout=120)
    for worker in workers:
        worker.join(timeout=30)
    assert not set(first) & set(second)
    assert sorted(first + second) == ids
    with session_scope(engine) as session:
        assert {row.attempts for row in session.exec(select(SlackEvent))} == {2}


def test_a_burst_is_written_in_one_go_and_its_retries_are_refused(db):
    enqueue_event(db, "Ev0", "{}", "replica-b", LEASE)
    fresh = enqueue_events(
        db, [("Ev1", "{}"), ("Ev2", "{}"), ("Ev1", "{}"), ("Ev0", "{}")], "replica-a", LEASE
    )
    assert fresh == {"Ev1", "Ev2"}  # Ev1 again is its retry; Ev0 was queued by another replica
    assert get_event(db, "Ev0").holder == "replica-b" and get_event(db, "Ev1").holder == "replica-a"
    assert enqueue_events(db, [], "replica-a", LEASE) == set()
