"""The team's knowledge entries and the documents that made them necessary.

A knowledge entry is an approved example whose kind is fact or both and that no later approved
fact replaced (`superseded_by`). The index side (Chroma and BM25) is written by the rag plugin;
this module keeps its state in the database: `indexed_at` once written, `index_error` when a
write failed (shown to admins until a retry succeeds). A suspect document is one an answer cited
before its facts were corrected; it is listed until the document is re-ingested changed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, func, update
from sqlmodel import select

from storage.audit import record
from storage.db import session_scope
from storage.models import KNOWLEDGE_KINDS, Example, ExampleStatus, SuspectDocument, utcnow


def _entries():
    return select(Example).where(
        Example.status == ExampleStatus.approved.value,
        Example.kind.in_(KNOWLEDGE_KINDS),
        Example.superseded_by.is_(None),
    )


def knowledge_entries(engine: Engine, track: str | None = None) -> list[Example]:
    """Every live knowledge entry (of one track, when given), oldest first."""
    query = _entries().order_by(Example.id)
    if track is not None:
        query = query.where(Example.track == track)
    with session_scope(engine) as session:
        return list(session.exec(query))


def is_knowledge_entry(example) -> bool:
    return (
        example.status == ExampleStatus.approved.value
        and example.kind in KNOWLEDGE_KINDS
        and example.superseded_by is None
    )


def mark_indexed(engine: Engine, example_ids: Iterable[int], error: str | None = None) -> None:
    """Record that entries were written to the index (error None) or that writing them failed."""
    ids = list(example_ids)
    if not ids:
        return
    values = {"index_error": error[:500]} if error else {"indexed_at": utcnow(), "index_error": None}
    with session_scope(engine) as session:
        session.execute(update(Example).where(Example.id.in_(ids)).values(**values))


def unindexed_entries(engine: Engine) -> list[Example]:
    """Live entries that are not in the index yet (never written, or written before a later edit)."""
    with session_scope(engine) as session:
        return list(
            session.exec(
                _entries()
                .where((Example.indexed_at.is_(None)) | (Example.indexed_at < Example.updated_at))
                .order_by(Example.id)
            )
        )


def supersede(engine: Engine, replaced_ids: Iterable[int], by: int, actor: str) -> list[Example]:
    """Take earlier facts on the same question out of the knowledge base: `by` replaces them.
    Returns the rows replaced (with their answers, to tell the reviewer)."""
    ids = [i for i in replaced_ids if i != by]
    if not ids:
        return []
    with session_scope(engine) as session:
        rows = list(session.exec(_entries().where(Example.id.in_(ids))))
        if not rows:
            return []
        session.execute(
            update(Example)
            .where(Example.id.in_([r.id for r in rows]))
            .values(superseded_by=by, updated_at=utcnow())
        )
        for row in rows:
            record(session, actor, "example.superseded", f"example:{row.id}", by=by)
            row.superseded_by = by
        return rows


def flag_documents(engine: Engine, example_id: int, sources: Iterable[dict]) -> int:
    """Record the documents an answer cited as suspect for this fact correction; returns how many.
    Team answers among the sources are not documents and are left out."""
    with session_scope(engine) as session:
        known = {
            (s.collection, s.source)
            for s in session.exec(select(SuspectDocument).where(SuspectDocument.example_id == example_id))
        }
        added = 0
        for source in sources:
            if source.get("kind", "document") != "document" or not source.get("source"):
                continue
            key = (source.get("collection") or "", source["source"])
            if key in known:
                continue
            known.add(key)
            session.add(
                SuspectDocument(
                    example_id=example_id, collection=key[0], source=key[1], title=source.get("title")
                )
            )
            added += 1
        return added


@dataclass
class Suspect:
    """An open suspect document with the correction that made it one."""

    collection: str
    source: str
    title: str | None
    example_id: int
    question: str
    corrected_answer: str
    flagged_at: datetime

    def to_json(self) -> dict:
        return {
            "collection": self.collection,
            "source": self.source,
            "title": self.title,
            "example_id": self.example_id,
            "question": self.question,
            "corrected_answer": self.corrected_answer,
            "flagged_at": self.flagged_at.isoformat(),
        }


def open_suspects(engine: Engine, limit: int | None = None) -> list[Suspect]:
    """Documents still listed for their owners, newest first, each with its correction."""
    query = (
        select(SuspectDocument, Example)
        .join(Example, Example.id == SuspectDocument.example_id)
        .where(SuspectDocument.cleared_at.is_(None), Example.status == ExampleStatus.approved.value)
        .order_by(SuspectDocument.created_at.desc(), SuspectDocument.id.desc())
    )
    if limit:
        query = query.limit(limit)
    with session_scope(engine) as session:
        return [
            Suspect(d.collection, d.source, d.title, e.id, e.question, e.corrected_answer, d.created_at)
            for d, e in session.exec(query)
        ]


def count_open_suspects(engine: Engine) -> int:
    with session_scope(engine) as session:
        return session.exec(
            select(func.count(func.distinct(SuspectDocument.source)))
            .select_from(SuspectDocument)
            .join(Example, Example.id == SuspectDocument.example_id)
            .where(SuspectDocument.cleared_at.is_(None), Example.status == ExampleStatus.approved.value)
        ).one()


def clear_documents(engine: Engine, collection: str, sources: Iterable[str], actor: str = "system") -> int:
    """A re-ingest changed these documents: they are no longer suspect. Returns the rows cleared."""
    sources = list(sources)
    if not sources:
        return 0
    with session_scope(engine) as session:
        result = session.execute(
            update(SuspectDocument)
            .where(
                SuspectDocument.collection == collection,
                SuspectDocument.source.in_(sources),
                SuspectDocument.cleared_at.is_(None),
            )
            .values(cleared_at=utcnow())
        )
        if result.rowcount:
            record(
                session, actor, "document.cleared", collection, sources=sources[:50], count=result.rowcount
            )
        return result.rowcount or 0
