"""The team's knowledge entries: approved fact corrections, searchable the moment they are approved.

An entry lives in the document index (dense and BM25) under the reserved collection `_team`,
which ingestion cannot write to (collection names start with a letter or digit) and which a
document search leaves out. Each entry is one chunk: its title is the question and its text the
approved answer, so a paraphrase of the question finds it by meaning and by words.

The database is the source of truth (storage.knowledge). The example_changed hook writes or
removes an entry at once; `sync` makes the index hold exactly the live entries — when first used
and every `RESYNC_SECONDS` on use — so a write that failed is retried before the next answer and
changes made by another process arrive. Every write records its outcome on the example
(`indexed_at`, or `index_error` for admins to see).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

log = logging.getLogger("apprenti.knowledge")

TEAM_COLLECTION = "_team"
RESYNC_SECONDS = 30.0
SOURCE_PREFIX = "team-answer:"


def entry_source(example_id: int | str) -> str:
    return f"{SOURCE_PREFIX}{example_id}"


def entry_hash(question: str, answer: str) -> str:
    from rag.chunking import content_hash

    return content_hash(f"{question}\x00{answer}")


def _example_id(source: str) -> int | None:
    raw = source.removeprefix(SOURCE_PREFIX)
    return int(raw) if source.startswith(SOURCE_PREFIX) and raw.isdigit() else None


class TeamKnowledge:
    """The knowledge entries in one document index, kept equal to the database's."""

    def __init__(self, engine, retriever, resync_seconds: float = RESYNC_SECONDS):
        self.engine = engine
        self.retriever = retriever
        self.index = retriever.index
        self.resync_seconds = resync_seconds
        self._synced_at: float | None = None
        self._lock = threading.Lock()

    # -- writing -----------------------------------------------------------------------------
    def _write(self, entries: list[Any]) -> None:
        from rag.chunking import Chunk

        self.index.add_chunks(
            TEAM_COLLECTION,
            {
                entry_source(e.id): (
                    entry_hash(e.question, e.corrected_answer),
                    [Chunk(e.corrected_answer, entry_source(e.id), e.question, 0)],
                )
                for e in entries
            },
        )

    def put(self, example_id: int) -> bool:
        """Write one entry from the database's row (or remove it when it is no longer an entry).
        Returns whether the index now agrees; a failure is recorded on the example and retried."""
        from storage.examples import get_example
        from storage.knowledge import is_knowledge_entry, mark_indexed

        row = get_example(self.engine, example_id)
        if row is None or not is_knowledge_entry(row):
            return self.remove(example_id)
        try:
            self._write([row])
        except Exception as exc:  # noqa: BLE001 - recorded on the example, retried by sync
            log.exception("knowledge entry of example #%s not indexed; it will be retried", example_id)
            mark_indexed(self.engine, [example_id], error=f"{type(exc).__name__}: {exc}")
            return False
        mark_indexed(self.engine, [example_id])
        return True

    def remove(self, example_id: int) -> bool:
        try:
            self.index.delete(TEAM_COLLECTION, [entry_source(example_id)])
        except Exception:  # noqa: BLE001 - sync removes it later
            log.exception(
                "knowledge entry of example #%s not removed from the index; it will be retried", example_id
            )
            self._synced_at = None
            return False
        return True

    def sync(self, force: bool = False) -> dict[str, int]:
        """Make the index hold exactly the live entries; returns how many were written and removed."""
        from storage.knowledge import knowledge_entries, mark_indexed

        with self._lock:
            now = time.monotonic()
            if not force and self._synced_at is not None and now - self._synced_at < self.resync_seconds:
                return {"written": 0, "removed": 0}
            live = {entry_source(e.id): e for e in knowledge_entries(self.engine)}
            held = {r.source: r.file_hash for r in self.index.sources(TEAM_COLLECTION)}
            stale = [source for source in held if source not in live]
            changed = [
                e
                for source, e in live.items()
                if held.get(source) != entry_hash(e.question, e.corrected_answer)
            ]
            changed_ids = {e.id for e in changed}
            # Rows whose write failed before, or never happened, but whose text the index holds already.
            settled = [
                e.id
                for e in live.values()
                if e.id not in changed_ids and (e.indexed_at is None or e.index_error)
            ]
            if stale:
                self.index.delete(TEAM_COLLECTION, stale)
            if changed:
                try:
                    self._write(changed)
                except Exception as exc:
                    mark_indexed(self.engine, [e.id for e in changed], error=f"{type(exc).__name__}: {exc}")
                    raise
                mark_indexed(self.engine, [e.id for e in changed])
            mark_indexed(self.engine, settled)
            if stale or changed:
                log.info("knowledge entries reconciled: %d written, %d removed", len(changed), len(stale))
            self._synced_at = time.monotonic()
            return {"written": len(changed), "removed": len(stale)}

    # -- reading -----------------------------------------------------------------------------
    def search(self, question: str, k: int) -> list[dict[str, Any]]:
        """Up to k entries for the question, best first, as passages of kind team_answer. Each
        passage's score is its cosine similarity to the question (what the assistant's threshold
        reads); `question_score` compares the two questions alone (1.0: the same question), which is
        how a later fact finds the one it replaces."""
        from storage.examples import get_example

        try:
            self.sync()
        except Exception:  # noqa: BLE001 - the entries already indexed still answer
            log.exception("knowledge entries could not be reconciled; searching what the index holds")
        if k <= 0 or not self.index.count([TEAM_COLLECTION]):
            return []
        found = []
        for result in self.retriever.search(question, k=k, collections=[TEAM_COLLECTION]):
            example_id = _example_id(result.source)
            row = get_example(self.engine, example_id) if example_id is not None else None
            if row is None:
                continue  # erased a moment ago: the next sync removes it from the index
            score = result.relevance if result.relevance is not None else result.score
            found.append(
                {
                    "id": result.id,
                    "kind": "team_answer",
                    "text": row.corrected_answer,
                    "title": f"Team answer: {row.question}",
                    "source": entry_source(row.id),
                    "score": round(float(score), 4),
                    "snippet": result.snippet,
                    "collection": TEAM_COLLECTION,
                    "example_id": row.id,
                    "question": row.question,
                    "approved_by": row.reviewer_id,
                    "approved_at": row.reviewed_at.isoformat() if row.reviewed_at else None,
                }
            )
        if found:
            vectors = self.index.embedder.encode([question, *(f["question"] for f in found)], kind="query")
            for entry, vector in zip(found, vectors[1:], strict=True):
                entry["question_score"] = round(float(vectors[0] @ vector), 4)
        return found
