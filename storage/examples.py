"""Queries on the example table (training pairs)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Engine, func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from storage.audit import record
from storage.db import session_scope
from storage.hashing import content_hash, split_for
from storage.models import TRAINING_KINDS, Example, ExampleKind, ExampleOrigin, ExampleStatus, utcnow


class DuplicateExample(Exception):
    """The same question and answer already exist in this track."""

    def __init__(self, existing: Example):
        super().__init__(f"example #{existing.id} already holds this question and answer")
        self.existing = existing


def new_example(question: str, corrected_answer: str, **fields) -> Example:
    """An unsaved example with its hash and split filled in."""
    return Example(
        question=question,
        corrected_answer=corrected_answer,
        content_hash=content_hash(question, corrected_answer),
        split=split_for(question),
        **fields,
    )


def add_example(engine: Engine, question: str, corrected_answer: str, **fields) -> Example:
    """Store a pair; raises DuplicateExample when the track already has it."""
    example = new_example(question, corrected_answer, **fields)
    try:
        with session_scope(engine) as session:
            session.add(example)
            session.flush()
            record(
                session,
                example.author_id or "system",
                "example.create",
                f"example:{example.id}",
                origin=example.origin,
                track=example.track,
                status=example.status,
            )
            session.refresh(example)
            return example
    except IntegrityError:
        with session_scope(engine) as session:
            existing = session.exec(
                select(Example).where(
                    Example.track == example.track, Example.content_hash == example.content_hash
                )
            ).first()
        if existing is None:
            raise
        raise DuplicateExample(existing) from None


def add_examples(engine: Engine, examples: Iterable[Example], actor: str) -> tuple[list[Example], int]:
    """Store many unsaved examples in one transaction, skipping pairs already present.
    Returns the stored rows and how many were duplicates."""
    examples = list(examples)
    with session_scope(engine) as session:
        keys = {(e.track, e.content_hash) for e in examples}
        existing = set()
        for track in {k[0] for k in keys}:
            hashes = [k[1] for k in keys if k[0] == track]
            existing |= {
                (track, h)
                for h in session.exec(
                    select(Example.content_hash).where(
                        Example.track == track, Example.content_hash.in_(hashes)
                    )
                )
            }
        stored, seen = [], set()
        for example in examples:
            key = (example.track, example.content_hash)
            if key in existing or key in seen:
                continue
            seen.add(key)
            session.add(example)
            stored.append(example)
        session.flush()
        record(
            session, actor, "example.import", None, count=len(stored), duplicates=len(examples) - len(stored)
        )
        for example in stored:
            session.refresh(example)
        return stored, len(examples) - len(stored)


def get_example(engine: Engine, example_id: int) -> Example | None:
    with session_scope(engine) as session:
        return session.get(Example, example_id)


def review_example(
    engine: Engine,
    example_id: int,
    status: ExampleStatus | str,
    reviewer_id: str,
    corrected_answer: str | None = None,
    kind: ExampleKind | str | None = None,
) -> Example | None:
    """Approve or reject a pending example (setting its kind on the way, when given). Conditional:
    only a pending row changes, so two clicks approve once. Returns the updated row, or None when it
    was not pending (or is gone)."""
    status = ExampleStatus(status)
    values = {
        "status": status.value,
        "reviewer_id": reviewer_id,
        "reviewed_at": utcnow(),
        "updated_at": utcnow(),
    }
    if kind is not None:
        values |= {"kind": ExampleKind(kind).value, "kind_source": "reviewer"}
    with session_scope(engine) as session:
        if corrected_answer is not None:
            current = session.get(Example, example_id)
            if current is None:
                return None
            values["corrected_answer"] = corrected_answer
            values["content_hash"] = content_hash(current.question, corrected_answer)
        result = session.execute(
            update(Example)
            .where(Example.id == example_id, Example.status == ExampleStatus.pending.value)
            .values(**values)
        )
        if result.rowcount != 1:
            return None
        record(
            session,
            reviewer_id,
            f"example.{status.value}",
            f"example:{example_id}",
            edited=corrected_answer is not None,
            kind=values.get("kind"),
        )
        row = session.get(Example, example_id)
        session.refresh(row)
        return row


def set_kind(engine: Engine, example_id: int, kind: ExampleKind | str, actor: str) -> Example | None:
    """Change what a pending or approved example fixed (a reviewer's one click). Returns the row, or
    None when it is gone or was rejected. An approved one moves between the knowledge base and
    training at once (the caller tells the plugins)."""
    kind = ExampleKind(kind)
    with session_scope(engine) as session:
        result = session.execute(
            update(Example)
            .where(
                Example.id == example_id,
                Example.status.in_((ExampleStatus.pending.value, ExampleStatus.approved.value)),
            )
            .values(kind=kind.value, kind_source="reviewer", updated_at=utcnow())
        )
        if result.rowcount != 1:
            return None
        record(session, actor, "example.kind", f"example:{example_id}", kind=kind.value)
        row = session.get(Example, example_id)
        session.refresh(row)
        return row


def set_review_message(engine: Engine, example_id: int, channel: str, ts: str) -> None:
    with session_scope(engine) as session:
        session.execute(
            update(Example).where(Example.id == example_id).values(review_channel=channel, review_ts=ts)
        )


def _filtered(query, status: str | None, track: str | None):
    if status:
        query = query.where(Example.status == status)
    if track:
        query = query.where(Example.track == track)
    return query


def list_examples(
    engine: Engine,
    status: str | None = None,
    track: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[Example]:
    with session_scope(engine) as session:
        query = _filtered(select(Example).order_by(Example.id), status, track)
        if limit:
            query = query.limit(limit)
        if offset:
            query = query.offset(offset)
        return list(session.exec(query))


def approved_examples(engine: Engine, track: str) -> list[Example]:
    return list_examples(engine, status=ExampleStatus.approved.value, track=track)


def training_examples(engine: Engine, track: str) -> list[Example]:
    """What a training run of the track learns from: its approved behaviour and both pairs, plus its
    golden pairs (evaluation only, whatever their kind). Facts go to the knowledge base instead."""
    with session_scope(engine) as session:
        return list(
            session.exec(
                select(Example)
                .where(
                    Example.track == track,
                    Example.status == ExampleStatus.approved.value,
                    (Example.kind.in_(TRAINING_KINDS)) | (Example.origin == ExampleOrigin.golden.value),
                )
                .order_by(Example.id)
            )
        )


def count_by_kind(engine: Engine, track: str, status: str = ExampleStatus.approved.value) -> dict[str, int]:
    """{kind: count} of a track's examples in a status (non-golden), every kind present."""
    with session_scope(engine) as session:
        rows = session.exec(
            select(Example.kind, func.count())
            .where(
                Example.track == track,
                Example.status == status,
                Example.origin != ExampleOrigin.golden.value,
            )
            .group_by(Example.kind)
        ).all()
    counts = {kind.value: 0 for kind in ExampleKind}
    counts.update({kind: n for kind, n in rows})
    return counts


def count_examples(engine: Engine, status: str | None = None, track: str | None = None) -> int:
    """A COUNT in the database: status and the App Home call this on every view."""
    with session_scope(engine) as session:
        return session.exec(_filtered(select(func.count()).select_from(Example), status, track)).one()


def tracks_with_examples(engine: Engine) -> list[str]:
    with session_scope(engine) as session:
        return sorted(set(session.exec(select(Example.track).distinct())))
