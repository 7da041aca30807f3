"""Job leases and the unused-example count, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from storage.db import session_scope
from storage.examples import add_example, review_example
from storage.leases import take_lease
from storage.models import Adapter, utcnow
from storage.usage import count_unused_examples, used_example_ids


@pytest.fixture(params=["sqlite", "postgres"])
def db(request):
    return request.getfixturevalue("engine" if request.param == "sqlite" else "pg_engine")


def test_a_lease_has_one_holder_until_it_expires(db):
    now, hour = utcnow(), timedelta(hours=1)
    assert take_lease(db, "daily", "A", hour, now=now)
    assert not take_lease(db, "daily", "B", hour, now=now + timedelta(minutes=59))
    assert take_lease(db, "daily", "A", hour, now=now + timedelta(minutes=30))  # the holder renews
    assert take_lease(db, "other", "B", hour, now=now)  # leases are independent
    assert take_lease(db, "daily", "B", hour, now=now + timedelta(minutes=91))  # expired: anyone takes it
    assert not take_lease(db, "daily", "A", hour, now=now + timedelta(minutes=92))


def test_racing_holders_take_a_lease_once(db):
    barrier, winners = threading.Barrier(4), []

    def race(holder):
        barrier.wait()
        if take_lease(db, "check", holder, timedelta(minutes=5)):
            winners.append(holder)

    threads = [threading.Thread(target=race, args=(f"H{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1


def test_unused_examples_leave_out_those_of_adapters_that_did_not_fail(db):
    ids = []
    for i in range(6):
        example = add_example(db, f"question {i}?", f"answer {i}.", track="hr")
        review_example(db, example.id, "approved", "R1")
        ids.append(example.id)
    add_example(db, "still pending?", "yes.", track="hr")
    with session_scope(db) as s:
        s.add(
            Adapter(
                track="hr",
                version=1,
                name="hr/v1",
                base_model="m",
                path="/x",
                status="rejected",
                example_ids=ids[:2],
            )
        )
        s.add(
            Adapter(
                track="hr",
                version=2,
                name="hr/v2",
                base_model="m",
                path="/x",
                status="failed",
                example_ids=ids[2:4],
            )
        )
        s.add(
            Adapter(
                track="it",
                version=1,
                name="it/v1",
                base_model="m",
                path="/x",
                status="active",
                example_ids=ids[4:5],
            )
        )
    assert used_example_ids(db, "hr") == set(ids[:2])
    assert count_unused_examples(db, "hr") == 4  # the failed adapter's and the other track's count again
    assert count_unused_examples(db, "it") == 0
