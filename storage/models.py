"""The tables. Every column works the same on SQLite and Postgres.

Schema changes go through a new Alembic migration in storage/migrations/versions, never by
editing one that has shipped.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class ExampleStatus(enum.StrEnum):
    pending = "pending"
    approved = "approved"
    rejected = "rejected"


class ExampleOrigin(enum.StrEnum):
    correction = "correction"
    imported = "import"
    golden = "golden"


class ExampleKind(enum.StrEnum):
    """What a correction fixed: a fact goes to the team's knowledge base, a behaviour (tone,
    format, template) to training, both to both."""

    fact = "fact"
    behaviour = "behaviour"
    both = "both"


# Kinds that reach each destination.
KNOWLEDGE_KINDS = (ExampleKind.fact.value, ExampleKind.both.value)
TRAINING_KINDS = (ExampleKind.behaviour.value, ExampleKind.both.value)


class AdapterStatus(enum.StrEnum):
    training = "training"
    candidate = "candidate"
    active = "active"
    retired = "retired"
    rejected = "rejected"
    failed = "failed"


class RunStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    rejected = "rejected"


ACTIVE_RUN_STATUSES = (RunStatus.queued.value, RunStatus.running.value)


class Interaction(SQLModel, table=True):
    """One question and its answer (both PII-scrubbed)."""

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow, index=True)
    team_id: str | None = None
    channel_id: str | None = Field(default=None, index=True)
    thread_ts: str | None = None
    message_ts: str | None = None
    user_id: str | None = Field(default=None, index=True)
    question: str
    answer: str
    mode: str = "prompt"
    track: str = "default"
    sources: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    adapter_version: str | None = None
    latency_ms: int | None = None
    format_violations: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    feedback: int | None = None
    votes: dict[str, int] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    error: str | None = None


class Vote(SQLModel, table=True):
    """One person's 👍/👎 on an answer: one row per (interaction, person), the last click wins
    (migration 0003). `Interaction.votes` and `feedback` are kept as their summary."""

    __table_args__ = (UniqueConstraint("interaction_id", "user_id", name="uq_vote_interaction_user"),)

    id: int | None = Field(default=None, primary_key=True)
    interaction_id: int = Field(foreign_key="interaction.id", ondelete="CASCADE", index=True)
    user_id: str = Field(index=True)
    value: int
    at: datetime = Field(default_factory=utcnow)


class RequestNonce(SQLModel, table=True):
    """A signed Slack request already served (its signature's digest), so a replay within the
    signature's 5-minute window is refused by every replica (migration 0003)."""

    __tablename__ = "request_nonce"

    digest: str = Field(primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)


class Example(SQLModel, table=True):
    """A training pair: what was asked, what was answered, and the answer a person wanted."""

    __table_args__ = (UniqueConstraint("track", "content_hash", name="uq_example_track_hash"),)

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    track: str = Field(default="default", index=True)
    question: str
    context: str | None = None
    original_answer: str | None = None
    corrected_answer: str
    note: str | None = None
    origin: str = Field(default=ExampleOrigin.correction.value)
    status: str = Field(default=ExampleStatus.pending.value, index=True)
    author_id: str | None = Field(default=None, index=True)
    reviewer_id: str | None = None
    reviewed_at: datetime | None = None
    interaction_id: int | None = Field(default=None, foreign_key="interaction.id", ondelete="SET NULL")
    split: str = "train"
    content_hash: str = Field(index=True)
    review_channel: str | None = None
    review_ts: str | None = None
    flag: str | None = None
    # Routing (migration 0004): what the correction fixed, and who said so (author, suggested,
    # reviewer, import). An approved fact or both is a team knowledge entry unless a later
    # approved fact on the same question replaced it (superseded_by).
    kind: str = Field(default=ExampleKind.behaviour.value, index=True)
    kind_source: str | None = None
    superseded_by: int | None = Field(default=None, foreign_key="example.id", ondelete="SET NULL")
    # When the knowledge entry was last written to the index, and the error of the last failed write.
    indexed_at: datetime | None = None
    index_error: str | None = None


class SuspectDocument(SQLModel, table=True):
    """A document that an answer cited before a person corrected its facts (migration 0004): listed
    for its owner until the document is re-ingested changed, or the correction is gone."""

    __tablename__ = "suspect_document"
    __table_args__ = (
        UniqueConstraint("example_id", "collection", "source", name="uq_suspect_example_source"),
    )

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow)
    example_id: int = Field(foreign_key="example.id", ondelete="CASCADE", index=True)
    collection: str = ""
    source: str = Field(index=True)
    title: str | None = None
    cleared_at: datetime | None = None


ONE_ACTIVE = text("status = 'active'")


class Adapter(SQLModel, table=True):
    """A LoRA adapter version of a track (`track/vN`)."""

    __table_args__ = (
        UniqueConstraint("track", "version", name="uq_adapter_track_version"),
        # At most one active version per track, whoever races to activate (migration 0003).
        Index(
            "uq_adapter_one_active",
            "track",
            unique=True,
            sqlite_where=ONE_ACTIVE,
            postgresql_where=ONE_ACTIVE,
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow)
    track: str = Field(default="default", index=True)
    version: int
    name: str = Field(index=True, unique=True)
    base_model: str
    path: str
    status: str = Field(default=AdapterStatus.training.value, index=True)
    dataset_fingerprint: str | None = None
    example_ids: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    hyperparameters: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    metrics: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    parent_version: str | None = None
    run_id: int | None = Field(default=None, foreign_key="training_run.id", ondelete="SET NULL")
    activated_by: str | None = None
    activated_at: datetime | None = None
    tainted: bool = False


class TrainingRun(SQLModel, table=True):
    """One attempt to train a track; the row is also the lease that keeps runs one at a time."""

    __tablename__ = "training_run"
    __table_args__ = (Index("ix_training_run_track_status", "track", "status"),)

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    track: str = "default"
    trigger: str = "admin"
    triggered_by: str | None = None
    status: str = Field(default=RunStatus.queued.value)
    heartbeat_at: datetime | None = None
    worker_host: str | None = None
    worker_pid: int | None = None
    log_path: str | None = None
    error: str | None = None
    adapter_name: str | None = None
    # Non-null only while queued or running: a unique index on it makes "one run per track" hold
    # even when several workers race to insert.
    lease: str | None = Field(default=None, unique=True)


class AuditEvent(SQLModel, table=True):
    """Append-only record of who did what."""

    __tablename__ = "audit_event"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor: str
    action: str = Field(index=True)
    target: str | None = None
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class SlackEventStatus(enum.StrEnum):
    queued = "queued"  # waiting, or claimed by a replica until expires_at
    done = "done"  # its answer (or the notice that it failed) is out
    failed = "failed"  # given up after too many attempts


class SlackEvent(SQLModel, table=True):
    """The durable queue of Slack events (migration 0005): written before Slack gets its ack, claimed
    by one replica at a time with a lease (holder, expires_at, attempts), done once its answer is out.
    The event id is the key, so a retry on any replica finds the row and answers nothing."""

    __tablename__ = "slack_event"
    __table_args__ = (Index("ix_slack_event_status_expires", "status", "expires_at"),)

    event_id: str = Field(primary_key=True)
    received_at: datetime = Field(default_factory=utcnow, index=True)
    body: str  # the Events API envelope as Slack sent it (JSON)
    status: str = Field(default=SlackEventStatus.queued.value)
    holder: str | None = None
    expires_at: datetime | None = None
    attempts: int = 0
    done_at: datetime | None = None
    error: str | None = None
