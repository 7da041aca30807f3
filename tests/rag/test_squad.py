"""Checks on the shared SQuAD benchmark data (skipped when ../shared/data is absent)."""

import numpy as np
import pytest

from rag.evaluation import build_corpus_index, search_documents
from rag.metrics import evaluate, load_corpus, load_queries, sample_indices
from rag.retriever import Retriever
from tests.rag.conftest import SHARED_DATA

SQUAD = SHARED_DATA / "squad"
pytestmark = pytest.mark.skipif(
    not (SQUAD / "corpus.jsonl").exists(), reason=f"SQuAD benchmark data not found in {SQUAD}"
)


def test_squad_loads_and_the_fixed_sample_is_reproducible():
    corpus = load_corpus(SQUAD / "corpus.jsonl")
    queries = load_queries(SQUAD / "queries.jsonl", corpus)
    assert (len(corpus), len(queries)) == (2067, 10570)
    sample = sample_indices(len(queries), 2000, seed=0)
    assert len(set(sample)) == 2000
    assert sample[:5] == np.random.default_rng(0).choice(10570, 2000, replace=False)[:5].tolist()


def test_bm25_side_beats_the_plain_reference_on_a_slice():
    """Our analysed BM25 alone, on 300 questions of the sample (dense vectors are not needed here)."""
    corpus = load_corpus(SQUAD / "corpus.jsonl")
    queries = load_queries(SQUAD / "queries.jsonl")
    chosen = [queries[i] for i in sample_indices(len(queries), 2000, seed=0)[:300]]
    vectors = np.random.default_rng(0).standard_normal((len(corpus), 384)).astype(np.float32)
    index = build_corpus_index(corpus, vectors=vectors)
    result = evaluate(search_documents(Retriever(index, mode="bm25")), chosen)
    # the reference (rank-bm25, \w+ tokens) reaches recall@5 0.908 on the full sample
    assert result["recall@5"] >= 0.9
    assert result["recall@1"] >= 0.72
