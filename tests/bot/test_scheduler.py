from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from bot import scheduler
from bot.runtime import Runtime
from bot.settings import load_settings
from storage.db import session_scope
from storage.examples import add_example, review_example
from storage.models import Adapter, RunStatus
from storage.runs import acquire_run, get_run, start_run


@pytest.fixture
def runtime(isolated_env):
    rt = Runtime(
        load_settings(
            train_threshold=3, min_examples=3, train_min_interval=0, train_daily_cap=0, heartbeat_timeout=30
        )
    )
    scheduler.bind(rt)
    return rt


def approve(engine, n, track="default", start=0):
    ids = []
    for i in range(start, start + n):
        ex = add_example(engine, f"question {i}?", f"answer {i}.", track=track)
        review_example(engine, ex.id, "approved", "R1")
        ids.append(ex.id)
    return ids


def test_a_track_is_due_only_past_the_threshold(runtime):
    engine = runtime.engine
    approve(engine, 2)
    state = scheduler.readiness(engine, runtime.settings, "default")
    assert not state.due
    assert any("threshold is 3" in r for r in state.reasons)
    approve(engine, 1, start=2)
    assert scheduler.readiness(engine, runtime.settings, "default").due


def test_examples_used_by_an_adapter_do_not_count_again(runtime):
    engine = runtime.engine
    ids = approve(engine, 3)
    with session_scope(engine) as s:
        s.add(
            Adapter(
                track="default",
                version=1,
                name="default/v1",
                base_model="m",
                path="/x",
                status="active",
                example_ids=ids,
            )
        )
    state = scheduler.readiness(engine, runtime.settings, "default")
    assert state.unused == 0 and not state.due
    # A forced run (admin retrain) ignores the threshold but not the minimum size.
    assert scheduler.readiness(engine, runtime.settings, "default", force=True).due


def test_a_run_in_flight_blocks_another(runtime):
    approve(runtime.engine, 3)
    run = acquire_run(runtime.engine, "default", "admin")
    state = scheduler.readiness(runtime.engine, runtime.settings, "default", force=True)
    assert not state.due and f"run #{run.id}" in state.reasons[0]


def test_daily_cap_and_interval(runtime):
    settings = load_settings(train_threshold=3, min_examples=3, train_min_interval=3600, train_daily_cap=1)
    approve(runtime.engine, 3)
    run = acquire_run(runtime.engine, "default", "admin")
    from storage.runs import finish_run

    finish_run(runtime.engine, run.id, "failed", error="x")
    reasons = " ".join(scheduler.readiness(runtime.engine, settings, "default").reasons)
    assert "cap is 1" in reasons and "less than 3600 s ago" in reasons


@pytest.mark.parametrize(
    ("hours", "now", "quiet"),
    [
        ("08-18", 9, True),
        ("08-18", 18, False),
        ("22-06", 23, True),
        ("22-06", 5, True),
        ("22-06", 12, False),
        (None, 3, False),
    ],
)
def test_quiet_hours(hours, now, quiet):
    assert scheduler.in_quiet_hours(hours, datetime(2026, 1, 1, now)) is quiet


def test_reaper_fails_a_run_whose_process_was_killed(runtime):
    engine = runtime.engine
    run = acquire_run(engine, "default", "scheduler")
    log = runtime.settings.logs_dir / f"run-{run.id}.log"
    runtime.home  # noqa: B018
    log.write_text("step 1 loss 2.3\nstep 2 loss 2.1\n")
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    scheduler._PROCESSES[run.id] = victim
    start_run(engine, run.id, str(log))
    victim.kill()
    victim.wait()
    assert scheduler.reap_runs() == [run.id]
    stored = get_run(engine, run.id)
    assert stored.status == RunStatus.failed.value and stored.lease is None
    assert "exited without finishing" in stored.error and "step 2 loss 2.1" in stored.error


def test_reaper_fails_a_silent_run(runtime):
    engine = runtime.engine
    run = acquire_run(engine, "default", "scheduler")
    from sqlalchemy import update

    from storage.models import TrainingRun, utcnow

    with session_scope(engine) as s:
        s.execute(
            update(TrainingRun)
            .where(TrainingRun.id == run.id)
            .values(status="running", heartbeat_at=utcnow() - timedelta(minutes=5))
        )
    assert scheduler.reap_runs() == [run.id]
    assert "no heartbeat for 30 s" in get_run(engine, run.id).error


def test_a_lost_database_is_retried_with_backoff(monkeypatch):
    from sqlalchemy.exc import OperationalError

    sleeps, calls = [], []
    monkeypatch.setattr(scheduler.time, "sleep", sleeps.append)

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise OperationalError("select 1", {}, Exception("connection refused"))
        return ["started"]

    assert scheduler._with_retry(flaky)() == ["started"]
    assert sleeps == [1.0, 2.0]

    def down():
        raise OperationalError("select 1", {}, Exception("connection refused"))

    sleeps.clear()
    assert scheduler._with_retry(down)() is None  # gives up after five tries; the next tick tries again
    assert sleeps == [1.0, 2.0, 4.0, 8.0, 16.0]


def test_quiet_hours_follow_the_clock_given_in_utc(isolated_env):
    rt = Runtime(
        load_settings(
            train_threshold=3, min_examples=3, train_min_interval=0, train_daily_cap=0, quiet_hours="08-18"
        )
    )
    approve(rt.engine, 3)
    office = scheduler.readiness(rt.engine, rt.settings, "default", now=datetime(2026, 1, 1, 9, tzinfo=UTC))
    night = scheduler.readiness(rt.engine, rt.settings, "default", now=datetime(2026, 1, 1, 20, tzinfo=UTC))
    assert office.reasons == ["quiet hours (08-18)"]
    assert night.due


def test_unused_examples_are_counted_in_the_database_not_one_query_each(runtime):
    from sqlalchemy import event

    engine = runtime.engine
    ids = approve(engine, 40)
    with session_scope(engine) as s:
        s.add(
            Adapter(
                track="default",
                version=1,
                name="default/v1",
                base_model="m",
                path="/x",
                status="active",
                example_ids=ids[:25],
            )
        )
    statements = []
    event.listen(
        engine,
        "before_cursor_execute",
        lambda *args: None if args[2].startswith("BEGIN") else statements.append(args[2]),
    )
    state = scheduler.readiness(engine, runtime.settings, "default")
    assert (state.approved, state.unused) == (40, 15)
    assert len(statements) <= 6, statements


class Notices:
    """What a scheduler would post to the admin channel."""

    def __init__(self):
        self.summaries = []

    def daily_summary(self, summary):
        self.summaries.append(summary)


def _job(sched, job_id):
    """Run one of a (not started) scheduler's jobs now, as APScheduler would."""
    job = sched.get_job(job_id)
    return job.func(*job.args, **job.kwargs)


def test_two_schedulers_sharing_one_database_post_the_daily_summary_once(isolated_env):
    first, second = Runtime(load_settings()), Runtime(load_settings())  # two processes, one database
    first.notify, second.notify = Notices(), Notices()
    schedulers = [scheduler.make_scheduler(first, start=False), scheduler.make_scheduler(second, start=False)]
    for sched in schedulers:
        _job(sched, "apprenti-daily-summary")
    assert len(first.notify.summaries) + len(second.notify.summaries) == 1
    assert first.notify.summaries  # the first to reach the lease posts


def test_one_threshold_check_per_tick_across_schedulers(isolated_env, monkeypatch):
    first, second = Runtime(load_settings()), Runtime(load_settings())
    checked = []
    monkeypatch.setattr(scheduler, "check_thresholds", lambda rt=None: checked.append(rt) or [])
    for rt in (first, second):
        _job(scheduler.make_scheduler(rt, start=False), "apprenti-check")
    assert checked == [first]


def test_jobs_live_in_memory_and_old_queued_events_are_pruned_on_a_schedule(runtime):
    from sqlalchemy import inspect

    from storage.events import enqueue_event
    from storage.models import SlackEvent, utcnow

    enqueue_event(
        runtime.engine, "Ev-old", "{}", "replica-a", timedelta(seconds=30), now=utcnow() - timedelta(days=3)
    )
    enqueue_event(runtime.engine, "Ev-new", "{}", "replica-a", timedelta(seconds=30))
    sched = scheduler.make_scheduler(runtime, start=False)
    sched.start(paused=True)
    try:
        assert {"apprenti-check", "apprenti-reaper", "apprenti-daily-summary", "apprenti-prune-events"} <= {
            job.id for job in sched.get_jobs()
        }
        assert not inspect(runtime.engine).has_table("apscheduler_jobs")  # nothing shared between schedulers
        assert _job(sched, "apprenti-prune-events") == 1
    finally:
        sched.shutdown(wait=False)
    with session_scope(runtime.engine) as s:
        assert [e.event_id for e in s.query(SlackEvent)] == ["Ev-new"]
