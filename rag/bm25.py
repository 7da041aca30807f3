"""The lexical side of the index: BM25 (bm25s) over tokens kept in SQLite beside the Chroma data.

SQLite holds each chunk's analysed tokens, its collection and source, plus the source manifest
(file hash, chunk count, indexed time). The BM25 matrix is built from those rows when they change
(a version number in SQLite says so), saved next to them, and reloaded by every other process
that notices the new version, so the serving bot follows what the CLI ingested.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import bm25s
import numpy as np

from rag.tokenize import tokenize

# bm25s logs every index build at DEBUG through its own handler; that is noise for our users.
logging.getLogger("bm25s").setLevel(logging.WARNING)

DEFAULT_K1 = 1.2
DEFAULT_B = 0.75

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunk (
    id TEXT PRIMARY KEY,
    collection TEXT NOT NULL,
    source TEXT NOT NULL,
    tokens TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chunk_by_source ON chunk (collection, source);
CREATE TABLE IF NOT EXISTS source (
    collection TEXT NOT NULL,
    source TEXT NOT NULL,
    file_hash TEXT NOT NULL,
    chunks INTEGER NOT NULL,
    indexed_at REAL NOT NULL,
    PRIMARY KEY (collection, source)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('version', '0');
"""


@dataclass(frozen=True)
class SourceRecord:
    """One indexed file."""

    collection: str
    source: str
    file_hash: str
    chunks: int
    indexed_at: float

    def to_dict(self) -> dict:
        return {
            "collection": self.collection,
            "source": self.source,
            "chunks": self.chunks,
            "file_hash": self.file_hash,
            "indexed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.indexed_at)),
        }


class LexicalIndex:
    """BM25 search with collection filters; rows are added and removed with the Chroma chunks."""

    def __init__(self, path: str | Path | None, k1: float = DEFAULT_K1, b: float = DEFAULT_B) -> None:
        """``path`` is the SQLite file; None keeps everything in memory (evaluation runs)."""
        self.path = Path(path) if path is not None else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.k1 = k1
        self.b = b
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            str(self.path) if self.path else ":memory:", check_same_thread=False, timeout=30
        )
        if self.path is not None:
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA secure_delete=ON")  # removed chunks are overwritten, not left in free pages
        self._db.executescript(_SCHEMA)
        self._db.commit()
        self._built_version: int | None = None
        self._model: bm25s.BM25 | None = None
        self._ids: list[str] = []
        self._collections = np.array([], dtype=object)

    # -- writing -----------------------------------------------------------------------------

    def write(
        self,
        add: Sequence[tuple[str, str, str, str]] = (),
        delete_sources: Iterable[tuple[str, str]] = (),
        records: Iterable[SourceRecord] = (),
        tokens: Sequence[list[str]] | None = None,
    ) -> None:
        """In one transaction: drop the chunks and records of ``delete_sources`` ((collection, source)),
        add chunks ``(id, collection, source, index_text)`` and upsert the source ``records``."""
        if tokens is None:
            tokens = [tokenize(text) for _, _, _, text in add]
        with self._lock, self._db:
            for collection, source in delete_sources:
                self._db.execute("DELETE FROM chunk WHERE collection=? AND source=?", (collection, source))
                self._db.execute("DELETE FROM source WHERE collection=? AND source=?", (collection, source))
            self._db.executemany(
                "INSERT OR REPLACE INTO chunk (id, collection, source, tokens) VALUES (?, ?, ?, ?)",
                [
                    (cid, col, src, " ".join(toks))
                    for (cid, col, src, _), toks in zip(add, tokens, strict=True)
                ],
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO source (collection, source, file_hash, chunks, indexed_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [(r.collection, r.source, r.file_hash, r.chunks, r.indexed_at) for r in records],
            )
            self._db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='version'")

    def remove_sources(self, sources: Sequence[str]) -> int:
        """Drop every chunk and record of these sources, whatever their collection (erasure's sweep for
        entries a plugin did not remove); the BM25 matrix is rebuilt when any went. Returns chunks removed."""
        if not sources:
            return 0
        marks = ",".join("?" * len(sources))
        with self._lock, self._db:
            removed = self._db.execute(
                f"DELETE FROM chunk WHERE source IN ({marks})", tuple(sources)
            ).rowcount
            self._db.execute(f"DELETE FROM source WHERE source IN ({marks})", tuple(sources))
            if removed:
                self._db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='version'")
        if removed:
            self.refresh()
        return removed

    def compact(self) -> dict:
        """Make removed chunks leave the disk: the write-ahead log, which still holds the pages as they
        were before each removal, is folded into the file (overwritten there by secure_delete) and
        truncated. Returns SQLite's {"busy", "log_frames", "checkpointed"}; busy=1 when another
        process's reader kept part of the log (run it again)."""
        with self._lock:
            busy, frames, done = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return {"busy": int(busy), "log_frames": int(frames), "checkpointed": int(done)}

    def clear(self) -> None:
        with self._lock, self._db:
            self._db.execute("DELETE FROM chunk")
            self._db.execute("DELETE FROM source")
            self._db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='version'")

    # -- reading -----------------------------------------------------------------------------

    def version(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT value FROM meta WHERE key='version'").fetchone()[0])

    def count(self, collections: Sequence[str] | None = None) -> int:
        sql, args = "SELECT COUNT(*) FROM chunk", ()
        if collections:
            sql += f" WHERE collection IN ({','.join('?' * len(collections))})"
            args = tuple(collections)
        with self._lock:
            return int(self._db.execute(sql, args).fetchone()[0])

    def sources(self, collection: str | None = None) -> list[SourceRecord]:
        sql, args = "SELECT collection, source, file_hash, chunks, indexed_at FROM source", ()
        if collection is not None:
            sql += " WHERE collection=?"
            args = (collection,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY collection, source", args).fetchall()
        return [SourceRecord(*row) for row in rows]

    def collections(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT DISTINCT collection FROM source ORDER BY 1")]

    # -- BM25 --------------------------------------------------------------------------------

    def _matrix_path(self) -> Path | None:
        return self.path.with_suffix(".bm25.npz") if self.path else None

    def refresh(self) -> None:
        """Make the in-memory BM25 match SQLite: load the saved matrix or rebuild and save it."""
        with self._lock:
            version = self.version()
            if version == self._built_version:
                return
            if not self._load_saved(version):
                self._build(version)

    def _build(self, version: int) -> None:
        rows = self._db.execute("SELECT id, collection, tokens FROM chunk ORDER BY rowid").fetchall()
        self._ids = [r[0] for r in rows]
        self._collections = np.array([r[1] for r in rows], dtype=object)
        if rows:
            model = bm25s.BM25(k1=self.k1, b=self.b)
            model.index([r[2].split() for r in rows], show_progress=False)
            self._model = model
        else:
            self._model = None
        self._built_version = version
        self._save(version)

    def _save(self, version: int) -> None:
        target = self._matrix_path()
        if target is None:
            return
        tmp = target.with_suffix(".tmp.npz")
        arrays: dict[str, np.ndarray] = {
            "version": np.array([version]),
            "params": np.array([self.k1, self.b]),
            "ids": np.array(self._ids, dtype=str),
            "collections": np.array(self._collections, dtype=str),
        }
        if self._model is not None:
            scores = self._model.scores
            arrays.update(
                data=scores["data"],
                indices=scores["indices"],
                indptr=scores["indptr"],
                num_docs=np.array([scores["num_docs"]]),
                vocab=np.array([json.dumps(self._model.vocab_dict)]),
            )
        with tmp.open("wb") as fh:
            np.savez(fh, **arrays)
        tmp.replace(target)

    def _load_saved(self, version: int) -> bool:
        target = self._matrix_path()
        if target is None or not target.exists():
            return False
        try:
            with np.load(target, allow_pickle=False) as saved:
                if int(saved["version"][0]) != version or list(saved["params"]) != [self.k1, self.b]:
                    return False
                self._ids = saved["ids"].tolist()
                self._collections = saved["collections"].astype(object)
                if "data" in saved:
                    model = bm25s.BM25(k1=self.k1, b=self.b)
                    model.scores = {
                        "data": saved["data"],
                        "indices": saved["indices"],
                        "indptr": saved["indptr"],
                        "num_docs": int(saved["num_docs"][0]),
                    }
                    model.vocab_dict = json.loads(str(saved["vocab"][0]))
                    model.unique_token_ids_set = set(model.vocab_dict.values())
                    model.nonoccurrence_array = None  # Lucene BM25 has no non-occurrence term
                    self._model = model
                else:
                    self._model = None
        except (OSError, ValueError, KeyError):
            return False
        self._built_version = version
        return True

    def search(
        self, query: str, k: int = 50, collections: Sequence[str] | None = None
    ) -> list[tuple[str, float]]:
        """The ``k`` best chunks for ``query`` as (chunk id, BM25 score), best first; zero scores dropped."""
        self.refresh()
        with self._lock:
            model, ids, cols = self._model, self._ids, self._collections
        if model is None:
            return []
        token_ids = model.get_tokens_ids(tokenize(query))
        if not token_ids:
            return []
        scores = model.get_scores_from_ids(token_ids)
        if collections:
            scores = np.where(np.isin(cols, list(collections)), scores, 0.0)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top])]
        return [(ids[i], float(scores[i])) for i in top if scores[i] > 0]

    def score_ids(self, query: str, ids: Sequence[str]) -> dict[str, float]:
        """BM25 scores of the given chunks for ``query`` (0 for unknown chunks or no matching word)."""
        self.refresh()
        with self._lock:
            model, all_ids = self._model, self._ids
            if model is not None and getattr(self, "_row_of_ids", None) is not all_ids:
                self._row_of = {cid: row for row, cid in enumerate(all_ids)}
                self._row_of_ids = all_ids
            row_of = self._row_of if model is not None else {}
        token_ids = model.get_tokens_ids(tokenize(query)) if model is not None else []
        if not token_ids:
            return dict.fromkeys(ids, 0.0)
        scores = model.get_scores_from_ids(token_ids)
        return {cid: float(scores[row_of[cid]]) if cid in row_of else 0.0 for cid in ids}
