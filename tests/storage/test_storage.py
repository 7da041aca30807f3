from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import inspect, text

from storage.db import DatabaseError, make_engine, open_database, session_scope
from storage.examples import DuplicateExample, add_example, list_examples, review_example
from storage.hashing import content_hash, split_for
from storage.interactions import add_interaction, record_vote
from storage.models import AuditEvent, Interaction
from storage.runs import acquire_run, finish_run, heartbeat, stale_runs, start_run


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path):
    """Each behavioural test runs on SQLite and on a real PostgreSQL server."""
    if request.param == "sqlite":
        return request.getfixturevalue("engine")
    return request.getfixturevalue("pg_engine")


TABLES = {
    "interaction",
    "example",
    "adapter",
    "training_run",
    "audit_event",
    "job_lease",
    "vote",
    "request_nonce",
    "suspect_document",
    "slack_event",
}


def test_migration_creates_every_table_and_is_idempotent(tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    engine = open_database(url)
    assert TABLES <= set(inspect(engine).get_table_names())
    open_database(url)  # a second start must not fail or duplicate anything
    with engine.connect() as conn:
        assert conn.execute(text("select version_num from alembic_version")).scalar() == head_revision()


def head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from storage.db import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()


def test_examples_from_before_routing_become_behaviour(tmp_path):
    """Migration 0004: every correction stored before kinds existed went to training, so it is behaviour."""
    from alembic import command
    from alembic.config import Config

    from storage.db import MIGRATIONS, make_engine

    url = f"sqlite:///{tmp_path / 'old.db'}"
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url)
    command.upgrade(config, "0003")
    old = make_engine(url)
    with old.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO example (created_at, updated_at, track, question, corrected_answer, origin, "
                "status, split, content_hash) VALUES ('2026-01-01', '2026-01-01', 'default', 'q', 'a', "
                "'correction', 'approved', 'train', 'h')"
            )
        )
    old.dispose()
    engine = open_database(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT kind, superseded_by, indexed_at FROM example")).one() == (
            "behaviour",
            None,
            None,
        )


def test_sqlite_runs_in_wal_mode_with_busy_timeout(engine):
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30000


@pytest.mark.parametrize("url", ["not a url", "sqlite//missing-colon", "nosuchdriver://x/y"])
def test_malformed_database_url_names_the_url(url):
    with pytest.raises(DatabaseError) as info:
        make_engine(url)
    assert url.split("/")[0] in str(info.value)


def test_session_scope_rolls_back_on_interrupt(db):
    with pytest.raises(KeyboardInterrupt), session_scope(db) as session:
        session.add(AuditEvent(actor="u", action="a"))
        session.flush()
        raise KeyboardInterrupt
    with session_scope(db) as session:
        assert session.query(AuditEvent).count() == 0


def test_interaction_json_columns_round_trip(db):
    row = add_interaction(
        db,
        question="q",
        answer="a",
        sources=[{"title": "t", "score": 0.5}],
        format_violations=["missing heading"],
    )
    with session_scope(db) as session:
        again = session.get(Interaction, row.id)
        assert again.sources == [{"title": "t", "score": 0.5}]
        assert again.format_violations == ["missing heading"]


def test_votes_are_one_per_person_and_changeable(db):
    row = add_interaction(db, question="q", answer="a")
    record_vote(db, row.id, "U1", 1)
    record_vote(db, row.id, "U2", -1)
    updated = record_vote(db, row.id, "U1", -1)
    assert updated.votes == {"U1": -1, "U2": -1}
    assert updated.feedback == -1
    assert record_vote(db, 9999, "U1", 1) is None


def test_examples_are_deduplicated_after_normalisation(db):
    first = add_example(db, "How do I  book leave?", "Use the HR portal.", author_id="U1")
    with pytest.raises(DuplicateExample) as info:
        add_example(db, "how do i book LEAVE?", "use the hr portal.", author_id="U2")
    assert info.value.existing.id == first.id
    # Another track may hold the same pair.
    add_example(db, "How do I book leave?", "Use the HR portal.", track="support")


def test_split_is_fixed_by_the_question_and_roughly_80_20():
    questions = [f"question number {i}" for i in range(2000)]
    splits = [split_for(q) for q in questions]
    assert splits == [split_for(q) for q in questions]
    assert 0.15 < splits.count("test") / len(splits) < 0.25
    assert content_hash("A  b", "C") == content_hash("a b", "c")


def test_two_clicks_approve_once(db):
    example = add_example(db, "q", "corrected")
    results = []
    barrier = threading.Barrier(2)

    def click(user):
        barrier.wait()
        results.append(review_example(db, example.id, "approved", user))

    threads = [threading.Thread(target=click, args=(u,)) for u in ("R1", "R2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r is not None for r in results) == 1
    assert review_example(db, example.id, "rejected", "R3") is None
    (stored,) = list_examples(db, status="approved")
    assert stored.reviewer_id in {"R1", "R2"}
    with session_scope(db) as session:
        assert session.query(AuditEvent).filter(AuditEvent.action == "example.approved").count() == 1


def test_edit_and_approve_replaces_the_answer(db):
    example = add_example(db, "q", "draft")
    row = review_example(db, example.id, "approved", "R1", corrected_answer="final")
    assert row.corrected_answer == "final"
    assert row.content_hash == content_hash("q", "final")


def test_one_run_per_track_even_when_racing(db):
    winners = []
    barrier = threading.Barrier(4)

    def race():
        barrier.wait()
        winners.append(acquire_run(db, "default", "scheduler"))

    threads = [threading.Thread(target=race) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    runs = [w for w in winners if w is not None]
    assert len(runs) == 1
    run = runs[0]
    other = acquire_run(db, "support", "admin")
    assert other is not None  # other tracks are independent
    assert start_run(db, run.id) is True
    assert start_run(db, run.id) is False
    assert heartbeat(db, run.id) is True
    assert stale_runs(db, timedelta(seconds=60)) == []
    assert [r.id for r in stale_runs(db, timedelta(seconds=-1))] == [run.id, other.id]
    assert finish_run(db, run.id, "failed", error="boom") is True
    assert finish_run(db, run.id, "succeeded") is False
    assert acquire_run(db, "default", "scheduler") is not None  # the lease is free again
