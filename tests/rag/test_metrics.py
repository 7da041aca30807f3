import json

import numpy as np
import pytest

from rag.evaluation import build_corpus_index, evaluate_files, search_documents
from rag.metrics import BadEvalInput, evaluate, load_corpus, load_queries, sample_indices, score_rankings
from rag.retriever import Retriever

CORPUS = [
    {"_id": "d1", "title": "Paris", "text": "Paris is the capital of France and sits on the Seine."},
    {"_id": "d2", "title": "Berlin", "text": "Berlin is the capital of Germany; the Spree flows through it."},
    {"_id": "d3", "title": "Télétravail", "text": "Les employés télétravaillent deux jours par semaine."},
    {"_id": "d4", "title": "Python", "text": "Python is a programming language created by Guido van Rossum."},
]
QUERIES = [
    {"_id": "q1", "text": "On which river does Paris sit?", "gold_doc_id": "d1"},
    {"_id": "q2", "text": "What river flows through Berlin?", "gold_doc_id": "d2"},
    {"_id": "q3", "text": "Combien de jours de télétravail ?", "gold_doc_id": "d3"},
    {"_id": "q4", "text": "Who created the Python language?", "gold_doc_id": "d4"},
]


def _write(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_score_rankings_by_hand():
    rankings = [["d1", "d2"], ["d3", "d2", "d9"], ["d4"], []]
    golds = ["d1", "d2", "d1", "d7"]
    got = score_rankings(rankings, golds, ks=(1, 2))
    assert got["recall@1"] == pytest.approx(1 / 4)
    assert got["recall@2"] == pytest.approx(2 / 4)
    assert got["mrr"] == pytest.approx((1 + 1 / 2) / 4)
    assert got["queries"] == 4


def test_sample_is_numpy_default_rng_choice():
    assert (
        sample_indices(10570, 5, seed=0) == np.random.default_rng(0).choice(10570, 5, replace=False).tolist()
    )
    assert sample_indices(3, None) == [0, 1, 2]
    with pytest.raises(BadEvalInput, match="between 1 and the number of queries"):
        sample_indices(3, 4)


def test_evaluate_on_a_tiny_beir_set(tmp_path, embedder):
    corpus = load_corpus(_write(tmp_path / "corpus.jsonl", CORPUS))
    queries = load_queries(_write(tmp_path / "queries.jsonl", QUERIES), corpus)
    index = build_corpus_index(corpus, embedder)
    assert index.count() == 4
    result = evaluate(search_documents(Retriever(index)), queries)
    assert result["recall@1"] == 1.0 and result["mrr"] == 1.0 and result["queries"] == 4
    # a retriever that always answers the same document gets exactly one query right
    constant = evaluate(lambda text, k: ["d4", "d1"], queries)
    assert constant["recall@1"] == 0.25 and constant["recall@5"] == 0.5
    assert constant["mrr"] == pytest.approx((1 / 2 + 1) / 4)


def test_evaluate_files_with_sampling(tmp_path, embedder):
    corpus = _write(tmp_path / "corpus.jsonl", CORPUS)
    queries = _write(tmp_path / "queries.jsonl", QUERIES)
    result = evaluate_files(corpus, queries, sample=2, seed=1, mode="bm25")
    assert result["queries"] == 2 and result["sample"] == 2 and result["corpus"] == 4
    assert {"recall@1", "recall@5", "recall@10", "mrr"} <= set(result)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ('{"_id": "d1", "text": "ok"}\n{broken\n', r"corpus.jsonl:2: not valid JSON"),
        ('{"_id": "d1"}\n', r"corpus.jsonl:1: missing text"),
        ("", r"corpus.jsonl: empty file"),
        ('{"_id": "d1", "text": "a"}\n{"_id": "d1", "text": "b"}\n', "duplicate _id"),
    ],
)
def test_bad_corpus_names_file_and_line(tmp_path, lines, message):
    path = tmp_path / "corpus.jsonl"
    path.write_text(lines)
    with pytest.raises(BadEvalInput, match=message):
        load_corpus(path)


def test_query_with_unknown_gold_is_refused(tmp_path):
    corpus = load_corpus(_write(tmp_path / "corpus.jsonl", CORPUS))
    bad = _write(tmp_path / "queries.jsonl", [{"_id": "q", "text": "x", "gold_doc_id": "nope"}])
    with pytest.raises(BadEvalInput, match=r"queries.jsonl:1: gold_doc_id 'nope' is not in the corpus"):
        load_queries(bad, corpus)
    with pytest.raises(BadEvalInput, match="no such file"):
        load_queries(tmp_path / "absent.jsonl")
