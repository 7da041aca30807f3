"""Plain queries on the adapter table. The registry (finetune/registry.py) owns the transitions."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Engine
from sqlmodel import Session, select

from storage.db import session_scope
from storage.models import Adapter, AdapterStatus


def active_adapter(engine: Engine, track: str) -> Adapter | None:
    with session_scope(engine) as session:
        return session.exec(
            select(Adapter).where(Adapter.track == track, Adapter.status == AdapterStatus.active.value)
        ).first()


def active_adapters(engine: Engine) -> dict[str, Adapter]:
    """The adapter in service for each track that has one."""
    with session_scope(engine) as session:
        rows = session.exec(select(Adapter).where(Adapter.status == AdapterStatus.active.value)).all()
        return {row.track: row for row in rows}


def get_adapter(engine: Engine, name: str) -> Adapter | None:
    with session_scope(engine) as session:
        return session.exec(select(Adapter).where(Adapter.name == name)).first()


def list_adapters(engine: Engine, track: str | None = None) -> list[Adapter]:
    with session_scope(engine) as session:
        query = select(Adapter).order_by(Adapter.track, Adapter.version)
        if track:
            query = query.where(Adapter.track == track)
        return list(session.exec(query))


def tracks_with_adapters(engine: Engine) -> list[str]:
    with session_scope(engine) as session:
        return sorted(set(session.exec(select(Adapter.track).distinct())))


def taint_adapters(session: Session, example_ids: Iterable[int]) -> list[Adapter]:
    """Mark every adapter trained on any of these examples `tainted` (in the caller's transaction);
    returns them all, those tainted before included."""
    ids = set(example_ids)
    tainted = []
    for adapter in session.exec(select(Adapter).order_by(Adapter.id)):
        if ids & set(adapter.example_ids or []):
            if not adapter.tainted:
                adapter.tainted = True
                session.add(adapter)
            tainted.append(adapter)
    return tainted
