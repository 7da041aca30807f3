"""The document index: chunks in Chroma (vectors) and in the lexical store (BM25), kept in step."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import chromadb
import httpx
import numpy as np
from chromadb.api import ClientAPI
from chromadb.config import Settings

from rag.bm25 import LexicalIndex, SourceRecord
from rag.chunking import Chunk, split_documents
from rag.embeddings import DEFAULT_BACKEND, SentenceTransformerEmbedder
from rag.loaders import LoadError, Skipped, discover, load_file
from rag.tokenize import tokenize

CHROMA_COLLECTION = "apprenti_chunks"
DEFAULT_COLLECTION = "default"
# Chunks embedded together: large enough for well-filled length-sorted batches, small enough
# that the progress bar moves and a failure loses little work.
EMBED_BATCH_CHUNKS = 512


class IndexUnavailable(RuntimeError):
    """The Chroma store cannot be reached or opened."""


class IndexMismatch(RuntimeError):
    """The index was built with another embedding model than the one asked for."""


CHROMA_TIMEOUT = 10.0  # seconds a Chroma server has to answer one request


def _chroma_settings() -> Settings:
    return Settings(anonymized_telemetry=False, allow_reset=False)


def _bounded(client: ClientAPI, timeout: float) -> None:
    """Chroma's HTTP client waits forever by default (httpx timeout=None): give every request a limit."""
    session = getattr(getattr(client, "_server", None), "_session", None)
    if session is not None:
        session.timeout = httpx.Timeout(timeout)


def open_client(
    path: str | os.PathLike | None = None, url: str | None = None, timeout: float = CHROMA_TIMEOUT
) -> ClientAPI:
    """A Chroma client: a server at ``url`` (``http://host:port``) if given, else embedded at ``path``.

    A server must answer each request within ``timeout`` seconds, this first contact included, so
    one that accepts connections and never replies is an error rather than a hang.
    Raises IndexUnavailable naming the URL or folder when Chroma cannot be reached or opened.
    """
    if url:
        parsed = urlparse(url if "://" in url else f"http://{url}")
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise IndexUnavailable(f"bad Chroma URL {url!r}: expected http://host:port")
        port = parsed.port or (443 if parsed.scheme == "https" else 8000)
        try:
            # Chroma's client talks to the server while it is built, with no limit: probe first.
            httpx.get(f"{parsed.scheme}://{parsed.hostname}:{port}/api/v2/heartbeat", timeout=timeout)
            client = chromadb.HttpClient(
                host=parsed.hostname,
                port=port,
                ssl=parsed.scheme == "https",
                settings=_chroma_settings(),
            )
            _bounded(client, timeout)
            client.heartbeat()
        except Exception as exc:  # noqa: BLE001 - connection errors come in many types
            raise IndexUnavailable(
                f"the Chroma server at {url} is not reachable ({type(exc).__name__}: {exc}); start it "
                "(chroma run --path DIR --port PORT) or unset the Chroma URL to use the embedded store"
            ) from exc
        return client
    if path is None:
        raise IndexUnavailable("no Chroma folder or URL given")
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(folder), settings=_chroma_settings())
    except Exception as exc:  # noqa: BLE001
        raise IndexUnavailable(f"cannot open the Chroma store in {folder}: {exc}") from exc


CHROMA_DB = "chroma.sqlite3"
_DELETE = 3  # chromadb's Operation.DELETE, as its log stores it


def purge_deleted(path: str | os.PathLike) -> dict:
    """Make the text of deleted records leave an embedded Chroma store (folder ``path``).

    Chroma deletes a record from its tables but keeps every write in its log (the ``embeddings_queue``
    table of chroma.sqlite3) until the vector index is flushed, which for a small collection can be
    never; ``chroma vacuum`` does not purge those rows either. So each logged write that a later delete
    of the same record supersedes has its document and metadata removed and its vector replaced by a
    unit vector: replaying the log (Chroma does at start-up) still adds and then deletes the record,
    and ends in the same state. The full-text index is then merged (dropping deleted rows' terms) and
    the file rebuilt with VACUUM, so no free page keeps the old bytes. Returns the rows redacted.
    A Chroma server's files are out of reach: run this on its folder, with the server stopped.
    """
    import sqlite3
    import struct

    database = Path(path) / CHROMA_DB
    if not database.is_file():
        return {"redacted": 0}
    db = sqlite3.connect(str(database), isolation_level=None, timeout=60)
    try:
        db.execute("PRAGMA secure_delete=ON")
        db.execute("BEGIN IMMEDIATE")
        try:
            # The last delete of each record, indexed, so the log is read once (not once per row).
            db.execute(
                "CREATE TEMP TABLE gone AS SELECT topic, id, MAX(seq_id) AS last FROM embeddings_queue "
                "WHERE operation = ? GROUP BY topic, id",
                (_DELETE,),
            )
            db.execute("CREATE INDEX temp.gone_key ON gone (topic, id)")
            rows = db.execute(
                "SELECT q.seq_id, q.vector, q.metadata FROM embeddings_queue q JOIN gone g "
                "ON g.topic = q.topic AND g.id = q.id WHERE q.operation != ? AND q.seq_id < g.last",
                (_DELETE,),
            ).fetchall()
            redacted = 0
            for seq_id, vector, metadata in rows:
                dims = len(vector) // 4 if vector else 0
                unit = struct.pack(f"<{dims}f", 1.0, *([0.0] * (dims - 1))) if dims else None
                if metadata is None and vector == unit:
                    continue  # redacted by an earlier purge
                db.execute(
                    "UPDATE embeddings_queue SET metadata = NULL, vector = ? WHERE seq_id = ?", (unit, seq_id)
                )
                redacted += 1
            db.execute("DROP TABLE temp.gone")
            if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'embedding_fulltext_search'").fetchone():
                db.execute(
                    "INSERT INTO embedding_fulltext_search(embedding_fulltext_search) VALUES ('optimize')"
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("VACUUM")
    finally:
        db.close()
    return {"redacted": redacted}


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class IngestReport:
    """What an ingest run did, file by file."""

    collection: str
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    chunks: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {
            "collection": self.collection,
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "removed": self.removed,
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "chunks": self.chunks,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class Progress:
    """Passed to the progress callback after each step: ``done`` of ``total`` files."""

    done: int
    total: int
    path: str
    stage: str  # "checked", "indexed", "skipped", "removed"


ProgressCallback = Callable[[Progress], None]


def chunk_id(collection: str, source: str, position: int) -> str:
    return f"{collection}:{hashlib.sha1(source.encode()).hexdigest()[:16]}:{position}"


def chunk_metadata(collection: str, chunk: Chunk, fhash: str, indexed_at: float) -> dict:
    meta = {
        "collection": collection,
        "source": chunk.source,
        "title": chunk.title,
        "heading": chunk.heading,
        "position": chunk.position,
        "content_hash": chunk.content_hash,
        "file_hash": fhash,
        "indexed_at": indexed_at,
    }
    if chunk.page is not None:
        meta["page"] = chunk.page
    return meta


def index_text(metadata: dict, text: str) -> str:
    """The text that was embedded and tokenised for a stored chunk (see Chunk.index_text)."""
    return Chunk(
        text, metadata.get("source", ""), metadata.get("title", ""), 0, metadata.get("heading", "")
    ).index_text


@dataclass
class _Batch:
    """Embedded chunks of whole files, ready to be written."""

    collection: str
    chunks_by_source: dict[str, tuple[str, list[Chunk]]]
    chunks: list[Chunk]
    vectors: np.ndarray
    indexed_at: float


class DocumentIndex:
    """Chunks of a team's documents, searchable by meaning (Chroma) and by words (BM25).

    One Chroma collection holds every chunk; the user-facing *collection* ("hr", "eng") is a
    metadata field, so one query can span several collections and a channel can be limited to some.
    """

    def __init__(
        self,
        client: ClientAPI,
        state_dir: str | os.PathLike | None,
        embedder: SentenceTransformerEmbedder | None = None,
        chroma_collection: str = CHROMA_COLLECTION,
        bm25_k1: float | None = None,
        bm25_b: float | None = None,
    ) -> None:
        """``state_dir`` holds the lexical store (None: in memory, for evaluation runs)."""
        self.client = client
        self.embedder = embedder or SentenceTransformerEmbedder()
        lexical_kwargs = {}
        if bm25_k1 is not None:
            lexical_kwargs["k1"] = bm25_k1
        if bm25_b is not None:
            lexical_kwargs["b"] = bm25_b
        path = Path(state_dir) / f"{chroma_collection}.lexical.sqlite3" if state_dir is not None else None
        self.lexical = LexicalIndex(path, **lexical_kwargs)
        model_name = self.embedder.label
        try:
            self.chroma = client.get_or_create_collection(
                chroma_collection,
                embedding_function=self.embedder,
                configuration={"hnsw": {"space": "cosine"}},
                metadata={"embedding_model": model_name, "max_tokens": self.embedder.max_tokens or 0},
            )
        except Exception as exc:  # noqa: BLE001 - a server can fail in many ways
            raise IndexUnavailable(f"cannot open the index collection {chroma_collection!r}: {exc}") from exc
        built_with = (self.chroma.metadata or {}).get("embedding_model")
        if built_with and built_with != model_name:
            raise IndexMismatch(
                f"the index {chroma_collection!r} was built with the embedding model {built_with!r}, not "
                f"{model_name!r}: set the embedding model back, or index into a new Chroma folder or "
                "collection"
            )
        self._resync_if_needed()

    @classmethod
    def open(
        cls,
        path: str | os.PathLike | None = None,
        url: str | None = None,
        state_dir: str | os.PathLike | None = None,
        model: str | None = None,
        backend: str | None = None,
        **kwargs,
    ) -> DocumentIndex:
        """Open (or create) the index in folder ``path`` or on the Chroma server at ``url``.

        With a server, ``state_dir`` is where this machine keeps the BM25 side (rebuilt from
        the server if missing); embedded, it defaults to ``path``.
        """
        client = open_client(path=path, url=url)
        if state_dir is None:
            state_dir = path
        embedder = SentenceTransformerEmbedder(model, backend=backend or DEFAULT_BACKEND)
        return cls(client, state_dir, embedder, **kwargs)

    # -- consistency -------------------------------------------------------------------------

    def check_sync(self, every: float = 30.0) -> None:
        """At most every ``every`` seconds, rebuild the lexical side if Chroma's chunk count moved.

        Needed with a Chroma server written to from another machine, whose BM25 side is elsewhere.
        """
        now = time.monotonic()
        if now - self._checked_at >= every:
            self._checked_at = now
            self._resync_if_needed()

    def _resync_if_needed(self) -> None:
        """Rebuild the lexical store from Chroma when they disagree (new machine, lost file)."""
        self._checked_at = time.monotonic()
        if self.lexical.count() == self.chroma.count():
            return
        self.lexical.clear()
        page = 2000
        offset = 0
        records: dict[tuple[str, str], SourceRecord] = {}
        while True:
            got = self.chroma.get(include=["documents", "metadatas"], limit=page, offset=offset)
            if not got["ids"]:
                break
            rows = []
            for cid, doc, meta in zip(got["ids"], got["documents"], got["metadatas"], strict=True):
                key = (meta["collection"], meta["source"])
                rows.append((cid, key[0], key[1], index_text(meta, doc)))
                old = records.get(key)
                records[key] = SourceRecord(
                    key[0],
                    key[1],
                    meta.get("file_hash", ""),
                    (old.chunks if old else 0) + 1,
                    float(meta.get("indexed_at", 0.0)),
                )
            self.lexical.write(add=rows)
            offset += len(got["ids"])
        self.lexical.write(records=list(records.values()))
        self.lexical.refresh()

    # -- queries about the index -------------------------------------------------------------

    def count(self, collections: Sequence[str] | None = None) -> int:
        """Number of chunks, in all collections or in the ones named."""
        return self.lexical.count(collections)

    def sources(self, collection: str | None = None) -> list[SourceRecord]:
        """Indexed files with their chunk count and indexing time."""
        return self.lexical.sources(collection)

    def collections(self) -> list[str]:
        return self.lexical.collections()

    # -- changes -----------------------------------------------------------------------------

    def delete(self, collection: str, sources: Iterable[str] | None = None) -> int:
        """Remove the chunks of ``sources`` (all of the collection when None); returns chunks removed."""
        records = self.sources(collection)
        if sources is not None:
            wanted = {str(s) for s in sources}
            records = [r for r in records if r.source in wanted]
        removed = 0
        for record in records:
            self.chroma.delete(where={"$and": [{"collection": collection}, {"source": record.source}]})
            removed += record.chunks
        self.lexical.write(delete_sources=[(collection, r.source) for r in records])
        self.lexical.refresh()
        return removed

    def add_chunks(
        self,
        collection: str,
        chunks_by_source: dict[str, tuple[str, list[Chunk]]],
        vectors: np.ndarray | None = None,
    ) -> int:
        """Embed and store whole files' chunks; ``chunks_by_source`` maps source -> (file hash, chunks).

        ``vectors`` (one row per chunk, in order) skips embedding. Old chunks of those sources are
        replaced. The source records are written last, so a file interrupted half-way is not
        recorded and is indexed again by the next run.
        """
        return self._write_batch(self._embed_batch(collection, chunks_by_source, vectors))

    def _embed_batch(
        self,
        collection: str,
        chunks_by_source: dict[str, tuple[str, list[Chunk]]],
        vectors: np.ndarray | None = None,
    ) -> _Batch:
        chunks = [c for _, file_chunks in chunks_by_source.values() for c in file_chunks]
        if vectors is None:
            vectors = self.embedder.encode([c.index_text for c in chunks])
        return _Batch(collection, dict(chunks_by_source), chunks, vectors, time.time())

    def _write_batch(self, batch: _Batch) -> int:
        """Replace the batch's sources in Chroma, then in the lexical store (with their records, last)."""
        collection, now = batch.collection, batch.indexed_at
        ids, docs, metas = [], [], []
        for source, (fhash, chunks) in batch.chunks_by_source.items():
            for c in chunks:
                ids.append(chunk_id(collection, source, c.position))
                docs.append(c.text)
                metas.append(chunk_metadata(collection, c, fhash, now))
        indexed = {r.source for r in self.lexical.sources(collection)}
        for source in batch.chunks_by_source:
            if source in indexed:  # a new file has nothing to replace: skip the filtered delete
                self.chroma.delete(where={"$and": [{"collection": collection}, {"source": source}]})
        step = max(1, self.client.get_max_batch_size())
        for start in range(0, len(ids), step):
            self.chroma.add(
                ids=ids[start : start + step],
                embeddings=batch.vectors[start : start + step],
                documents=docs[start : start + step],
                metadatas=metas[start : start + step],
            )
        self.lexical.write(
            add=[
                (cid, collection, m["source"], c.index_text)
                for cid, m, c in zip(ids, metas, batch.chunks, strict=True)
            ],
            delete_sources=[(collection, s) for s in batch.chunks_by_source],
            records=[
                SourceRecord(collection, s, fhash, len(chunks), now)
                for s, (fhash, chunks) in batch.chunks_by_source.items()
            ],
            tokens=[tokenize(c.index_text) for c in batch.chunks],
        )
        return len(batch.chunks)

    def ingest(
        self,
        paths: Iterable[str | os.PathLike],
        collection: str = DEFAULT_COLLECTION,
        prune: bool = False,
        progress: ProgressCallback | None = None,
    ) -> IngestReport:
        """Index files and folders into ``collection``; unchanged files are skipped by content hash.

        A changed file replaces its chunks; a file that cannot be read is skipped with a reason
        (its previous version, if any, stays indexed). With ``prune``, files of the collection
        that no longer exist, or that are no longer found under the given folders, are removed.
        """
        started = time.perf_counter()
        collection = validate_collection(collection)
        paths = list(paths)
        files, skipped = discover(paths)
        report = IngestReport(collection, skipped=list(skipped))
        known = {r.source: r for r in self.sources(collection)}
        total = len(files)
        done = 0

        def tick(path: str, stage: str) -> None:
            if progress is not None:
                progress(Progress(done, total, path, stage))

        def prepare(path: Path) -> tuple[Path, str | None, list[Chunk] | None, str | None]:
            """Hash, load and chunk one file (runs in a thread while the main one embeds)."""
            try:
                fhash = file_hash(path)
            except OSError as exc:
                return path, None, None, f"cannot read: {exc.strerror or exc}"
            record = known.get(str(path))
            if record is not None and record.file_hash == fhash:
                return path, fhash, None, None
            try:
                chunks = split_documents(load_file(path))
            except LoadError as exc:
                return path, fhash, None, str(exc)
            if not chunks:
                return path, fhash, None, "no text in the file"
            return path, fhash, chunks, None

        pending: dict[str, tuple[str, list[Chunk]]] = {}
        pending_chunks = 0
        writing: tuple[Future[int], list[str]] | None = None

        def settle() -> None:
            """Wait for the batch being written and count it in the report."""
            nonlocal writing, done
            if writing is None:
                return
            future, sources = writing
            writing = None
            report.chunks += future.result()
            for source in sources:
                (report.updated if source in known else report.added).append(source)
                done += 1
                tick(source, "indexed")

        def flush() -> None:
            nonlocal pending, pending_chunks, writing
            if not pending:
                return
            batch = self._embed_batch(collection, pending)  # overlaps the previous batch's write
            settle()
            writing = (writer.submit(self._write_batch, batch), list(pending))
            pending, pending_chunks = {}, 0

        # Loading and chunking run ahead in worker threads while embedding runs here, and each
        # embedded batch is written to Chroma and BM25 by one writer thread (in order) while the
        # next one is embedded.
        with ThreadPoolExecutor(max_workers=2) as pool, ThreadPoolExecutor(max_workers=1) as writer:
            for path, fhash, chunks, error in pool.map(prepare, files):
                source = str(path)
                if error is not None:
                    report.skipped.append(Skipped(source, error))
                    done += 1
                    tick(source, "skipped")
                elif chunks is None:
                    report.unchanged.append(source)
                    done += 1
                    tick(source, "checked")
                else:
                    pending[source] = (fhash, chunks)
                    pending_chunks += len(chunks)
                    if pending_chunks >= EMBED_BATCH_CHUNKS:
                        flush()
            flush()
            settle()

        if prune:
            present = {str(f) for f in files}
            roots = [Path(p).resolve() for p in paths]
            gone = [
                s
                for s in known
                if s not in present
                and (not Path(s).exists() or any(_is_under(Path(s), root) for root in roots))
            ]
            if gone:
                self.delete(collection, gone)
                report.removed = sorted(gone)
                for source in report.removed:
                    tick(source, "removed")
        self.lexical.refresh()
        report.seconds = time.perf_counter() - started
        return report


def _is_under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def validate_collection(name: str) -> str:
    """Collection names are short identifiers: letters, digits, '-', '_' and '.'."""
    import re

    if not name or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", name):
        raise ValueError(
            f"bad collection name {name!r}: use 1-63 letters, digits, '-', '_' or '.', starting with a "
            "letter or digit"
        )
    return name
