"""Writes that race: many activations at once leave one adapter in service (SQLite and Postgres), and
votes cast from two processes at once are all kept."""

from __future__ import annotations

import multiprocessing
import threading

import pytest
from sqlalchemy import text
from sqlmodel import select

from finetune.registry import ADAPTER_FILES, Registry, RegistryError
from storage.db import open_database, session_scope
from storage.interactions import add_interaction, get_interaction
from storage.models import Adapter, Vote

RACERS = 50


def candidates(engine, folder, count=RACERS) -> list[str]:
    names = []
    with session_scope(engine) as session:
        for version in range(1, count + 1):
            path = folder / f"v{version}"
            path.mkdir(parents=True)
            for name in ADAPTER_FILES:
                (path / name).write_text("{}")
            session.add(
                Adapter(
                    track="default",
                    version=version,
                    name=f"default/v{version}",
                    base_model="tiny",
                    path=str(path),
                    status="candidate",
                )
            )
            names.append(f"default/v{version}")
    return names


def race_activations(engine, folder) -> tuple[int, list[str]]:
    registry = Registry(engine, folder)
    names = candidates(engine, folder)
    barrier = threading.Barrier(len(names))
    errors: list[str] = []

    def activate(name):
        barrier.wait()
        try:
            registry.activate(name, "UADMIN")
        except RegistryError as exc:  # refused cleanly is fine; two in service is not
            errors.append(str(exc))

    threads = [threading.Thread(target=activate, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with session_scope(engine) as session:
        active = session.exec(select(Adapter).where(Adapter.status == "active")).all()
    return len(active), errors


def test_fifty_concurrent_activations_leave_one_active_on_sqlite(engine, tmp_path):
    active, errors = race_activations(engine, tmp_path / "adapters")
    assert active == 1
    assert not [e for e in errors if "same time" not in e and "changed while" not in e]


def test_fifty_concurrent_activations_leave_one_active_on_postgres(pg_engine, tmp_path):
    active, errors = race_activations(pg_engine, tmp_path / "adapters")
    assert active == 1
    assert not [e for e in errors if "same time" not in e and "changed while" not in e]


def test_the_database_refuses_a_second_active_version(engine, tmp_path):
    candidates(engine, tmp_path / "adapters", count=2)
    with pytest.raises(Exception, match="UNIQUE"):
        with session_scope(engine) as session:
            session.execute(text("UPDATE adapter SET status = 'active'"))


def _vote_many(url: str, interaction_id: int, users: list[str], start) -> None:
    from storage.db import make_engine
    from storage.interactions import record_vote

    engine = make_engine(url)
    with engine.connect():  # connected (and its imports done) before the start, so the two overlap
        pass
    start.wait()
    for user in users:
        record_vote(engine, interaction_id, user, 1 if int(user[1:]) % 2 else -1)
    engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_fifty_votes_from_two_processes_are_all_kept(backend, tmp_path, request):
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'votes.db'}"
        engine = open_database(url)
    else:
        engine = request.getfixturevalue("pg_engine")
        url = engine.url.render_as_string(hide_password=False)
    row = add_interaction(engine, channel_id="C1", user_id="UASKER", question="q?", answer="a.")
    users = [f"U{i}" for i in range(RACERS)]
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    workers = [context.Process(target=_vote_many, args=(url, row.id, users[i::2], start)) for i in range(2)]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    stored = get_interaction(engine, row.id)
    with session_scope(engine) as session:
        rows = session.exec(select(Vote).where(Vote.interaction_id == row.id)).all()
    assert len(rows) == RACERS and len(stored.votes) == RACERS
    assert stored.feedback == 0  # 25 up, 25 down


def test_a_changed_vote_replaces_the_row(engine):
    from storage.interactions import record_vote

    row = add_interaction(engine, channel_id="C1", user_id="UASKER", question="q?", answer="a.")
    record_vote(engine, row.id, "U1", 1)
    assert record_vote(engine, row.id, "U1", -1).votes == {"U1": -1}
    with session_scope(engine) as session:
        assert [(v.user_id, v.value) for v in session.exec(select(Vote))] == [("U1", -1)]
