"""Plain queries on the adapter table. The registry (finetune/registry.py) owns the transitions."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlmodel import select

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
