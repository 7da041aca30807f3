"""The append-only audit log.

Rows are never edited, with one exception: erasing a person replaces their id with a stable
pseudonym in every row (`pseudonymise`), so the log keeps what happened and no longer says to whom.
Files written with people's data (exports) are audited as `examples.export` with the ids they held,
so an erasure can list them (`exports_holding`).
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Engine, String, cast, or_
from sqlmodel import Session, select

from storage.db import session_scope
from storage.models import AuditEvent

EXPORT = "examples.export"


def record(
    session: Session, actor: str, action: str, target: str | None = None, **details: Any
) -> AuditEvent:
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


# --- erasure ---------------------------------------------------------------------------------------
def _replacer(user_id: str, pseudonym: str):
    # Whole ids only: erasing U1 leaves U12 alone (Slack ids are upper-case letters and digits).
    pattern = re.compile(rf"(?<![A-Za-z0-9]){re.escape(user_id)}(?![A-Za-z0-9])")

    def replace(value: Any) -> Any:
        if isinstance(value, str):
            return pattern.sub(pseudonym, value)
        if isinstance(value, list):
            return [replace(v) for v in value]
        if isinstance(value, dict):
            return {replace(k): replace(v) for k, v in value.items()}
        return value

    return replace


def pseudonymise(session: Session, user_id: str, pseudonym: str) -> int:
    """Replace `user_id` by `pseudonym` in the actor, target and details of every audit row, in the
    caller's transaction. Returns the number of rows changed."""
    replace = _replacer(user_id, pseudonym)
    rows = session.exec(
        select(AuditEvent).where(
            or_(
                AuditEvent.actor.contains(user_id),
                AuditEvent.target.contains(user_id),
                cast(AuditEvent.details, String).contains(user_id),
            )
        )
    ).all()
    changed = 0
    for row in rows:
        actor, target, details = replace(row.actor), replace(row.target), replace(row.details)
        if (actor, target, details) != (row.actor, row.target, row.details):
            row.actor, row.target, row.details = actor, target, details
            session.add(row)
            changed += 1
    return changed


def record_export(
    engine: Engine, actor: str, where: str, people: list[str], *, count: int, **details: Any
) -> None:
    """Audit a file written with people's data: where it went and whose data it held."""
    audit(engine, actor, EXPORT, where, people=sorted({p for p in people if p}), count=count, **details)


def exports_holding(engine: Engine, user_id: str) -> list[AuditEvent]:
    """The recorded exports that held data of `user_id`, oldest first."""
    with session_scope(engine) as session:
        rows = session.exec(
            select(AuditEvent)
            .where(AuditEvent.action == EXPORT, cast(AuditEvent.details, String).contains(user_id))
            .order_by(AuditEvent.id)
        )
        return [row for row in rows if user_id in (row.details or {}).get("people", [])]
