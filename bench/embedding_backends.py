"""The embedding backends side by side: one question's latency, passages/s, and agreement with PyTorch.

Same all-MiniLM-L6-v2 (128 word pieces), same texts: 300 SQuAD questions one at a time (one thread,
as the retriever does; median and p99 after 20 warm-up questions) and 512 SQuAD passages in
length-sorted batches of 64 (the machine's threads). Baseline in the same run: sentence-transformers
on PyTorch (`backend="torch"`). Agreement: cosine between each backend's passage vectors and
PyTorch's.

    .venv/bin/python -m bench.embedding_backends [--no-docs]

Exit code 1 when an ONNX backend is not faster than PyTorch on both figures.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

from bench._docs import machine_line, publish
from bench._squad import parse_and_load, squad_parser

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rag.embeddings import SentenceTransformerEmbedder  # noqa: E402
from rag.metrics import sample_indices  # noqa: E402

BACKENDS = ("torch", "onnx", "onnx-int8")


def question_latency(embedder: SentenceTransformerEmbedder, questions: list[str]) -> tuple[float, float]:
    for q in questions[:20]:
        embedder.encode([q], kind="query")
    times = []
    for q in questions:
        started = time.perf_counter()
        embedder.encode([q], kind="query")
        times.append((time.perf_counter() - started) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def throughput(embedder: SentenceTransformerEmbedder, passages: list[str]) -> tuple[float, np.ndarray]:
    embedder.encode(passages[:64])
    started = time.perf_counter()
    vectors = embedder.encode(passages)
    return len(passages) / (time.perf_counter() - started), vectors


def main(argv: list[str] | None = None) -> int:
    args, data = parse_and_load(squad_parser(__doc__), argv)
    if data is None:
        return 1
    corpus, queries = data
    questions = [queries[i].text for i in sample_indices(len(queries), 300, 2)]
    passages = [f"{d.title.replace('_', ' ')}\n{d.text}" for d in corpus[:512]]

    rows = {}
    reference = None
    for backend in BACKENDS:
        embedder = SentenceTransformerEmbedder(backend=backend)
        embedder.encode(["load the model (and export it on first use) before timing"])
        p50, p99 = question_latency(embedder, questions)
        rate, vectors = throughput(embedder, passages)
        if reference is None:
            reference = vectors
        cosines = (vectors * reference).sum(axis=1)
        rows[backend] = (embedder.runs_on, p50, p99, rate, float(cosines.mean()), float(cosines.min()))
        print(
            f"{backend}: question p50 {p50:.1f} ms p99 {p99:.1f} ms, {rate:.1f} passages/s, "
            f"cosine to torch mean {cosines.mean():.4f} min {cosines.min():.4f}",
            flush=True,
        )

    base = rows["torch"]
    ok = all(rows[b][0] == b and rows[b][1] < base[1] and rows[b][3] > base[3] for b in ("onnx", "onnx-int8"))
    lines = [
        "## Embedding backends",
        "",
        "all-MiniLM-L6-v2 reading 128 word pieces. Questions: 300 SQuAD questions one at a time on one "
        "thread (as the retriever embeds them), after 20 warm-up questions. Passages: 512 SQuAD passages in "
        f"length-sorted batches of 64 on {os.cpu_count()} threads. Agreement: cosine between each backend's "
        "passage vectors and PyTorch's. Measured by `python -m bench.embedding_backends` in one run.",
        "",
        "| backend | runs on | question p50 | question p99 | passages/s | cosine to PyTorch (mean / min) |",
        "|---|---|---|---|---|---|",
    ]
    labels = {
        "torch": "`torch`: sentence-transformers on PyTorch (baseline)",
        "onnx": "`onnx`: float32",
        "onnx-int8": "`onnx-int8` (default)",
    }
    for backend, (runs_on, p50, p99, rate, mean, least) in rows.items():
        lines.append(
            f"| {labels[backend]} | {runs_on} | {p50:.1f} ms | {p99:.1f} ms | {rate:.1f} | "
            f"{mean:.4f} / {least:.4f} |"
        )
    int8 = rows["onnx-int8"]
    lines += [
        "",
        f"`onnx-int8` vs PyTorch: questions **{base[1] / int8[1]:.1f}×** faster (p50), passages "
        f"**{int8[3] / base[3]:.2f}×** faster. The ONNX graphs are exported with eager attention and fused "
        "by ONNX Runtime's BERT optimiser; int8 weights are quantised per channel. " + machine_line(),
    ]
    section = "\n".join(lines)
    publish("embedding-backends", section, write=not args.no_docs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
