from pathlib import Path

import pytest

from rag.index import DocumentIndex, open_client
from rag.retriever import Retriever
from tests.rag.conftest import write_docs


@pytest.fixture(scope="module")
def team_index(tmp_path_factory, embedder):
    """Built once for the module: the searches below only read it."""
    root = tmp_path_factory.mktemp("team")
    docs_dir = write_docs(root / "docs")
    index = DocumentIndex(open_client(path=root / "chroma"), root / "chroma", embedder)
    index.ingest([docs_dir], collection="team")
    index.ingest([docs_dir / "onboarding"], collection="onboarding")
    return index


@pytest.mark.parametrize("mode", ["hybrid", "dense", "bm25"])
@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Combien de jours de télétravail par semaine ?", "Télétravail"),
        ("Combien de jours de congés payés ai-je par an ?", "Congés payés"),
        ("When do production releases happen?", "Production"),
        ("How do I deploy to staging?", "Staging"),
    ],
)
def test_each_mode_finds_the_right_section_in_english_and_french(team_index, mode, question, expected):
    hits = Retriever(team_index, mode=mode, k=3).search(question, collections=["team"])
    assert hits[0].heading == expected
    assert hits[0].score >= hits[-1].score


def test_results_carry_citation_data(team_index):
    [hit] = Retriever(team_index, k=1).search("meal reimbursement per day")
    assert Path(hit.source).name == "expenses.html"
    assert hit.title == "Expense policy"
    assert hit.collection == "team"
    assert "25 euros" in hit.snippet
    data = hit.to_dict()
    assert {"text", "score", "title", "source", "heading", "page", "snippet", "collection"} <= set(data)


def test_collection_filter_limits_results(team_index):
    question = "When do I get my laptop?"
    only = Retriever(team_index, k=10).search(question, collections=["onboarding"])
    assert only and {h.collection for h in only} == {"onboarding"}
    team = Retriever(team_index, k=10).search(question, collections=["team"])
    assert team and {h.collection for h in team} == {"team"}
    both = Retriever(team_index, k=20).search(question, collections=["team", "onboarding"])
    assert {h.collection for h in both} == {"team", "onboarding"}
    assert Retriever(team_index).search(question, collections=["nobody"]) == []


def test_hybrid_weight_moves_between_bm25_and_dense(team_index):
    question, team = "badge reception", ["team"]

    def top(**options):
        return [h.id for h in Retriever(team_index, k=5, **options).search(question, collections=team)]

    assert top(bm25_weight=0.0) == top(mode="dense")
    assert top(bm25_weight=1.0)[:1] == top(mode="bm25")[:1]


def test_mmr_prefers_different_passages(index, tmp_path):
    docs = tmp_path / "dup"
    docs.mkdir()
    same = "The cafeteria serves lunch from noon to two pm every weekday."
    (docs / "a.txt").write_text(f"Cafeteria\n{same}")
    (docs / "b.txt").write_text(f"Canteen\n{same}")
    (docs / "c.txt").write_text("Gym\nThe gym near the cafeteria opens at seven am and closes at nine pm.")
    index.ingest([docs])
    plain = Retriever(index, k=2).search("cafeteria lunch hours")
    diverse = Retriever(index, k=2, mmr=True, mmr_lambda=0.5).search("cafeteria lunch hours")
    assert {Path(h.source).name for h in plain} == {"a.txt", "b.txt"}
    assert "c.txt" in {Path(h.source).name for h in diverse}


def test_empty_index_and_empty_query_return_nothing(index):
    assert Retriever(index).search("anything") == []
    assert Retriever(index).search("   ") == []


def test_bad_options_are_refused(index):
    with pytest.raises(ValueError, match="unknown retrieval mode 'fuzzy'"):
        Retriever(index, mode="fuzzy")
    with pytest.raises(ValueError, match="bm25_weight"):
        Retriever(index, bm25_weight=2)
