"""Erasure: a person's interactions and examples are deleted; adapters trained on their data are
marked tainted and their tracks retrained without it."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import delete
from sqlmodel import select

from storage.audit import record
from storage.db import session_scope
from storage.interactions import summarise_votes
from storage.models import Adapter, AdapterStatus, Example, Interaction, Vote

log = logging.getLogger("apprenti.erasure")


def forget_user(engine, user_id: str, actor: str, *, pm=None) -> dict[str, Any]:
    """Delete everything stored about `user_id`, in one transaction, and say what was done.

    Examples are erased when the person wrote them or asked the question they correct. Adapters that
    contain any erased example are marked `tainted`; the tracks concerned are returned so the caller
    can schedule a retrain without the data.
    """
    user_id = user_id.strip().lstrip("@")
    if user_id.startswith("<@") or user_id.endswith(">"):
        user_id = user_id.strip("<@>").split("|")[0]
    with session_scope(engine) as session:
        interaction_ids = list(session.exec(select(Interaction.id).where(Interaction.user_id == user_id)))
        examples = list(session.exec(select(Example).where(
            (Example.author_id == user_id) | (Example.interaction_id.in_(interaction_ids or [-1])))))
        erased_ids = {e.id for e in examples}
        tainted, tracks = [], set()
        for adapter in session.exec(select(Adapter)):
            if erased_ids & set(adapter.example_ids or []):
                adapter.tainted = True
                session.add(adapter)
                tainted.append(adapter.name)
                if adapter.status in (AdapterStatus.active.value, AdapterStatus.candidate.value):
                    tracks.add(adapter.track)
        erased = [{"id": e.id, "question": e.question, "answer": e.corrected_answer, "track": e.track,
                   "status": e.status} for e in examples]
        if erased_ids:
            session.execute(delete(Example).where(Example.id.in_(erased_ids)))
        # Votes are personal data too: their rows go, and the answers they rated are summarised again.
        voted = list(session.exec(select(Vote.interaction_id).where(Vote.user_id == user_id)))
        session.execute(delete(Vote).where(Vote.user_id == user_id))
        for row in session.exec(select(Interaction).where(Interaction.id.in_(voted or [-1]))):
            summarise_votes(session, row)
        if interaction_ids:
            session.execute(delete(Interaction).where(Interaction.id.in_(interaction_ids)))
        result = {"user": user_id, "interactions": len(interaction_ids), "examples": len(erased_ids),
                  "tainted_adapters": sorted(tainted), "retrain_tracks": sorted(tracks)}
        # The audit names the person by id only: it records that an erasure happened, not the data.
        record(session, actor, "user.forget", f"user:{user_id}", **{k: v for k, v in result.items() if k != "user"})
    # An adapter in service that holds the person's data leaves service now: the previous clean version
    # (or the base model) serves until the retrain without their data passes its gate.
    from finetune.registry import Registry, RegistryError

    registry = Registry(engine, ".")
    for track in sorted(tracks):
        active = registry.active(track)
        if active is not None and active.tainted:
            try:
                change = registry.rollback(track, actor)
                result.setdefault("taken_out_of_service", []).append(
                    {"adapter": active.name, "now": change.active or "base model"})
            except RegistryError as exc:
                log.error("could not take %s out of service: %s", active.name, exc)
    if pm is not None:
        for example in erased:
            pm.hook.example_changed(example=example, action="erased")
    log.info("erased %s: %s", user_id, result)
    return result
