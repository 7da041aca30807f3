"""The scheduler: starts training runs on its own, reaps dead ones, summarises the day.

APScheduler 3.x with its jobs in the same database (SQLAlchemyJobStore). Jobs are module-level
functions (a persistent job store stores them by import path); they find this process's Runtime
through `bind()`. Several processes may run a scheduler against one database: the training_run
lease (a unique column) makes sure only one run per track is ever in flight, whoever wins.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.exc import OperationalError

from storage.adapters import list_adapters
from storage.examples import approved_examples, tracks_with_examples
from storage.models import AdapterStatus, RunStatus, utcnow
from storage.runs import acquire_run, active_run, finish_run, get_run, list_runs, stale_runs

log = logging.getLogger("apprenti.scheduler")

_RUNTIME = None  # the Runtime of this process, set by bind()
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


def used_example_ids(engine, track: str) -> set[int]:
    """Examples already part of an adapter that did not fail (rejected ones too: retraining on the
    same data would only be rejected again)."""
    used: set[int] = set()
    for adapter in list_adapters(engine, track):
        if adapter.status != AdapterStatus.failed.value:
            used.update(adapter.example_ids or [])
    return used


def in_quiet_hours(quiet_hours: str | None, now: datetime) -> bool:
    if not quiet_hours:
        return False
    start, end = (int(part) for part in quiet_hours.split("-"))
    hour = now.hour
    return start <= hour < end if start <= end else (hour >= start or hour < end)


def readiness(engine, settings, track: str, *, force: bool = False, now: datetime | None = None) -> TrackReadiness:
    """Whether a track should train now, and if not, every reason why."""
    now = now or utcnow()
    approved = approved_examples(engine, track)
    unused = [e for e in approved if e.id not in used_example_ids(engine, track)]
    runs = list_runs(engine, track, limit=50)
    finished = [r for r in runs if r.status not in (RunStatus.queued.value, RunStatus.running.value)]
    today = [r for r in runs if r.created_at >= now - timedelta(days=1)]
    flight = active_run(engine, track)
    state = TrackReadiness(track=track, approved=len(approved), unused=len(unused),
                           threshold=settings.train_threshold, in_flight=flight.id if flight else None,
                           last_run_at=finished[0].created_at if finished else None, runs_today=len(today))
    if flight:
        state.reasons.append(f"run #{flight.id} is already {flight.status}")
    if len(approved) < settings.min_examples:
        state.reasons.append(f"{len(approved)} approved examples; training needs at least {settings.min_examples}")
    if force:
        return state
    if len(unused) < settings.train_threshold:
        state.reasons.append(f"{len(unused)} new approved examples; the threshold is {settings.train_threshold}")
    if state.last_run_at and now - state.last_run_at < timedelta(seconds=settings.train_min_interval):
        state.reasons.append(f"last run was less than {settings.train_min_interval} s ago")
    if settings.train_daily_cap and len(today) >= settings.train_daily_cap:
        state.reasons.append(f"{len(today)} runs in the last day; the cap is {settings.train_daily_cap}")
    if in_quiet_hours(settings.quiet_hours, datetime.now()):
        state.reasons.append(f"quiet hours ({settings.quiet_hours})")
    return state


# --- starting a run ------------------------------------------------------------------------------
def spawn_training(runtime, run_id: int) -> subprocess.Popen:
    """Start `apprenti train --run N` in its own process, with its output in a log file."""
    from bot.settings import settings_env

    log_path = runtime.settings.logs_dir / f"run-{run_id}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **settings_env(runtime.settings)}
    with open(log_path, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot.cli.main", "train", "--run", str(run_id), "--json"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
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
        finish_run(runtime.engine, run.id, RunStatus.failed, error=f"cannot start the training process: {exc}")
        raise
    notify = getattr(runtime, "notify", None)
    if notify is not None:
        notify.run_queued(run, state)
    return run, state


# --- jobs (module-level: the job store refers to them by import path) ----------------------------
def check_thresholds() -> list[int]:
    """Start a run for every track that is due. Returns the ids of the runs started."""
    runtime = _runtime()
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


def reap_runs() -> list[int]:
    """Mark failed every in-flight run whose heartbeat stopped or whose process died."""
    runtime = _runtime()
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
        reason = ("the training process exited without finishing the run" if gone
                  else f"no heartbeat for {runtime.settings.heartbeat_timeout} s")
        tail = _log_tail(run.log_path or str(runtime.settings.logs_dir / f"run-{run.id}.log"))
        if finish_run(engine, run.id, RunStatus.failed, error=f"{reason}\n{tail}".strip()):
            reaped.append(run.id)
            log.warning("training run #%s marked failed: %s", run.id, reason)
            notify = getattr(runtime, "notify", None)
            if notify is not None:
                notify.run_finished(get_run(engine, run.id))
    for run_id, process in list(_PROCESSES.items()):
        if process.poll() is not None:
            _PROCESSES.pop(run_id, None)
    return reaped


def daily_summary() -> dict[str, Any]:
    """Post (or log) what happened in the last day: runs, their outcome, the adapters in service."""
    runtime = _runtime()
    since = utcnow() - timedelta(days=1)
    runs = [r for r in list_runs(runtime.engine, limit=200) if r.created_at >= since]
    summary = {
        "runs": len(runs),
        "by_status": {s: sum(r.status == s for r in runs) for s in {r.status for r in runs}},
        "tracks": {t: readiness(runtime.engine, runtime.settings, t).to_json()
                   for t in tracks_with_examples(runtime.engine)},
    }
    notify = getattr(runtime, "notify", None)
    if notify is not None:
        notify.daily_summary(summary)
    log.info("daily summary: %s", summary)
    return summary


def _with_retry(job):
    """Run a job, retrying with backoff while the database is unreachable."""

    def wrapped():
        delay = 1.0
        for attempt in range(5):
            try:
                return job()
            except OperationalError as exc:
                log.warning("database unavailable for %s (attempt %d): %s", job.__name__, attempt + 1, exc.orig)
                time.sleep(delay)
                delay = min(delay * 2, 30)
        return None

    wrapped.__name__ = job.__name__
    return wrapped


def reap_and_check() -> list[int]:
    """Free the leases of dead runs first, so their tracks can be due again in the same tick."""
    reap_runs()
    return check_thresholds()


def run_check() -> list[int]:
    return _with_retry(reap_and_check)() or []


def run_reaper() -> list[int]:
    return _with_retry(reap_runs)() or []


def run_summary() -> dict[str, Any]:
    return _with_retry(daily_summary)() or {}


def make_scheduler(runtime, *, start: bool = True):
    """A BackgroundScheduler whose jobs live in the application database."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    bind(runtime)
    settings = runtime.settings
    scheduler = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=runtime.engine, tablename="apscheduler_jobs")},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60},
    )
    scheduler.add_job("bot.scheduler:run_check", "interval", seconds=settings.scheduler_interval,
                      id="apprenti-check", replace_existing=True, next_run_time=datetime.now())
    scheduler.add_job("bot.scheduler:run_reaper", "interval", seconds=max(5, min(60, settings.heartbeat_timeout // 3)),
                      id="apprenti-reaper", replace_existing=True)
    scheduler.add_job("bot.scheduler:run_summary", "cron", hour=9, minute=0, id="apprenti-daily-summary",
                      replace_existing=True)
    if start:
        scheduler.start()
    return scheduler
