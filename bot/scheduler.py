"""The scheduler: starts training runs on its own, reaps dead ones, summarises the day.

APScheduler 3.x with an in-memory job store: every process registers its jobs at start, and job
stores are never shared between schedulers (APScheduler's own rule). Several processes may run a
scheduler against one database: a job that must run once across them (the threshold check, the
daily summary, pruning) first takes its lease in the database (storage/leases.py), and the
training_run lease (a unique column) makes sure only one run per track is ever in flight. The reaper
runs in every process: it alone knows the training processes it started.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.exc import OperationalError

from storage.events import prune_events
from storage.examples import count_examples, tracks_with_examples
from storage.leases import take_lease
from storage.models import ACTIVE_RUN_STATUSES, ExampleStatus, RunStatus, utcnow
from storage.runs import acquire_run, active_run, finish_run, get_run, list_runs, stale_runs
from storage.usage import count_unused_examples, used_example_ids  # noqa: F401 - read here by bot/advice.py

log = logging.getLogger("apprenti.scheduler")

_RUNTIME = None  # the Runtime used when a job is called without one (`apprenti worker --once`, tests)
_PROCESSES: dict[int, subprocess.Popen] = {}


def bind(runtime) -> None:
    global _RUNTIME
    _RUNTIME = runtime


def _runtime():
    if _RUNTIME is None:
        raise RuntimeError("the scheduler's jobs need bot.scheduler.bind(runtime) first")
    return _RUNTIME


# --- the trigger policy --------------------------------------------------------------------------
@dataclass
class TrackReadiness:
    track: str
    approved: int
    unused: int
    threshold: int
    in_flight: int | None = None
    last_run_at: datetime | None = None
    runs_today: int = 0
    reasons: list[str] = field(default_factory=list)

    @property
    def due(self) -> bool:
        return not self.reasons

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "due": self.due}


def in_quiet_hours(quiet_hours: str | None, now: datetime) -> bool:
    if not quiet_hours:
        return False
    start, end = (int(part) for part in quiet_hours.split("-"))
    hour = now.hour
    return start <= hour < end if start <= end else (hour >= start or hour < end)


def readiness(
    engine, settings, track: str, *, force: bool = False, now: datetime | None = None
) -> TrackReadiness:
    """Whether a track should train now, and if not, every reason why."""
    now = now or utcnow()
    approved = count_examples(engine, status=ExampleStatus.approved.value, track=track)
    unused = count_unused_examples(engine, track)
    runs = list_runs(engine, track, limit=50)
    finished = [r for r in runs if r.status not in (RunStatus.queued.value, RunStatus.running.value)]
    today = [r for r in runs if r.created_at >= now - timedelta(days=1)]
    flight = active_run(engine, track)
    state = TrackReadiness(
        track=track,
        approved=approved,
        unused=unused,
        threshold=settings.train_threshold,
        in_flight=flight.id if flight else None,
        last_run_at=finished[0].created_at if finished else None,
        runs_today=len(today),
    )
    if flight:
        state.reasons.append(f"run #{flight.id} is already {flight.status}")
    if approved < settings.min_examples:
        state.reasons.append(f"{approved} approved examples; training needs at least {settings.min_examples}")
    if force:
        return state
    if unused < settings.train_threshold:
        state.reasons.append(f"{unused} new approved examples; the threshold is {settings.train_threshold}")
    if state.last_run_at and now - state.last_run_at < timedelta(seconds=settings.train_min_interval):
        state.reasons.append(f"last run was less than {settings.train_min_interval} s ago")
    if settings.train_daily_cap and len(today) >= settings.train_daily_cap:
        state.reasons.append(f"{len(today)} runs in the last day; the cap is {settings.train_daily_cap}")
    if in_quiet_hours(settings.quiet_hours, now):  # the hours are UTC, as `now` is
        state.reasons.append(f"quiet hours ({settings.quiet_hours})")
    return state


# --- starting a run ------------------------------------------------------------------------------
SLACK_SECRETS = ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET")


def spawn_training(runtime, run_id: int) -> subprocess.Popen:
    """Start `apprenti train --run N` in its own process, with its output in a log file."""
    from bot.settings import settings_env

    log_path = runtime.settings.logs_dir / f"run-{run_id}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **settings_env(runtime.settings)}
    for name in SLACK_SECRETS:  # training talks to no one: a leaked log or a plugin bug cannot show them
        env.pop(name, None)
    with open(log_path, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot.cli.main", "train", "--run", str(run_id), "--json"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    _PROCESSES[run_id] = process
    log.info("training run #%s started as pid %s (log %s)", run_id, process.pid, log_path)
    return process


def start_run(runtime, track: str, trigger: str, actor: str | None = None, *, force: bool = False):
    """Take the lease and spawn the training process. Returns (run or None, readiness)."""
    state = readiness(runtime.engine, runtime.settings, track, force=force)
    if not state.due:
        return None, state
    run = acquire_run(runtime.engine, track, trigger, actor)
    if run is None:  # another process won the race
        state.reasons.append("another process has just started a run for this track")
        return None, state
    try:
        spawn_training(runtime, run.id)
    except OSError as exc:
        finish_run(
            runtime.engine, run.id, RunStatus.failed, error=f"cannot start the training process: {exc}"
        )
        raise
    notify = runtime.notify
    if notify is not None:
        notify.run_queued(run, state)
    return run, state


# --- jobs (each takes the Runtime; without one, the bound one) ------------------------------------
def check_thresholds(runtime=None) -> list[int]:
    """Start a run for every track that is due. Returns the ids of the runs started."""
    runtime = runtime or _runtime()
    started = []
    for track in tracks_with_examples(runtime.engine):
        run, state = start_run(runtime, track, "scheduler")
        if run is not None:
            started.append(run.id)
        else:
            log.debug("track %s not due: %s", track, "; ".join(state.reasons))
    return started


def _log_tail(path: str | None, lines: int = 20) -> str:
    if not path or not Path(path).is_file():
        return ""
    text = Path(path).read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def _process_gone(run) -> bool:
    """True when the run's process is known to have exited (a process of ours, or one on this host)."""
    process = _PROCESSES.get(run.id)
    if process is not None:
        return process.poll() is not None
    if run.status != RunStatus.running.value or not run.worker_pid or run.worker_host != socket.gethostname():
        return False
    try:
        os.kill(run.worker_pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(run.worker_pid)


def _is_zombie(pid: int) -> bool:
    """A dead process whose parent has not collected it still answers signal 0 (Linux: state Z)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def reap_runs(runtime=None) -> list[int]:
    """Mark failed every in-flight run whose heartbeat stopped or whose process died."""
    runtime = runtime or _runtime()
    engine, timeout = runtime.engine, timedelta(seconds=runtime.settings.heartbeat_timeout)
    stale = {r.id: r for r in stale_runs(engine, timeout)}
    for run in list_runs(engine, limit=50):
        if run.status in (RunStatus.queued.value, RunStatus.running.value) and _process_gone(run):
            stale.setdefault(run.id, run)
    reaped = []
    for run in stale.values():
        gone = _process_gone(run)
        process = _PROCESSES.pop(run.id, None)
        if process is not None and process.poll() is None:
            process.kill()
        reason = (
            "the training process exited without finishing the run"
            if gone
            else f"no heartbeat for {runtime.settings.heartbeat_timeout} s"
        )
        tail = _log_tail(run.log_path or str(runtime.settings.logs_dir / f"run-{run.id}.log"))
        if finish_run(engine, run.id, RunStatus.failed, error=f"{reason}\n{tail}".strip()):
            reaped.append(run.id)
            log.warning("training run #%s marked failed: %s", run.id, reason)
            notify = runtime.notify
            if notify is not None:
                notify.run_finished(get_run(engine, run.id))
    for run_id, process in list(_PROCESSES.items()):
        if process.poll() is not None:
            _PROCESSES.pop(run_id, None)
            # The training process has no Slack token: its starter posts the report.
            notify = runtime.notify
            run = get_run(engine, run_id)
            if (
                notify is not None
                and run is not None
                and run_id not in reaped
                and run.status not in ACTIVE_RUN_STATUSES
            ):
                try:
                    notify.run_finished(run)
                except Exception:  # noqa: BLE001 - a Slack failure must not stop the scheduler
                    log.exception("could not post the report of run #%s", run_id)
    return reaped


def daily_summary(runtime=None) -> dict[str, Any]:
    """Post (or log) what happened in the last day: runs, their outcome, the adapters in service."""
    runtime = runtime or _runtime()
    since = utcnow() - timedelta(days=1)
    runs = [r for r in list_runs(runtime.engine, limit=200) if r.created_at >= since]
    summary = {
        "runs": len(runs),
        "by_status": {s: sum(r.status == s for r in runs) for s in {r.status for r in runs}},
        "tracks": {
            t: readiness(runtime.engine, runtime.settings, t).to_json()
            for t in tracks_with_examples(runtime.engine)
        },
    }
    notify = runtime.notify
    if notify is not None:
        notify.daily_summary(summary)
    log.info("daily summary: %s", summary)
    return summary


def weekly_documents(runtime=None) -> int:
    """Tell the admin channel which documents produced corrected answers (none: nothing is posted).
    Returns how many are listed."""
    from storage.knowledge import open_suspects

    runtime = runtime or _runtime()
    suspects = open_suspects(runtime.engine)
    notify = runtime.notify
    if suspects and notify is not None:
        from bot.slack.reports import knowledge_lines

        notify.weekly_documents(knowledge_lines(runtime.engine, limit=20))
    log.info("weekly notice: %d suspect document(s)", len(suspects))
    return len(suspects)


def prune_event_queue(runtime=None) -> int:
    """Forget the queued Slack events received more than two days ago, answered or not (Slack retries
    an event for minutes, not days; a retry of a forgotten one would be answered again)."""
    runtime = runtime or _runtime()
    pruned = prune_events(runtime.engine)
    log.info("pruned %d Slack events from the queue", pruned)
    return pruned


def _with_retry(job):
    """Run a job, retrying with backoff while the database is unreachable."""

    def wrapped(*args):
        delay = 1.0
        for attempt in range(5):
            try:
                return job(*args)
            except OperationalError as exc:
                log.warning(
                    "database unavailable for %s (attempt %d): %s", job.__name__, attempt + 1, exc.orig
                )
                time.sleep(delay)
                delay = min(delay * 2, 30)
        return None

    wrapped.__name__ = job.__name__
    return wrapped


def reap_and_check(runtime=None, holder: str | None = None) -> list[int]:
    """Free the leases of dead runs first, so their tracks can be due again in the same tick; then start
    what is due, in the one scheduler that takes the check lease (always, when there is no holder:
    `apprenti worker --once`)."""
    runtime = runtime or _runtime()
    reap_runs(runtime)
    ttl = timedelta(seconds=0.9 * runtime.settings.scheduler_interval)  # free again before the next tick
    if holder is not None and not take_lease(runtime.engine, "scheduler:check", holder, ttl):
        return []
    return check_thresholds(runtime)


def run_check(runtime=None, holder: str | None = None) -> list[int]:
    return _with_retry(reap_and_check)(runtime, holder) or []


def run_reaper(runtime=None) -> list[int]:
    return _with_retry(reap_runs)(runtime) or []


def _once(lease: str, ttl: timedelta, job):
    """`job(runtime)` run only by the scheduler that takes `lease`, as a retried scheduler job."""

    def leased(runtime, holder: str):
        if not take_lease(runtime.engine, lease, holder, ttl):
            log.debug("%s: another process holds the lease %s", job.__name__, lease)
            return None
        return job(runtime)

    leased.__name__ = job.__name__
    return _with_retry(leased)


def make_scheduler(runtime, *, start: bool = True):
    """A BackgroundScheduler for this process, its jobs in memory; the once-only ones take a lease."""
    from apscheduler.schedulers.background import BackgroundScheduler

    bind(runtime)
    settings = runtime.settings
    # This scheduler's name in the lease table: two schedulers, even in one process, never share it.
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    scheduler = BackgroundScheduler(
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60}
    )
    scheduler.add_job(
        run_check,
        "interval",
        args=(runtime, holder),
        seconds=settings.scheduler_interval,
        id="apprenti-check",
        next_run_time=datetime.now(),
    )
    scheduler.add_job(
        run_reaper,
        "interval",
        args=(runtime,),
        id="apprenti-reaper",
        seconds=max(5, min(60, settings.heartbeat_timeout // 3)),
    )
    # The summary's lease outlives every clock skew between processes and expires before the next day.
    scheduler.add_job(
        _once("scheduler:daily-summary", timedelta(hours=12), daily_summary),
        "cron",
        args=(runtime, holder),
        hour=9,
        minute=0,
        id="apprenti-daily-summary",
    )
    scheduler.add_job(
        _once("scheduler:weekly-documents", timedelta(days=3), weekly_documents),
        "cron",
        args=(runtime, holder),
        day_of_week="mon",
        hour=9,
        minute=5,
        id="apprenti-weekly-documents",
    )
    scheduler.add_job(
        _once("scheduler:prune-events", timedelta(minutes=50), prune_event_queue),
        "interval",
        args=(runtime, holder),
        hours=1,
        id="apprenti-prune-events",
    )
    if start:
        scheduler.start()
    return scheduler
