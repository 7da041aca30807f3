"""Dense, BM25 and hybrid retrieval over a DocumentIndex, with collection filters and optional MMR."""

from __future__ import annotations

import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np

from rag.index import DocumentIndex

MODES = ("hybrid", "dense", "bm25")
# Tuned on the 8,570 SQuAD questions outside the reported sample (see docs/rag.md); nothing in
# them is specific to SQuAD, and the same values serve the French test corpus.
DEFAULT_BM25_WEIGHT = 0.5
DEFAULT_CANDIDATES = 50


class _Stored(NamedTuple):
    text: str
    metadata: dict
    vector: np.ndarray | None


@dataclass
class SearchResult:
    """A retrieved chunk with what is needed to cite it."""

    id: str
    text: str
    score: float
    title: str
    source: str
    collection: str
    heading: str = ""
    page: int | None = None
    position: int = 0
    # Cosine similarity of this chunk to the question: an absolute measure (the hybrid score is
    # relative to the other candidates). None in bm25 mode.
    relevance: float | None = None

    @property
    def snippet(self) -> str:
        """The start of the passage on one line, cut at a word boundary (about 240 characters)."""
        flat = re.sub(r"\s+", " ", self.text).strip()
        if len(flat) <= 240:
            return flat
        return flat[:240].rsplit(" ", 1)[0] + "…"

    @property
    def citation(self) -> str:
        """Title plus where in the document: the heading path or the page."""
        where = self.heading or (f"page {self.page}" if self.page is not None else "")
        return f"{self.title} — {where}" if where else self.title

    def to_dict(self) -> dict:
        data = asdict(self)
        data["snippet"] = self.snippet
        data["score"] = round(self.score, 6)
        return data


def _where(collections: Sequence[str] | None) -> dict | None:
    if not collections:
        return None
    if len(collections) == 1:
        return {"collection": collections[0]}
    return {"collection": {"$in": list(collections)}}


def _normalise(scores: np.ndarray) -> np.ndarray:
    """Min-max over the candidate list, so BM25 (unbounded) and cosine (-1..1) add up fairly."""
    if scores.size == 0:
        return scores
    lo, hi = float(scores.min()), float(scores.max())
    if hi - lo < 1e-12:
        return np.ones_like(scores)
    return (scores - lo) / (hi - lo)


class Retriever:
    """Search an index by meaning, by words, or both.

    Hybrid mode takes the best ``candidates`` of each side, gives every candidate both scores
    (exact BM25 and exact cosine, not a rank), min-max normalises each over the candidates and
    adds them: ``bm25_weight * bm25 + (1 - bm25_weight) * cosine``. Unlike rank fusion this keeps
    how much better the best match is, which is what lifts recall@1.
    """

    def __init__(
        self,
        index: DocumentIndex,
        mode: str = "hybrid",
        k: int = 5,
        bm25_weight: float = DEFAULT_BM25_WEIGHT,
        candidates: int = DEFAULT_CANDIDATES,
        mmr: bool = False,
        mmr_lambda: float = 0.7,
        sync_every: float | None = 30.0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown retrieval mode {mode!r}: choose one of {', '.join(MODES)}")
        if not 0.0 <= bm25_weight <= 1.0:
            raise ValueError(f"bm25_weight must be between 0 and 1, got {bm25_weight}")
        if k < 1 or candidates < 1:
            raise ValueError("k and candidates must be at least 1")
        self.index = index
        self.mode = mode
        self.k = k
        self.bm25_weight = bm25_weight
        self.candidates = candidates
        self.mmr = mmr
        self.mmr_lambda = mmr_lambda
        self.sync_every = sync_every
        # Embeds questions and searches Chroma beside BM25; its thread starts on the first search.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="apprenti-retriever")

    def search(
        self,
        query: str,
        k: int | None = None,
        collections: Sequence[str] | None = None,
        mode: str | None = None,
    ) -> list[SearchResult]:
        """The ``k`` best chunks for ``query``, best first, limited to ``collections`` if given.

        In hybrid mode the question is embedded and searched in Chroma on a worker thread while
        this thread runs BM25 and fetches the lexical candidates' vectors and texts: the two
        halves take about as long as each other, and the embedding runs outside the GIL.
        """
        k = k or self.k
        mode = mode or self.mode
        if mode not in MODES:
            raise ValueError(f"unknown retrieval mode {mode!r}: choose one of {', '.join(MODES)}")
        if self.sync_every is not None:
            self.index.check_sync(self.sync_every)
        if not query.strip() or self.index.count(collections) == 0:
            return []
        pool = max(self.candidates, k * 4 if self.mmr else k)

        dense_side = None
        if mode != "bm25" or self.mmr:
            dense_side = self._executor.submit(self._dense_side, query, pool, collections, mode != "bm25")
        lexical: dict[str, float] = {}
        known: dict[str, _Stored] = {}
        try:
            if mode != "dense":
                lexical = dict(self.index.lexical.search(query, pool, collections))
            if mode == "hybrid" and lexical:
                known = self._fetch(list(lexical), vectors=True)
        finally:
            query_vector, dense = dense_side.result() if dense_side is not None else (None, {})

        if mode == "dense":
            ranked = sorted(dense.items(), key=lambda kv: -kv[1])
        elif mode == "bm25":
            ranked = sorted(lexical.items(), key=lambda kv: -kv[1])
        else:
            ranked = self._fuse(query, query_vector, dense, lexical, known)
        ranked = ranked[:pool]
        if not ranked:
            return []
        if self.mmr:
            ranked = self._mmr(query_vector, ranked, k)
        return self._results(ranked[:k], dense if mode != "bm25" else None, known)

    # -- the parts ---------------------------------------------------------------------------

    def _dense_side(
        self, query: str, n: int, collections: Sequence[str] | None, search: bool
    ) -> tuple[np.ndarray, dict[str, float]]:
        vector = self.index.embedder.encode([query], kind="query")[0]
        return vector, (self._dense(vector, n, collections) if search else {})

    def _dense(self, vector: np.ndarray, n: int, collections: Sequence[str] | None) -> dict[str, float]:
        n = min(n, self.index.count(collections))
        if n == 0:
            return {}
        got = self.index.chroma.query(
            query_embeddings=[vector], n_results=n, where=_where(collections), include=["distances"]
        )
        # Chroma's cosine distance is 1 - cosine similarity.
        return {cid: 1.0 - float(d) for cid, d in zip(got["ids"][0], got["distances"][0], strict=True)}

    def _fetch(self, ids: list[str], vectors: bool = False) -> dict[str, _Stored]:
        """Text and metadata (and the vector if asked) of stored chunks; ids no longer stored are left out."""
        include = ["documents", "metadatas", "embeddings"] if vectors else ["documents", "metadatas"]
        got = self.index.chroma.get(ids=ids, include=include)
        found = got["embeddings"] if vectors else [None] * len(got["ids"])
        return {
            cid: _Stored(doc, meta, None if vector is None else np.asarray(vector, dtype=np.float32))
            for cid, doc, meta, vector in zip(
                got["ids"], got["documents"], got["metadatas"], found, strict=True
            )
        }

    def _fuse(
        self,
        query: str,
        vector: np.ndarray,
        dense: dict[str, float],
        lexical: dict[str, float],
        known: dict[str, _Stored],
    ) -> list[tuple[str, float]]:
        ids = list(dict.fromkeys([*dense, *lexical]))
        missing_lexical = [i for i in ids if i not in lexical]
        if missing_lexical:
            lexical.update(self.index.lexical.score_ids(query, missing_lexical))
        for cid in ids:
            if cid not in dense and cid in known:
                dense[cid] = float(known[cid].vector @ vector)
        # A lexical candidate missing from Chroma was removed since BM25 was read; it cannot be cited.
        ids = [cid for cid in ids if cid in dense]
        bm25 = _normalise(np.array([lexical.get(i, 0.0) for i in ids], dtype=np.float64))
        cosine = _normalise(np.array([dense[i] for i in ids], dtype=np.float64))
        fused = self.bm25_weight * bm25 + (1.0 - self.bm25_weight) * cosine
        order = np.argsort(-fused, kind="stable")
        return [(ids[i], float(fused[i])) for i in order]

    def _mmr(self, vector: np.ndarray, ranked: list[tuple[str, float]], k: int) -> list[tuple[str, float]]:
        """Maximal marginal relevance: trade a little relevance for passages that say different things."""
        ids = [cid for cid, _ in ranked]
        got = self.index.chroma.get(ids=ids, include=["embeddings"])
        by_id = dict(zip(got["ids"], np.asarray(got["embeddings"], dtype=np.float32), strict=True))
        vectors = np.stack([by_id[i] for i in ids])
        relevance = vectors @ vector
        chosen: list[int] = []
        left = list(range(len(ids)))
        while left and len(chosen) < k:
            if chosen:
                redundancy = (vectors[left] @ vectors[chosen].T).max(axis=1)
            else:
                redundancy = np.zeros(len(left))
            gain = self.mmr_lambda * relevance[left] - (1 - self.mmr_lambda) * redundancy
            best = left[int(np.argmax(gain))]
            chosen.append(best)
            left.remove(best)
        return [ranked[i] for i in chosen]

    def _results(
        self, ranked: list[tuple[str, float]], cosines: dict[str, float] | None, known: dict[str, _Stored]
    ) -> list[SearchResult]:
        stored = {cid: known[cid] for cid, _ in ranked if cid in known}
        missing = [cid for cid, _ in ranked if cid not in stored]
        if missing:
            stored.update(self._fetch(missing))
        results = []
        for cid, score in ranked:
            if cid not in stored:  # removed between the search and now
                continue
            doc, meta = stored[cid].text, stored[cid].metadata
            results.append(
                SearchResult(
                    id=cid,
                    text=doc,
                    score=score,
                    title=meta.get("title", ""),
                    source=meta.get("source", ""),
                    collection=meta.get("collection", ""),
                    heading=meta.get("heading", ""),
                    page=meta.get("page"),
                    position=int(meta.get("position", 0)),
                    relevance=None if cosines is None else cosines.get(cid),
                )
            )
        return results
