import os
import subprocess
import sys
from pathlib import Path

import pytest

from rag.index import DocumentIndex, IndexUnavailable, open_client, validate_collection
from rag.retriever import Retriever
from tests.rag.conftest import DOCS, make_pdf

REPO = Path(__file__).resolve().parents[2]


def _names(paths):
    return sorted(Path(p).name for p in paths)


def test_ingest_indexes_supported_files_and_reports_bad_ones(index, docs_dir):
    (docs_dir / "blob.txt").write_bytes(b"\x00\x00binary")
    (docs_dir / "latin.txt").write_bytes("déjà".encode("latin-1"))
    (docs_dir / "empty.md").write_bytes(b"")
    (docs_dir / "scan.pdf").write_bytes(b"%PDF-1.4 garbage")
    (docs_dir / "logo.png").write_bytes(b"\x89PNG")
    events = []
    report = index.ingest([docs_dir], collection="team", progress=events.append)

    assert _names(report.added) == ["conges.md", "deploy.md", "expenses.html", "first-week.md", "vpn.txt"]
    reasons = {Path(s.path).name: s.reason for s in report.skipped}
    assert set(reasons) == {"blob.txt", "latin.txt", "empty.md", "scan.pdf", "logo.png"}
    assert reasons["latin.txt"].startswith("not valid UTF-8")
    assert reasons["scan.pdf"].startswith("corrupt PDF")
    # nothing of a refused file reaches either side of the index
    sources = {Path(r.source).name for r in index.sources()}
    assert sources == {"conges.md", "deploy.md", "expenses.html", "first-week.md", "vpn.txt"}
    assert index.count() == index.chroma.count() == report.chunks == sum(r.chunks for r in index.sources())
    assert events[-1].done == events[-1].total == 9
    assert {e.stage for e in events} == {"indexed", "skipped"}


def test_reingest_skips_unchanged_replaces_changed_and_prunes_vanished(index, docs_dir, embedder):
    index.ingest([docs_dir], collection="team")
    first = {r.source: r for r in index.sources("team")}

    again = index.ingest([docs_dir], collection="team")
    assert again.added == again.updated == [] and len(again.unchanged) == 5 and again.chunks == 0

    vpn = docs_dir / "vpn.txt"
    vpn.write_text("VPN access\nThe VPN now uses single sign-on; hardware tokens are retired.\n")
    (docs_dir / "deploy.md").unlink()
    report = index.ingest([docs_dir], collection="team", prune=True)
    assert _names(report.updated) == ["vpn.txt"]
    assert _names(report.removed) == ["deploy.md"]
    assert len(report.unchanged) == 3

    retriever = Retriever(index, k=3)
    texts = " ".join(r.text for r in retriever.search("hardware token VPN password rotation"))
    assert "single sign-on" in texts and "rotates every 90 days" not in texts
    assert not any("deploy.md" in r.source for r in retriever.search("production releases Tuesdays", k=5))
    assert index.count() == index.chroma.count()
    assert (
        first[str(vpn.resolve())].file_hash
        != {r.source: r for r in index.sources()}[str(vpn.resolve())].file_hash
    )


def test_prune_without_changes_and_delete(index, docs_dir):
    index.ingest([docs_dir], collection="team")
    index.ingest([docs_dir / "vpn.txt"], collection="it")
    assert index.collections() == ["it", "team"]
    assert index.ingest([docs_dir], collection="team", prune=True).removed == []
    removed = index.delete("team", [str((docs_dir / "conges.md").resolve())])
    assert removed == 2
    assert "conges.md" not in {Path(r.source).name for r in index.sources("team")}
    index.delete("it")
    assert index.count(["it"]) == 0 and index.chroma.count() == index.count()


def test_a_new_process_reopens_the_index_and_queries_it_by_text(tmp_path, docs_dir, embedder):
    store = tmp_path / "chroma"
    DocumentIndex(open_client(path=store), store, embedder).ingest([docs_dir], collection="team")
    script = (
        "import chromadb, rag.embeddings\n"
        f"c = chromadb.PersistentClient(path={str(store)!r})\n"
        "col = c.get_collection('apprenti_chunks')\n"
        "got = col.query(query_texts=['When do production releases happen?'], n_results=1)\n"
        "print(got['metadatas'][0][0]['heading'])\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", ANONYMIZED_TELEMETRY="False")
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=REPO, timeout=180
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "Production"


def test_lexical_side_is_rebuilt_from_chroma_when_lost(tmp_path, docs_dir, embedder):
    store, state = tmp_path / "chroma", tmp_path / "state"
    DocumentIndex(open_client(path=store), state, embedder).ingest([docs_dir], collection="team")
    fresh_state = tmp_path / "other-machine"
    reopened = DocumentIndex(open_client(path=store), fresh_state, embedder)
    assert reopened.count() == reopened.chroma.count() > 0
    assert {r.chunks for r in reopened.sources()} == {
        r.chunks for r in DocumentIndex(open_client(path=store), state, embedder).sources()
    }
    hits = Retriever(reopened, mode="bm25").search("VPN password")
    assert Path(hits[0].source).name == "vpn.txt"


def test_pdf_chunks_cite_their_page(index, tmp_path):
    pdf = tmp_path / "pdfs" / "handbook.pdf"
    pdf.parent.mkdir()
    pdf.write_bytes(make_pdf(["Security badges are blue.", "Parking is free on Fridays."]))
    index.ingest([pdf.parent])
    [hit] = Retriever(index, k=1).search("where to park on friday")
    assert (hit.page, hit.citation) == (2, "handbook — page 2")


def test_bad_inputs_have_clear_errors(index, tmp_path):
    with pytest.raises(ValueError, match="bad collection name"):
        validate_collection("../etc")
    with pytest.raises(FileNotFoundError, match="missing: no such file"):
        index.ingest([tmp_path / "missing"])
    with pytest.raises(IndexUnavailable, match="bad Chroma URL"):
        open_client(url="ftp://")
    assert sorted(DOCS)  # the corpus fixture is not empty


def test_saved_bm25_matrix_is_reused_by_another_index_object(tmp_path, docs_dir, embedder):
    store = tmp_path / "chroma"
    first = DocumentIndex(open_client(path=store), store, embedder)
    first.ingest([docs_dir], collection="team")
    expected = first.lexical.search("VPN password hardware token", 3)
    second = DocumentIndex(open_client(path=store), store, embedder)
    assert second.lexical._load_saved(second.lexical.version())  # no rebuild needed
    assert second.lexical.search("VPN password hardware token", 3) == expected
    assert second.lexical.score_ids("VPN password", [expected[0][0]])[expected[0][0]] > 0


def test_opening_an_index_with_another_model_is_refused(tmp_path, embedder):
    from rag.embeddings import SentenceTransformerEmbedder
    from rag.index import IndexMismatch

    store = tmp_path / "chroma"
    DocumentIndex(open_client(path=store), store, embedder)
    with pytest.raises(
        IndexMismatch, match="built with the embedding model 'all-MiniLM-L6-v2', not 'other-model'"
    ):
        DocumentIndex(
            open_client(path=store), store, SentenceTransformerEmbedder(str(tmp_path / "other-model"))
        )


def test_rich_progress_bar_follows_ingest(index, docs_dir):
    import io

    from rich.console import Console

    from rag.progress import ingest_progress_bar

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    with ingest_progress_bar(console=console) as progress:
        report = index.ingest([docs_dir], collection="team", progress=progress)
    assert len(report.added) == 5
    assert "Indexing" in out.getvalue() and "5/5" in out.getvalue()
