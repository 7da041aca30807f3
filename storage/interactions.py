"""Queries on the interaction table."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import select

from storage.db import session_scope
from storage.models import Interaction, Vote, utcnow


def add_interaction(engine: Engine, **fields) -> Interaction:
    with session_scope(engine) as session:
        row = Interaction(**fields)
        session.add(row)
        session.flush()
        session.refresh(row)
        return row


def adapter_feedback(engine: Engine, track: str) -> list[tuple[str | None, int | None]]:
    """(adapter version, feedback) of every answer of a track (None: the base model; no vote)."""
    with session_scope(engine) as session:
        return list(
            session.exec(
                select(Interaction.adapter_version, Interaction.feedback).where(Interaction.track == track)
            ).all()
        )


def get_interaction(engine: Engine, interaction_id: int) -> Interaction | None:
    with session_scope(engine) as session:
        return session.get(Interaction, interaction_id)


def record_vote(engine: Engine, interaction_id: int, user_id: str, vote: int) -> Interaction | None:
    """One vote per person, changeable: a row per (interaction, person), the last click wins; the
    interaction's `votes` and `feedback` (the sign of the sum) are recomputed from the rows."""
    if vote not in (1, -1):
        raise ValueError("a vote is +1 or -1")
    with session_scope(engine) as session:
        # The interaction's row lock (Postgres) or the write lock taken at BEGIN (SQLite) orders votes.
        row = session.exec(
            select(Interaction).where(Interaction.id == interaction_id).with_for_update()
        ).first()
        if row is None:
            return None
        upsert = _insert(session).values(
            interaction_id=interaction_id, user_id=user_id, value=vote, at=utcnow()
        )
        session.execute(
            upsert.on_conflict_do_update(
                index_elements=["interaction_id", "user_id"], set_={"value": vote, "at": utcnow()}
            )
        )
        summarise_votes(session, row)
        session.flush()
        session.refresh(row)
        return row


def _insert(session):
    dialect = session.get_bind().dialect.name
    module = {"sqlite": sqlite, "postgresql": postgresql}.get(dialect)
    if module is None:
        raise NotImplementedError(
            f"votes need an upsert, which this project writes for SQLite and Postgres, not {dialect}"
        )
    return module.insert(Vote)


def summarise_votes(session, row: Interaction) -> None:
    """Rewrite an interaction's `votes` and `feedback` from its vote rows (None when nobody voted)."""
    votes = dict(session.exec(select(Vote.user_id, Vote.value).where(Vote.interaction_id == row.id)).all())
    row.votes = votes
    total = sum(votes.values())
    row.feedback = ((total > 0) - (total < 0)) if votes else None
    session.add(row)


def recent_interactions(engine: Engine, limit: int = 50) -> list[Interaction]:
    with session_scope(engine) as session:
        return list(session.exec(select(Interaction).order_by(Interaction.id.desc()).limit(limit)))
