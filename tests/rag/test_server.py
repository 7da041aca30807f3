"""Chroma server mode for real: a `chroma run` subprocess on a loopback port."""

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rag.index import DocumentIndex, IndexUnavailable, open_client
from rag.retriever import Retriever


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chroma_cli() -> str | None:
    beside = Path(sys.executable).with_name("chroma")
    return str(beside) if beside.exists() else shutil.which("chroma")


@pytest.fixture
def chroma_server(tmp_path):
    cli = _chroma_cli()
    if cli is None:
        pytest.skip("the chroma CLI is not installed next to this Python, so no server can be started")
    port = _free_port()
    log = (tmp_path / "chroma.log").open("w")
    proc = subprocess.Popen(
        [cli, "run", "--path", str(tmp_path / "server-data"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            open_client(url=url)
            break
        except IndexUnavailable:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.skip(
                    f"chroma run did not start on {url}: {(tmp_path / 'chroma.log').read_text()[-500:]}"
                )
            time.sleep(0.2)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def test_ingest_and_search_through_a_chroma_server(chroma_server, tmp_path, docs_dir, embedder):
    index = DocumentIndex(open_client(url=chroma_server), tmp_path / "state", embedder)
    report = index.ingest([docs_dir], collection="team")
    assert len(report.added) == 5
    hit = Retriever(index, k=1).search("When do production releases happen?")[0]
    assert (Path(hit.source).name, hit.heading) == ("deploy.md", "Production")
    # another machine with no local BM25 state rebuilds it from the server
    other = DocumentIndex(open_client(url=chroma_server), tmp_path / "other-state", embedder)
    assert other.count() == index.count() > 0
    assert Path(Retriever(other, mode="bm25", k=1).search("VPN password")[0].source).name == "vpn.txt"
    # a file ingested from the first machine reaches the second one's BM25 side on its next check
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "parking.md").write_text("# Parking\n\nThe car park closes at midnight.\n")
    index.ingest([extra], collection="team")
    hits = Retriever(other, mode="bm25", k=1, sync_every=0).search("car park midnight")
    assert Path(hits[0].source).name == "parking.md"


def test_a_server_that_is_down_is_a_clear_error():
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(IndexUnavailable, match=f"the Chroma server at {url} is not reachable"):
        open_client(url=url)


@pytest.fixture
def silent_server():
    """A server that accepts connections and never answers (a hung Chroma)."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


def test_a_server_that_never_answers_is_an_error_not_a_hang(silent_server):
    started = time.monotonic()
    with pytest.raises(IndexUnavailable, match="is not reachable"):
        open_client(url=silent_server, timeout=0.5)
    assert time.monotonic() - started < 5


def test_commands_start_without_contacting_the_chroma_server(silent_server):
    from bot.runtime import Runtime
    from bot.settings import Settings

    started = time.monotonic()
    runtime = Runtime(
        Settings(chroma_url=silent_server, plugins=["rag", "fewshot"], pii="off"), entrypoints=False
    )
    runtime.plugins  # noqa: B018 - starts the plugins
    assert time.monotonic() - started < 3
