"""The durable queue of Slack events, and signed requests already served.

An event is written (already claimed by the process that received it) before Slack gets its ack;
its holder renews the claim while it works and marks it done once the answer is out. A holder that
dies stops renewing: when the claim expires, any other process may claim it, with one conditional
UPDATE, so two processes racing for it never both get it. The event id is the primary key, so a
Slack retry, on whichever process it lands, finds the row and is dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from storage.db import session_scope
from storage.models import RequestNonce, SlackEvent, SlackEventStatus, utcnow

# Slack's signatures are accepted for 5 minutes; a digest is kept a little longer than that.
NONCE_WINDOW = timedelta(minutes=6)
# Slack retries an event three times within about 5 minutes; done events are kept far longer than that.
RETENTION = timedelta(days=2)
QUEUED, DONE, FAILED = (
    SlackEventStatus.queued.value,
    SlackEventStatus.done.value,
    SlackEventStatus.failed.value,
)


def enqueue_event(
    engine: Engine, event_id: str, body: str, holder: str, ttl: timedelta, *, now: datetime | None = None
) -> bool:
    """Write a received event, claimed by `holder` for `ttl`. True when it is new; False for a retry
    or duplicate of an event already queued (by any process), which must not be handled again."""
    now = now or utcnow()
    try:
        with session_scope(engine) as session:
            session.add(
                SlackEvent(
                    event_id=event_id,
                    body=body,
                    received_at=now,
                    holder=holder,
                    expires_at=now + ttl,
                    attempts=1,
                )
            )
        return True
    except IntegrityError:
        return False


def enqueue_events(
    engine: Engine, events: list[tuple[str, str]], holder: str, ttl: timedelta, *, now: datetime | None = None
) -> set[str]:
    """Write many received events in one transaction (one commit for a burst of them), each claimed
    by `holder`; returns the ids that were new. An id already queued, or seen earlier in `events`,
    is not new (a retry)."""
    now = now or utcnow()
    first: dict[str, str] = {}
    for event_id, body in events:
        first.setdefault(event_id, body)
    if not first:
        return set()
    rows = [
        {
            "event_id": event_id,
            "body": body,
            "received_at": now,
            "status": QUEUED,
            "holder": holder,
            "expires_at": now + ttl,
            "attempts": 1,
        }
        for event_id, body in first.items()
    ]
    dialect = engine.dialect.name
    if dialect not in ("postgresql", "sqlite"):
        return {
            row["event_id"]
            for row in rows
            if enqueue_event(engine, row["event_id"], row["body"], holder, ttl, now=now)
        }
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = (
        insert(SlackEvent)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(SlackEvent.event_id)
    )
    with session_scope(engine) as session:
        return set(session.execute(statement).scalars())


def claim_due(
    engine: Engine,
    holder: str,
    ttl: timedelta,
    *,
    limit: int = 8,
    max_attempts: int = 3,
    now: datetime | None = None,
) -> list[tuple[str, str]]:
    """Claim up to `limit` queued events whose claim expired (their holder died or gave them back),
    oldest first; returns their (event id, body). An event already tried `max_attempts` times is
    marked failed instead of being tried again."""
    now = now or utcnow()
    expired = (SlackEvent.status == QUEUED) & or_(
        SlackEvent.expires_at.is_(None), SlackEvent.expires_at <= now
    )
    with session_scope(engine) as session:
        session.execute(
            update(SlackEvent)
            .where(expired, SlackEvent.attempts >= max_attempts)
            .values(
                status=FAILED, holder=None, done_at=now, error=f"not answered after {max_attempts} attempts"
            )
        )
    if limit <= 0:
        return []
    with session_scope(engine) as session:
        candidates = (
            session.execute(
                select(SlackEvent.event_id).where(expired).order_by(SlackEvent.received_at).limit(limit)
            )
            .scalars()
            .all()
        )
    claimed = []
    for event_id in candidates:
        with session_scope(engine) as session:
            taken = session.execute(
                update(SlackEvent)
                .where(SlackEvent.event_id == event_id, expired, SlackEvent.attempts < max_attempts)
                .values(holder=holder, expires_at=now + ttl, attempts=SlackEvent.attempts + 1)
            ).rowcount
            if taken:
                claimed.append((event_id, session.get(SlackEvent, event_id).body))
    return claimed


def renew_events(
    engine: Engine, holder: str, event_ids: Iterable[str], ttl: timedelta, *, now: datetime | None = None
) -> set[str]:
    """Extend `holder`'s claims on these events; returns the ids still held (a claim another process
    took after it expired is not renewed)."""
    now = now or utcnow()
    ids = list(event_ids)
    held: set[str] = set()
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        with session_scope(engine) as session:
            session.execute(
                update(SlackEvent)
                .where(
                    SlackEvent.event_id.in_(chunk), SlackEvent.holder == holder, SlackEvent.status == QUEUED
                )
                .values(expires_at=now + ttl)
            )
            held.update(
                session.execute(
                    select(SlackEvent.event_id).where(
                        SlackEvent.event_id.in_(chunk),
                        SlackEvent.holder == holder,
                        SlackEvent.status == QUEUED,
                    )
                ).scalars()
            )
    return held


def finish_event(engine: Engine, event_id: str, holder: str, *, error: str | None = None) -> bool:
    """Mark an event done (its answer is out); False when `holder` no longer held it."""
    with session_scope(engine) as session:
        return bool(
            session.execute(
                update(SlackEvent)
                .where(
                    SlackEvent.event_id == event_id, SlackEvent.holder == holder, SlackEvent.status == QUEUED
                )
                .values(status=DONE, done_at=utcnow(), error=error)
            ).rowcount
        )


def release_events(engine: Engine, holder: str, event_ids: Iterable[str]) -> int:
    """Give claims back (a process shutting down with work not started): due for others at once."""
    ids = list(event_ids)
    if not ids:
        return 0
    with session_scope(engine) as session:
        return (
            session.execute(
                update(SlackEvent)
                .where(SlackEvent.event_id.in_(ids), SlackEvent.holder == holder, SlackEvent.status == QUEUED)
                .values(expires_at=utcnow(), attempts=SlackEvent.attempts - 1)
            ).rowcount
            or 0
        )


def queued_count(engine: Engine) -> int:
    """Events received and not yet answered, in every process (claimed or not)."""
    with session_scope(engine) as session:
        return session.execute(
            select(func.count()).select_from(SlackEvent).where(SlackEvent.status == QUEUED)
        ).scalar_one()


def get_event(engine: Engine, event_id: str) -> SlackEvent | None:
    with session_scope(engine) as session:
        return session.get(SlackEvent, event_id)


def prune_events(engine: Engine, older_than: timedelta = RETENTION) -> int:
    """Delete the events received longer ago than `older_than` (the scheduler does it hourly, one
    process at a time); returns how many."""
    cutoff = utcnow() - older_than
    with session_scope(engine) as session:
        return session.execute(delete(SlackEvent).where(SlackEvent.received_at < cutoff)).rowcount or 0


def claim_nonce(engine: Engine, digest: str) -> bool:
    """True the first time a signed request is seen, False for a replay of it (on any replica sharing
    the database). Digests older than the signature window are pruned on the way."""
    try:
        with session_scope(engine) as session:
            session.execute(delete(RequestNonce).where(RequestNonce.at < utcnow() - NONCE_WINDOW))
            session.add(RequestNonce(digest=digest))
        return True
    except IntegrityError:
        return False
