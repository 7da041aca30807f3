"""Retrieval quality on SQuAD v1.1 dev (tests/data/squad): our default retriever vs the references.

On the fixed 2,000-question sample (numpy default_rng(0).choice(10570, 2000, replace=False)), passage
text = title + text, measured in the same run:
- ours: rag.retriever.Retriever with its defaults (hybrid: min-max-normalised BM25 + cosine, weight 0.5,
  en+fr analyser, MiniLM reading 128 word pieces), through a real DocumentIndex;
- BM25 baseline: Okapi BM25 (k1=1.5, b=0.75) on lower-case \\w+ tokens, as rank-bm25 scores it;
- dense baseline: all-MiniLM-L6-v2 over its full 256-piece window, cosine;
- plain RRF: reciprocal-rank fusion (k=60) of the two baselines.

    .venv/bin/python -m bench.retrieval_quality [--no-docs]

Targets: recall@5 >= 0.95 and recall@1 >= 0.80. Exit code 1 when one is missed.
Passage embeddings are cached in bench/.cache (delete it to re-embed).
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

from bench._docs import machine_line, publish
from bench._squad import parse_and_load, squad_parser

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from rag.embeddings import SentenceTransformerEmbedder  # noqa: E402
from rag.evaluation import build_corpus_index, search_documents  # noqa: E402
from rag.metrics import evaluate, sample_indices, score_rankings  # noqa: E402
from rag.retriever import Retriever  # noqa: E402

CACHE = ROOT / "bench" / ".cache"
KS = (1, 5, 10)


def backend_key(embedder: SentenceTransformerEmbedder) -> str:
    """Part of the cache key: empty for PyTorch (the vectors cached before ONNX existed), else the backend."""
    return "" if embedder.runs_on == "torch" else f"{embedder.runs_on}|"


def cached_vectors(embedder: SentenceTransformerEmbedder, texts: list[str], label: str) -> np.ndarray:
    key = hashlib.sha256(
        f"{embedder.model}|{embedder.max_tokens}|{backend_key(embedder)}".encode()
        + "\x1e".join(texts).encode()
    ).hexdigest()[:16]
    path = CACHE / f"{label}-{key}.npy"
    if path.exists():
        return np.load(path)
    CACHE.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    vectors = embedder.encode(texts)
    print(f"  embedded {len(texts)} {label} in {time.perf_counter() - started:.0f} s", flush=True)
    np.save(path, vectors)
    return vectors


def top_ids(scores: np.ndarray, ids: list[str], k: int) -> list[list[str]]:
    order = np.argsort(-scores, axis=1)[:, :k]
    return [[ids[j] for j in row] for row in order]


def baselines(corpus, queries) -> dict[str, dict]:
    import bm25s

    ids = [d.id for d in corpus]
    passages = [d.passage for d in corpus]
    golds = [q.gold for q in queries]
    depth = max(KS)

    words = re.compile(r"\w+")
    bm25 = bm25s.BM25(method="robertson", k1=1.5, b=0.75)
    bm25.index([words.findall(p.lower()) for p in passages], show_progress=False)
    lexical = np.stack([bm25.get_scores(words.findall(q.text.lower()) or [""]) for q in queries]).astype(
        np.float64
    )

    # Plain sentence-transformers on PyTorch, with the model's own 256-piece window.
    full = SentenceTransformerEmbedder(max_tokens=None, backend="torch")
    doc_vectors = cached_vectors(full, passages, "squad-passages")
    query_vectors = full.encode([q.text for q in queries])
    dense = query_vectors @ doc_vectors.T

    ranks_lexical = np.argsort(np.argsort(-lexical, axis=1), axis=1)
    ranks_dense = np.argsort(np.argsort(-dense, axis=1), axis=1)
    rrf = 1.0 / (60 + ranks_lexical + 1) + 1.0 / (60 + ranks_dense + 1)
    return {
        "BM25 (Okapi, \\w+ tokens)": score_rankings(top_ids(lexical, ids, depth), golds, KS),
        "dense all-MiniLM-L6-v2 (256 pieces, cosine)": score_rankings(top_ids(dense, ids, depth), golds, KS),
        "hybrid, plain RRF (k=60) of the two": score_rankings(top_ids(rrf, ids, depth), golds, KS),
    }


def ours(corpus, queries) -> dict[str, dict]:
    embedder = SentenceTransformerEmbedder()
    vectors = cached_vectors(
        embedder, [f"{d.title.replace('_', ' ').strip()}\n{d.text}" for d in corpus], "squad-ours"
    )
    index = build_corpus_index(corpus, embedder, vectors=vectors)
    out = {}
    dense_label = f"ours: dense side only (128 pieces, {embedder.runs_on})"
    for label, mode in (
        ("**ours: hybrid (default)**", "hybrid"),
        ("ours: BM25 side only", "bm25"),
        (dense_label, "dense"),
    ):
        out[label] = evaluate(search_documents(Retriever(index, mode=mode)), queries, KS)
    return out


def report(rows: dict[str, dict], n: int) -> str:
    lines = [
        "## Retrieval quality (SQuAD v1.1 dev)",
        "",
        f"{n:,} questions (the fixed sample `default_rng(0).choice(10570, 2000, replace=False)`) over 2,067 "
        "passages (title + text). Ours is tuned only on the other 8,570 questions; the same defaults serve "
        "the French test corpus. Measured by `python -m bench.retrieval_quality` in one run.",
        "",
        "| retriever | recall@1 | recall@5 | recall@10 | MRR |",
        "|---|---|---|---|---|",
    ]
    for label, r in rows.items():
        lines.append(
            f"| {label} | {r['recall@1']:.3f} | {r['recall@5']:.3f} | {r['recall@10']:.3f} | {r['mrr']:.3f} |"
        )
    best = rows["**ours: hybrid (default)**"]
    ok = best["recall@5"] >= 0.95 and best["recall@1"] >= 0.80
    lines += [
        "",
        f"Targets recall@5 ≥ 0.95 and recall@1 ≥ 0.80: **{'met' if ok else 'missed'}**. " + machine_line(),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = squad_parser(__doc__)
    parser.add_argument("--sample", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args, data = parse_and_load(parser, argv)
    if data is None:
        return 1
    corpus, all_queries = data
    queries = [all_queries[i] for i in sample_indices(len(all_queries), args.sample, args.seed)]
    rows = {**ours(corpus, queries), **baselines(corpus, queries)}
    section = report(rows, len(queries))
    publish("retrieval-quality", section, write=not args.no_docs and args.sample == 2000 and args.seed == 0)
    best = rows["**ours: hybrid (default)**"]
    return 0 if best["recall@5"] >= 0.95 and best["recall@1"] >= 0.80 else 1


if __name__ == "__main__":
    sys.exit(main())
