"""Built-in retrieval: passages from the team's indexed documents (rag.DocumentIndex), hybrid search.

The index is opened on first use from the start-up settings: the embedded Chroma folder
(``chroma_path``) or a Chroma server (``chroma_url``; the BM25 side then lives in ``home/rag``).
Each plugin manager registers its own `Retrieval` (see `plugin()`), so two in one process never
share a retriever.
A channel profile's ``collections`` limit the search; none means every collection of documents.
The same index holds the team's knowledge entries (approved fact corrections, see
plugins/builtin/knowledge.py) in a reserved collection, which the `team_answers` hook searches
and a document search leaves out.

Each passage's ``score`` keeps the hybrid order and is scaled so that the best passage scores
its cosine similarity to the question: an absolute figure, which is what the ``auto`` mode's
threshold (``rag_threshold``) compares. Unrelated questions score about 0.1 with MiniLM.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from plugins.builtin.knowledge import TEAM_COLLECTION, TeamKnowledge
from plugins.hookspecs import hookimpl

log = logging.getLogger("apprenti.rag")


def open_retriever(config: dict[str, Any]):
    """A hybrid Retriever over the index the settings point at (raises rag.index.IndexUnavailable)."""
    from rag.embeddings import DEFAULT_BACKEND, SentenceTransformerEmbedder
    from rag.index import DocumentIndex, open_client
    from rag.retriever import Retriever

    url = config.get("chroma_url")
    path = config.get("chroma_path") or (Path(config["home"]) / "chroma" if config.get("home") else None)
    state_dir = Path(config["home"]) / "rag" if url and config.get("home") else path
    index = DocumentIndex(
        open_client(path=None if url else path, url=url),
        state_dir,
        SentenceTransformerEmbedder(
            config.get("embedding_model"), backend=config.get("embedding_backend") or DEFAULT_BACKEND
        ),
    )
    return Retriever(index, k=int(config.get("rag_k") or 5))


def shown_source(source: str, roots: list[Path]) -> str:
    """Where a passage comes from, as people may see it: a file relative to the document root it is
    in (APPRENTI_DOCUMENT_ROOTS), or its name alone, never the server's absolute path; URLs as they are."""
    if not source.startswith("/"):
        return source
    path = Path(source)
    for root in roots:
        if path.is_relative_to(root):
            return str(path.relative_to(root))
    return path.name


def passages(results, roots: list[Path] = ()) -> list[dict[str, Any]]:
    """Search results as the passages the answer pipeline cites (see plugins/hookspecs.py)."""
    if not results:
        return []
    best = max((r.relevance for r in results if r.relevance is not None), default=None)
    out = []
    for r in results:
        score = r.score * best if best is not None else r.score
        out.append(
            {
                "id": r.id,
                "text": r.text,
                "title": r.citation,
                "source": shown_source(r.source, list(roots)),
                "score": round(float(score), 4),
                "snippet": r.snippet,
                "heading": r.heading,
                "page": r.page,
                "collection": r.collection,
            }
        )
    return out


class Retrieval:
    """The `rag` plugin of one plugin manager: its settings, its retriever and the team's entries."""

    # The Apprenti settings this plugin's startup config carries (bot.runtime.plugin_config).
    uses_settings = (
        "home",
        "chroma_path",
        "chroma_url",
        "embedding_model",
        "embedding_backend",
        "rag_k",
        "document_roots",
    )

    def __init__(self) -> None:
        self.config: dict[str, Any] | None = None
        self.database = None  # returns the process's engine (the startup hook's `database`)
        self.documents = None  # returns the process's document index (the startup hook's `documents`)
        self.retriever = None
        self.team: TeamKnowledge | None = None
        self._lock = threading.Lock()

    def get(self):
        """The retriever, opened on first use (None before startup): over the process's document
        index when the application hands one over (`documents`), else one opened from the settings."""
        with self._lock:
            if self.retriever is None and self.config is not None:
                index = self.documents() if self.documents is not None else None
                if index is not None:
                    from rag.retriever import Retriever

                    self.retriever = Retriever(index, k=int(self.config.get("rag_k") or 5))
                else:
                    self.retriever = open_retriever(self.config)
            return self.retriever

    def knowledge(self) -> TeamKnowledge | None:
        """The team's knowledge entries in this index (None before startup)."""
        retriever = self.get()
        with self._lock:
            if self.team is None and retriever is not None and self.database is not None:
                self.team = TeamKnowledge(self.database(), retriever)
            return self.team

    @hookimpl
    def startup(self, config, database, documents):
        # Nothing is opened here: every command loads the plugins, and most never search, so a Chroma
        # server that is down or hangs must not stop them. The first search opens it (serve does one
        # at start-up, which logs a server that is down).
        with self._lock:
            self.config, self.database, self.documents = config, database, documents
            self.retriever, self.team = None, None

    @hookimpl
    def retrieve(self, question, profile, k):
        # Errors reach the assistant, which answers by prompting and tells the user the index is down.
        retriever = self.get()
        if retriever is None:
            return []
        collections = list(getattr(profile, "collections", None) or []) or None
        if collections is None:  # every collection of documents: not the team's entries
            collections = [c for c in retriever.index.collections() if c != TEAM_COLLECTION]
            if not collections:
                return []
        roots = [Path(r).expanduser().resolve() for r in (self.config or {}).get("document_roots") or []]
        return passages(retriever.search(question, k=k, collections=collections), roots)

    @hookimpl
    def team_answers(self, question, profile, k):
        if profile is not None and not getattr(profile, "team_answers", True):
            return []
        team = self.knowledge()
        return team.search(question, k) if team is not None else []

    @hookimpl
    def example_changed(self, example, action):
        if action in ("created", "rejected") and self.team is None:
            return None  # a pending or rejected pair was never an entry: no need to open the index
        team = self.knowledge()
        if team is None:
            return None
        example_id = int(example["id"])
        # The database's row decides whether it is an entry (kind, status, replaced), not the dict.
        done = team.remove(example_id) if action in ("erased", "deleted") else team.put(example_id)
        return {"example": example_id, "knowledge_indexed": done}


def plugin() -> Retrieval:
    """What a new plugin manager registers as `rag`: a fresh instance, with no retriever yet."""
    return Retrieval()
