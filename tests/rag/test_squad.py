"""Checks on the SQuAD benchmark data in tests/data/squad."""

import numpy as np

from rag.bm25 import LexicalIndex
from rag.metrics import evaluate, load_corpus, load_queries, sample_indices
from tests.rag.conftest import SQUAD


def test_squad_loads_and_the_fixed_sample_is_reproducible():
    corpus = load_corpus(SQUAD / "corpus.jsonl")
    queries = load_queries(SQUAD / "queries.jsonl", corpus)
    assert (len(corpus), len(queries)) == (2067, 10570)
    sample = sample_indices(len(queries), 2000, seed=0)
    assert len(set(sample)) == 2000
    assert sample[:5] == np.random.default_rng(0).choice(10570, 2000, replace=False)[:5].tolist()


def test_bm25_side_beats_the_plain_reference_on_a_slice():
    """Our analysed BM25 alone (no embeddings needed), on 300 questions of the sample."""
    corpus = load_corpus(SQUAD / "corpus.jsonl")
    queries = load_queries(SQUAD / "queries.jsonl")
    chosen = [queries[i] for i in sample_indices(len(queries), 2000, seed=0)[:300]]
    lexical = LexicalIndex(None)
    lexical.write(add=[(d.id, "squad", d.id, d.passage) for d in corpus])
    result = evaluate(lambda text, k: [cid for cid, _ in lexical.search(text, k)], chosen)
    # the reference (rank-bm25, \\w+ tokens) reaches recall@5 0.908 on the full sample
    assert result["recall@5"] >= 0.9
    assert result["recall@1"] >= 0.72
