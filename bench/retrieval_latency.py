"""Query latency of the hybrid retriever (embedding + Chroma + BM25 + fusion) at 10,000 and 100,000 chunks.

The index holds the 2,067 SQuAD dev passages (real text, real MiniLM vectors) plus synthetic chunks up to
the size: each is a real passage with its sentences shuffled and its vector perturbed with Gaussian noise
(norm about 0.75 before re-normalising, about 0.8 cosine to its source), so that embedding 100,000
chunks on 2 cores is not part of the benchmark. Queries are 300 SQuAD questions, each timed end to end.
Baseline in the same run: a plain dense query through LangChain, `Chroma.similarity_search(q, k=5)` with
`HuggingFaceEmbeddings` on the same all-MiniLM-L6-v2 folder (embedding on PyTorch + HNSW search), over
the same Chroma collection.

    .venv/bin/python -m bench.retrieval_latency [--sizes 10000 100000] [--no-docs]

Target at 10,000 chunks: p50 <= 20 ms and p99 <= 50 ms. Exit code 1 when missed.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

from bench._docs import machine_line, publish
from bench._squad import parse_and_load, squad_parser

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from bench.retrieval_quality import cached_vectors  # noqa: E402
from rag.chunking import Chunk  # noqa: E402
from rag.embeddings import SentenceTransformerEmbedder, default_model  # noqa: E402
from rag.index import CHROMA_COLLECTION, DocumentIndex, open_client  # noqa: E402
from rag.metrics import sample_indices  # noqa: E402
from rag.retriever import Retriever  # noqa: E402

SENTENCE = re.compile(r"(?<=[.!?])\s+")


def build(size: int, corpus, vectors: np.ndarray, embedder, folder: Path) -> DocumentIndex:
    rng = np.random.default_rng(size)
    index = DocumentIndex(open_client(path=folder), folder, embedder)
    batch = 4000
    for start in range(0, size, batch):
        chunks, rows = {}, []
        for i in range(start, min(size, start + batch)):
            j = i % len(corpus)
            doc = corpus[j]
            text = doc.text
            vector = vectors[j]
            if i >= len(corpus):
                sentences = SENTENCE.split(text)
                rng.shuffle(sentences)
                text = " ".join(sentences)
                vector = vector + rng.normal(0, 0.75 / np.sqrt(len(vector)), len(vector))
                vector = vector / np.linalg.norm(vector)
            source = f"{doc.id}#{i}"
            chunks[source] = ("", [Chunk(text, source, doc.title.replace("_", " "), 0)])
            rows.append(vector)
        index.add_chunks("bench", chunks, vectors=np.asarray(rows, dtype=np.float32))
    index.lexical.refresh()
    return index


def langchain_store(index: DocumentIndex):
    """LangChain's vector store over the same Chroma collection, embedding questions on PyTorch."""
    from langchain_chroma import Chroma
    from langchain_community.embeddings import HuggingFaceEmbeddings

    embeddings = HuggingFaceEmbeddings(model_name=default_model())
    return Chroma(client=index.client, collection_name=CHROMA_COLLECTION, embedding_function=embeddings)


def timed(fn, queries) -> tuple[float, float]:
    for q in queries[:20]:
        fn(q)  # warm caches
    times = []
    for q in queries:
        started = time.perf_counter()
        fn(q)
        times.append((time.perf_counter() - started) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def main(argv: list[str] | None = None) -> int:
    parser = squad_parser(__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=300)
    args, data = parse_and_load(parser, argv)
    if data is None:
        return 1
    corpus, all_queries = data
    questions = [all_queries[i].text for i in sample_indices(len(all_queries), args.queries, 1)]
    embedder = SentenceTransformerEmbedder()
    vectors = cached_vectors(
        embedder, [f"{d.title.replace('_', ' ').strip()}\n{d.text}" for d in corpus], "squad-ours"
    )
    embedder.encode(["warm up"])

    rows = []
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="apprenti-bench-latency-") as tmp:
            started = time.perf_counter()
            index = build(size, corpus, vectors, embedder, Path(tmp))
            print(f"{size} chunks indexed in {time.perf_counter() - started:.0f} s", flush=True)
            retriever = Retriever(index, k=5)
            ours = timed(retriever.search, questions)
            plain = timed(partial(langchain_store(index).similarity_search, k=5), questions)
            rows.append((size, ours, plain))
            print(
                f"{size}: ours p50 {ours[0]:.1f} ms p99 {ours[1]:.1f} ms; LangChain dense p50 "
                f"{plain[0]:.1f} ms p99 {plain[1]:.1f} ms",
                flush=True,
            )

    target = next((r for r in rows if r[0] == 10_000), None)
    ok = target is not None and target[1][0] <= 20 and target[1][1] <= 50
    lines = [
        "## Query latency",
        "",
        f"End-to-end search time per question ({args.queries} SQuAD questions, one at a time, after 20 "
        f"warm-up queries): question embedding (MiniLM, `{embedder.runs_on}` backend) + Chroma HNSW top-50, "
        "on a worker thread, while BM25 top-50 runs and the lexical candidates' vectors and texts are "
        "fetched; then exact scores for the union, fusion and any text still missing for the 5 results. The "
        "index holds the 2,067 real SQuAD passages plus synthetic chunks (real passages with shuffled "
        "sentences and noise-perturbed vectors, so that 100,000 chunks need no embedding run). Baseline in "
        "the same run: LangChain's `Chroma.similarity_search(q, k=5)` with `HuggingFaceEmbeddings` (the "
        "same MiniLM on PyTorch) over the same collection. Measured by `python -m bench.retrieval_latency`.",
        "",
        "| chunks | ours hybrid p50 | ours hybrid p99 | LangChain dense p50 | LangChain dense p99 |",
        "|---|---|---|---|---|",
    ]
    for size, ours, plain in rows:
        lines.append(
            f"| {size:,} | {ours[0]:.1f} ms | {ours[1]:.1f} ms | {plain[0]:.1f} ms | {plain[1]:.1f} ms |"
        )
    lines += [
        "",
        f"Target at 10,000 chunks p50 ≤ 20 ms and p99 ≤ 50 ms: **{'met' if ok else 'missed'}**. "
        + machine_line(),
    ]
    section = "\n".join(lines)
    publish("retrieval-latency", section, write=not args.no_docs and target is not None)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
