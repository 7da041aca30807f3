"""Named leases in the database: a job that must run once across every process sharing the database
(the daily summary, pruning, the threshold check) runs only in the process that holds its lease.

A lease is held by one holder until it expires; its holder may renew it at any time, anyone else
may take it once it has expired. Taking is one conditional UPDATE (or the INSERT of a primary key),
so two processes racing for a lease never both get it, on SQLite or PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel

from storage.db import session_scope
from storage.models import utcnow


class JobLease(SQLModel, table=True):
    """Who runs a once-only job for now (migration 0002)."""

    __tablename__ = "job_lease"

    name: str = Field(primary_key=True)
    holder: str
    expires_at: datetime


def take_lease(
    engine: Engine, name: str, holder: str, ttl: timedelta, *, now: datetime | None = None
) -> bool:
    """True when `holder` holds the lease `name` for `ttl` from now: it was free, expired or already its
    own."""
    now = now or utcnow()
    with session_scope(engine) as session:
        renewed = session.execute(
            update(JobLease)
            .where(JobLease.name == name, or_(JobLease.holder == holder, JobLease.expires_at <= now))
            .values(holder=holder, expires_at=now + ttl)
        ).rowcount
    if renewed:
        return True
    try:
        with session_scope(engine) as session:
            session.add(JobLease(name=name, holder=holder, expires_at=now + ttl))
        return True
    except IntegrityError:  # someone else holds it (or has just inserted it)
        return False
