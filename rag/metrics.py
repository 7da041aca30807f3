"""Retrieval evaluation on BEIR-like JSONL: recall@k and MRR.

Corpus lines are ``{"_id", "title", "text"}``; query lines are ``{"_id", "text", "gold_doc_id"}``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

KS = (1, 5, 10)


class BadEvalInput(ValueError):
    """The corpus or queries file is missing or malformed; the message names the file and line."""


@dataclass(frozen=True)
class CorpusDoc:
    id: str
    title: str
    text: str

    @property
    def passage(self) -> str:
        """Title (underscores as spaces) and text, as the SQuAD reference figures index it."""
        title = self.title.replace("_", " ").strip()
        return f"{title}\n{self.text}" if title else self.text


@dataclass(frozen=True)
class Query:
    id: str
    text: str
    gold: str


def _read_jsonl(path: str | Path, required: Sequence[str]) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise BadEvalInput(f"{path}: no such file")
    rows = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BadEvalInput(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise BadEvalInput(f"{path}:{number}: expected a JSON object")
            missing = [key for key in required if key not in row]
            if missing:
                raise BadEvalInput(f"{path}:{number}: missing {', '.join(missing)}")
            rows.append(row)
    if not rows:
        raise BadEvalInput(f"{path}: empty file")
    return rows


def load_corpus(path: str | Path) -> list[CorpusDoc]:
    rows = _read_jsonl(path, ("_id", "text"))
    docs = [CorpusDoc(str(r["_id"]), str(r.get("title") or ""), str(r["text"])) for r in rows]
    if len({d.id for d in docs}) != len(docs):
        raise BadEvalInput(f"{path}: duplicate _id values")
    return docs


def load_queries(path: str | Path, corpus: Sequence[CorpusDoc] | None = None) -> list[Query]:
    rows = _read_jsonl(path, ("_id", "text", "gold_doc_id"))
    queries = [Query(str(r["_id"]), str(r["text"]), str(r["gold_doc_id"])) for r in rows]
    if corpus is not None:
        ids = {d.id for d in corpus}
        for number, q in enumerate(queries, start=1):
            if q.gold not in ids:
                raise BadEvalInput(f"{path}:{number}: gold_doc_id {q.gold!r} is not in the corpus")
    return queries


def sample_indices(total: int, n: int | None, seed: int = 0) -> list[int]:
    """``numpy.random.default_rng(seed).choice(total, n, replace=False)``, or all when n is None."""
    if n is None:
        return list(range(total))
    if n < 1 or n > total:
        raise BadEvalInput(f"--sample must be between 1 and the number of queries ({total}), got {n}")
    return np.random.default_rng(seed).choice(total, n, replace=False).tolist()


def score_rankings(rankings: Sequence[Sequence[str]], golds: Sequence[str], ks: Sequence[int] = KS) -> dict:
    """recall@k (gold document among the first k) and MRR (cut at the longest list) per query set."""
    if not golds:
        raise ValueError("no queries to score")
    ranks = []
    for ranking, gold in zip(rankings, golds, strict=True):
        ranks.append(list(ranking).index(gold) + 1 if gold in ranking else 0)
    out = {f"recall@{k}": sum(1 for r in ranks if 0 < r <= k) / len(ranks) for k in ks}
    out["mrr"] = sum(1.0 / r for r in ranks if r > 0) / len(ranks)
    out["queries"] = len(ranks)
    return out


def evaluate(
    search: Callable[[str, int], list[str]],
    queries: Sequence[Query],
    ks: Sequence[int] = KS,
) -> dict:
    """Run ``search(text, k) -> document ids`` for every query and score it; adds latency figures."""
    depth = max(ks)
    rankings, timings = [], []
    for q in queries:
        started = time.perf_counter()
        rankings.append(search(q.text, depth))
        timings.append(time.perf_counter() - started)
    result = score_rankings(rankings, [q.gold for q in queries], ks)
    result["latency_ms_p50"] = float(np.percentile(timings, 50) * 1000)
    result["latency_ms_p99"] = float(np.percentile(timings, 99) * 1000)
    return result
