"""The append-only audit log."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, select

from storage.db import session_scope
from storage.models import AuditEvent


def record(session: Session, actor: str, action: str, target: str | None = None, **details: Any) -> AuditEvent:
    """Add an audit event inside the caller's transaction, so it commits or rolls back with the change."""
    event = AuditEvent(actor=actor or "system", action=action, target=target, details=details)
    session.add(event)
    return event


def audit(engine: Engine, actor: str, action: str, target: str | None = None, **details: Any) -> None:
    with session_scope(engine) as session:
        record(session, actor, action, target, **details)


def list_events(engine: Engine, limit: int = 100, action: str | None = None) -> list[AuditEvent]:
    with session_scope(engine) as session:
        query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
        if action:
            query = query.where(AuditEvent.action == action)
        return list(session.exec(query))
