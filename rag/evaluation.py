"""Evaluate a retriever on a BEIR-like corpus: build a throw-away index, ask every query, score it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import chromadb
import numpy as np

from rag.chunking import Chunk
from rag.embeddings import DEFAULT_BACKEND, SentenceTransformerEmbedder
from rag.index import DocumentIndex, _chroma_settings
from rag.metrics import CorpusDoc, Query, evaluate, load_corpus, load_queries, sample_indices
from rag.retriever import Retriever

EVAL_COLLECTION = "eval"


def build_corpus_index(
    corpus: Sequence[CorpusDoc],
    embedder: SentenceTransformerEmbedder | None = None,
    vectors: np.ndarray | None = None,
    chroma_collection: str = "apprenti_eval",
    bm25_k1: float | None = None,
    bm25_b: float | None = None,
    progress: Callable[[int, int], None] | None = None,
    batch: int = 512,
) -> DocumentIndex:
    """An in-memory index with one chunk per corpus document (source = the document id).

    ``vectors`` (one row per document, in order) skips embedding, e.g. from a benchmark cache.
    """
    client = chromadb.EphemeralClient(settings=_chroma_settings())
    try:
        client.delete_collection(chroma_collection)
    except Exception:  # noqa: BLE001 - absent is fine
        pass
    index = DocumentIndex(
        client, None, embedder or SentenceTransformerEmbedder(), chroma_collection, bm25_k1, bm25_b
    )
    chunks = [Chunk(doc.text, doc.id, doc.title.replace("_", " ").strip(), 0) for doc in corpus]
    for start in range(0, len(chunks), batch):
        part = chunks[start : start + batch]
        index.add_chunks(
            EVAL_COLLECTION,
            {c.source: ("", [c]) for c in part},
            vectors=None if vectors is None else vectors[start : start + batch],
        )
        if progress is not None:
            progress(min(start + batch, len(chunks)), len(chunks))
    index.lexical.refresh()
    return index


def search_documents(retriever: Retriever, mode: str | None = None) -> Callable[[str, int], list[str]]:
    """Adapt a retriever to ``search(text, k) -> document ids`` (chunk sources, first hit kept)."""

    def search(text: str, k: int) -> list[str]:
        ids: list[str] = []
        for result in retriever.search(text, k=k, mode=mode):
            if result.source not in ids:
                ids.append(result.source)
        return ids

    return search


def evaluate_files(
    corpus_path: str | Path,
    queries_path: str | Path,
    sample: int | None = None,
    seed: int = 0,
    model: str | None = None,
    mode: str = "hybrid",
    backend: str = DEFAULT_BACKEND,
    progress: Callable[[int, int], None] | None = None,
    **retriever_options,
) -> dict:
    """recall@1/5/10 and MRR of the retriever on BEIR-like files (``--sample N --seed S`` semantics)."""
    corpus = load_corpus(corpus_path)
    queries: list[Query] = load_queries(queries_path, corpus)
    chosen = [queries[i] for i in sample_indices(len(queries), sample, seed)]
    index = build_corpus_index(corpus, SentenceTransformerEmbedder(model, backend=backend), progress=progress)
    retriever = Retriever(index, mode=mode, **retriever_options)
    result = evaluate(search_documents(retriever), chosen)
    result.update(corpus=len(corpus), mode=mode, sample=sample, seed=seed)
    return result
