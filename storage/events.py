"""Slack event ids already handled, and signed requests already served: the first caller wins,
retries and replays are dropped."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine, delete
from sqlalchemy.exc import IntegrityError

from storage.db import session_scope
from storage.models import ProcessedEvent, RequestNonce, utcnow

# Slack's signatures are accepted for 5 minutes; a digest is kept a little longer than that.
NONCE_WINDOW = timedelta(minutes=6)


def claim_event(engine: Engine, event_id: str) -> bool:
    """True the first time an event id is seen, False for every retry or duplicate."""
    try:
        with session_scope(engine) as session:
            session.add(ProcessedEvent(event_id=event_id))
        return True
    except IntegrityError:
        return False


def prune_events(engine: Engine, older_than: timedelta = timedelta(days=2)) -> int:
    """Delete the event ids seen longer ago than `older_than` (the scheduler does it hourly); returns how many."""
    with session_scope(engine) as session:
        result = session.execute(delete(ProcessedEvent).where(ProcessedEvent.at < utcnow() - older_than))
        return result.rowcount or 0


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
