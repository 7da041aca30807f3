"""Deleted records leave no text on disk: Chroma's log and the BM25 store's write-ahead log."""

from __future__ import annotations

from pathlib import Path

from rag.bm25 import LexicalIndex
from rag.index import open_client, purge_deleted

MARKER = "zorbaquintex"  # one token, as the BM25 tokenizer keeps it


def bytes_with(folder: Path, needle: str) -> dict[str, int]:
    return {
        str(p.relative_to(folder)): n
        for p in folder.rglob("*")
        if p.is_file()
        if (n := p.read_bytes().lower().count(needle.encode()))
    }


def test_a_deleted_record_leaves_no_text_in_the_chroma_store(tmp_path):
    store = tmp_path / "chroma"
    client = open_client(path=store)
    pairs = client.get_or_create_collection("pairs", embedding_function=None)
    pairs.add(
        ids=["gone", "kept"],
        documents=[f"how is {MARKER} reset?", "where is the printer?"],
        embeddings=[[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]],
        metadatas=[{"answer": f"press {MARKER}"}, {"answer": "2F"}],
    )
    pairs.delete(ids=["gone"])
    assert bytes_with(store, MARKER), "Chroma keeps the deleted record in its log"

    assert purge_deleted(store) == {"redacted": 1}
    assert bytes_with(store, MARKER) == {}
    assert purge_deleted(store) == {"redacted": 0}  # nothing left to redact
    # The open client and a fresh one (which replays the log) see the same collection, still writable.
    assert pairs.get()["ids"] == ["kept"]
    found = pairs.query(query_embeddings=[[0.3, 0.2, 0.1]], n_results=1)
    assert found["ids"] == [["kept"]]
    pairs.add(ids=["new"], documents=["new text"], embeddings=[[0.5, 0.5, 0.5]])
    assert sorted(open_client(path=store).get_collection("pairs").get()["ids"]) == ["kept", "new"]
    assert purge_deleted(tmp_path / "nothing-here") == {"redacted": 0}


def test_removed_chunks_leave_the_bm25_store(tmp_path):
    path = tmp_path / "chunks.lexical.sqlite3"
    index = LexicalIndex(path)
    index.write(
        add=[
            ("c1", "_team", "team-answer:7", f"the {MARKER} console"),
            ("c2", "docs", "a.md", "the printer console"),
        ]
    )
    index.refresh()
    assert index.search(MARKER)
    assert index.remove_sources(["team-answer:7"]) == 1
    assert index.search(MARKER) == [] and index.count() == 1
    assert bytes_with(tmp_path, MARKER), "the write-ahead log still holds the page as it was"
    assert index.compact()["busy"] == 0
    assert bytes_with(tmp_path, MARKER) == {}
