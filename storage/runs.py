"""Training runs. The row is the lease: at most one queued or running run per track, enforced by a
unique column that holds the track name only while the run is in flight."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta

from sqlalchemy import Engine, func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from storage.audit import record
from storage.db import session_scope
from storage.models import ACTIVE_RUN_STATUSES, RunStatus, TrainingRun, utcnow


def acquire_run(
    engine: Engine, track: str, trigger: str, triggered_by: str | None = None
) -> TrainingRun | None:
    """Insert a queued run for the track, or None when one is already in flight (another process won)."""
    try:
        with session_scope(engine) as session:
            run = TrainingRun(
                track=track,
                trigger=trigger,
                triggered_by=triggered_by,
                lease=track,
                status=RunStatus.queued.value,
            )
            session.add(run)
            session.flush()
            record(
                session, triggered_by or trigger, "run.queued", f"run:{run.id}", track=track, trigger=trigger
            )
            session.refresh(run)
            return run
    except IntegrityError:
        return None


def get_run(engine: Engine, run_id: int) -> TrainingRun | None:
    with session_scope(engine) as session:
        return session.get(TrainingRun, run_id)


def active_run(engine: Engine, track: str) -> TrainingRun | None:
    with session_scope(engine) as session:
        return session.exec(select(TrainingRun).where(TrainingRun.lease == track)).first()


def start_run(engine: Engine, run_id: int, log_path: str | None = None) -> bool:
    """Mark a queued run running in this process; False when it is not queued any more."""
    now = utcnow()
    with session_scope(engine) as session:
        result = session.execute(
            update(TrainingRun)
            .where(TrainingRun.id == run_id, TrainingRun.status == RunStatus.queued.value)
            .values(
                status=RunStatus.running.value,
                started_at=now,
                heartbeat_at=now,
                worker_host=socket.gethostname(),
                worker_pid=os.getpid(),
                log_path=log_path,
            )
        )
        return result.rowcount == 1


def heartbeat(engine: Engine, run_id: int) -> bool:
    with session_scope(engine) as session:
        result = session.execute(
            update(TrainingRun)
            .where(TrainingRun.id == run_id, TrainingRun.status.in_(ACTIVE_RUN_STATUSES))
            .values(heartbeat_at=utcnow())
        )
        return result.rowcount == 1


def finish_run(
    engine: Engine,
    run_id: int,
    status: RunStatus | str,
    error: str | None = None,
    adapter_name: str | None = None,
) -> bool:
    """Close a run and release its lease. Only an in-flight run changes."""
    status = RunStatus(status)
    with session_scope(engine) as session:
        result = session.execute(
            update(TrainingRun)
            .where(TrainingRun.id == run_id, TrainingRun.status.in_(ACTIVE_RUN_STATUSES))
            .values(
                status=status.value, finished_at=utcnow(), error=error, lease=None, adapter_name=adapter_name
            )
        )
        if result.rowcount == 1:
            record(
                session, "system", f"run.{status.value}", f"run:{run_id}", error=error, adapter=adapter_name
            )
        return result.rowcount == 1


def stale_runs(engine: Engine, timeout: timedelta, now: datetime | None = None) -> list[TrainingRun]:
    """In-flight runs whose heartbeat (or creation, for queued ones) is older than the timeout."""
    limit = (now or utcnow()) - timeout
    with session_scope(engine) as session:
        runs = session.exec(
            select(TrainingRun).where(TrainingRun.status.in_(ACTIVE_RUN_STATUSES)).order_by(TrainingRun.id)
        ).all()
        return [r for r in runs if (r.heartbeat_at or r.created_at) < limit]


def list_runs(engine: Engine, track: str | None = None, limit: int = 20) -> list[TrainingRun]:
    with session_scope(engine) as session:
        query = select(TrainingRun).order_by(TrainingRun.id.desc()).limit(limit)
        if track:
            query = query.where(TrainingRun.track == track)
        return list(session.exec(query))


def run_counts(engine: Engine) -> list[tuple[str, str, int]]:
    """(track, status, number of runs) for every track and status that has runs."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(TrainingRun.track, TrainingRun.status, func.count()).group_by(
                TrainingRun.track, TrainingRun.status
            )
        ).all()
    return [(track, status, count) for track, status, count in rows]
