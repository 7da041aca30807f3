"""Queries on the interaction table."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlmodel import select

from storage.db import session_scope
from storage.models import Interaction


def add_interaction(engine: Engine, **fields) -> Interaction:
    with session_scope(engine) as session:
        row = Interaction(**fields)
        session.add(row)
        session.flush()
        session.refresh(row)
        return row


def get_interaction(engine: Engine, interaction_id: int) -> Interaction | None:
    with session_scope(engine) as session:
        return session.get(Interaction, interaction_id)


def record_vote(engine: Engine, interaction_id: int, user_id: str, vote: int) -> Interaction | None:
    """One vote per person, changeable; `feedback` is the sign of the sum."""
    if vote not in (1, -1):
        raise ValueError("a vote is +1 or -1")
    with session_scope(engine) as session:
        row = session.exec(select(Interaction).where(Interaction.id == interaction_id).with_for_update()).first()
        if row is None:
            return None
        votes = dict(row.votes or {})
        votes[user_id] = vote
        row.votes = votes
        total = sum(votes.values())
        row.feedback = (total > 0) - (total < 0)
        session.add(row)
        session.flush()
        session.refresh(row)
        return row


def recent_interactions(engine: Engine, limit: int = 50) -> list[Interaction]:
    with session_scope(engine) as session:
        return list(session.exec(select(Interaction).order_by(Interaction.id.desc()).limit(limit)))
