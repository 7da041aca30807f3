"""RAG inside the application: the built-in plugin, the assistant in rag/auto mode, and the CLI commands."""

from __future__ import annotations

import json

import pytest

from bot.assistant import Assistant
from bot.llm import LLM, Completion, Stream
from plugins.builtin import rag as rag_plugin
from plugins.manager import make_manager
from plugins.profile import Profile
from storage.db import open_database
from tests.cli import run_main as run_cli
from tests.rag.test_metrics import CORPUS, QUERIES


def run_main(args, capsys) -> tuple[int, str, str]:
    code, out, err = run_cli(args, capsys)
    return code, out, " ".join(err.split())  # rich wraps long messages


class Echo(LLM):
    """A model that says "[1]" and remembers what it was sent."""

    def __init__(self):
        self.seen: list[list[dict]] = []

    def generate(self, messages, track="default"):
        self.seen.append(messages)
        return Completion(text="See [1].", adapter=None, prompt_tokens=10, messages=messages)

    def stream(self, messages, track="default"):
        whole = self.generate(messages, track)
        return Stream(
            lambda: iter([whole.text]), lambda written, failure: Completion(text=written, messages=messages)
        )


@pytest.fixture
def ingested(capsys, docs_dir, isolated_env, embedder):
    code, out, err = run_main(["ingest", str(docs_dir), "--collection", "team", "--json"], capsys)
    assert code == 0, err
    return json.loads(out)


@pytest.fixture
def pm(isolated_env, ingested):
    manager = make_manager(["rag"], entrypoints=False)
    manager.hook.startup(
        config={
            "home": str(isolated_env),
            "chroma_path": str(isolated_env / "chroma"),
            "chroma_url": None,
            "embedding_model": "all-MiniLM-L6-v2",
            "rag_k": 5,
        },
        database=None,
        documents=None,
    )
    return manager


def test_cli_ingest_is_incremental_and_lists_sources(capsys, docs_dir, ingested):
    assert len(ingested["added"]) == 5 and ingested["chunks"] > 5
    code, out, _ = run_main(["ingest", str(docs_dir), "--collection", "team", "--json"], capsys)
    assert code == 0 and len(json.loads(out)["unchanged"]) == 5
    code, out, _ = run_main(["ingest", "--list", "--json"], capsys)
    listed = json.loads(out)["sources"]
    assert {row["collection"] for row in listed} == {"team"} and all(row["chunks"] >= 1 for row in listed)
    assert {"source", "chunks", "indexed_at"} <= set(listed[0])


def test_cli_ingest_bad_input_exits_2_and_names_it(capsys, tmp_path):
    code, _, err = run_main(["ingest", str(tmp_path / "absent")], capsys)
    assert code == 2 and "absent: no such file or folder" in err
    code, _, err = run_main(["ingest", str(tmp_path), "--collection", "a b"], capsys)
    assert code == 2 and "bad collection name" in err
    code, _, err = run_main(["ingest"], capsys)
    assert code == 2 and "name at least one file or folder" in err


def test_cli_ingest_of_only_bad_files_fails(capsys, tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.txt").write_bytes(b"\x00\x01")
    code, out, err = run_main(["ingest", str(tmp_path / "bad")], capsys)
    assert code == 1 and "binary file" in err


def test_cli_eval_retrieval_json(capsys, tmp_path, embedder):
    corpus, queries = tmp_path / "corpus.jsonl", tmp_path / "queries.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in CORPUS))
    queries.write_text("".join(json.dumps(r) + "\n" for r in QUERIES))
    code, out, err = run_main(
        [
            "eval",
            "retrieval",
            "--corpus",
            str(corpus),
            "--queries",
            str(queries),
            "--sample",
            "3",
            "--seed",
            "0",
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    result = json.loads(out)
    assert {"recall@1", "recall@5", "recall@10", "mrr"} <= set(result) and result["queries"] == 3
    assert result["recall@5"] == 1.0
    queries.write_text('{"_id": "q", "text": "x"}\n')
    code, _, err = run_main(
        ["eval", "retrieval", "--corpus", str(corpus), "--queries", str(queries), "--json"], capsys
    )
    assert code == 2 and "queries.jsonl:1: missing gold_doc_id" in err


def test_plugin_returns_cited_passages_filtered_by_collection(pm):
    [passages] = pm.hook.retrieve(question="Combien de jours de télétravail ?", profile=Profile(), k=3)
    top = passages[0]
    assert top["title"] == "Politique de congés — Télétravail" and top["source"].endswith("conges.md")
    assert {"text", "score", "snippet", "heading", "collection"} <= set(top)
    assert [p["score"] for p in passages] == sorted((p["score"] for p in passages), reverse=True)
    assert pm.hook.retrieve(question="télétravail", profile=Profile(collections=["other"]), k=3) == [[]]


def test_assistant_answers_in_rag_mode_with_numbered_sources(pm, isolated_env):
    engine = open_database(f"sqlite:///{isolated_env / 'apprenti.db'}")
    llm = Echo()
    answer = Assistant(engine, pm, llm).answer("When do production releases happen?", user="U1", mode="rag")
    assert answer.mode == "rag"
    assert answer.sources[0]["source"].endswith("deploy.md")
    assert "[1]" in llm.seen[0][-1]["content"] and "Tuesdays" in llm.seen[0][-1]["content"]


def test_auto_mode_prompts_when_nothing_relevant(pm, isolated_env):
    engine = open_database(f"sqlite:///{isolated_env / 'apprenti.db'}")
    assistant = Assistant(engine, pm, Echo(), rag_threshold=0.35)
    unrelated = assistant.answer(
        "What is the airspeed velocity of an unladen swallow?", user="U1", mode="auto"
    )
    assert unrelated.mode == "prompt" and unrelated.sources == []
    related = assistant.answer("How do I deploy to staging?", user="U1", mode="auto")
    assert related.mode == "rag" and related.sources[0]["source"].endswith("deploy.md")


def test_rag_mode_with_an_empty_index_falls_back_to_prompting(isolated_env):
    manager = make_manager(["rag"], entrypoints=False)
    manager.hook.startup(
        config={"home": str(isolated_env), "chroma_path": str(isolated_env / "empty-chroma")},
        database=None,
        documents=None,
    )
    engine = open_database(f"sqlite:///{isolated_env / 'apprenti.db'}")
    answer = Assistant(engine, manager, Echo()).answer("anything?", user="U1", mode="rag")
    assert answer.mode == "prompt" and answer.sources == [] and answer.notices


def test_a_chroma_server_that_is_down_falls_back_to_prompting(isolated_env, caplog):
    manager = make_manager(["rag"], entrypoints=False)
    manager.hook.startup(
        config={"home": str(isolated_env), "chroma_url": "http://127.0.0.1:9"}, database=None, documents=None
    )
    assert "not reachable" not in caplog.text  # start-up opens nothing; the first search finds out
    engine = open_database(f"sqlite:///{isolated_env / 'apprenti.db'}")
    answer = Assistant(engine, manager, Echo()).answer("anything?", user="U1", mode="rag")
    assert answer.mode == "prompt" and any("127.0.0.1:9" in n for n in answer.notices)


def test_the_embedding_backend_setting_reaches_every_index(monkeypatch, isolated_env, ingested):
    from bot.cli.rag import open_index
    from bot.settings import load_settings

    config = {
        "home": str(isolated_env),
        "chroma_path": str(isolated_env / "chroma"),
        "chroma_url": None,
        "embedding_model": "all-MiniLM-L6-v2",
        "embedding_backend": "torch",
    }
    assert rag_plugin.open_retriever(config).index.embedder.backend == "torch"
    monkeypatch.setenv("APPRENTI_EMBEDDING_BACKEND", "onnx")
    index = open_index(load_settings())
    assert index.embedder.backend == "onnx" and index.embedder.runs_on == "onnx"


def test_serve_warms_retrieval_at_start_up(isolated_env, ingested, caplog):
    from bot.cli.serve import warm_retrieval
    from bot.runtime import Runtime
    from bot.settings import load_settings

    rt = Runtime(load_settings(), entrypoints=False)
    warm_retrieval(rt)
    retriever = rt.plugins.get_plugin("rag").retriever
    assert retriever is not None, "the index was not opened at start-up"
    assert retriever.index.count() > 0 and retriever.index.embedder.runs_on == "onnx-int8"

    class Down:
        class hook:  # noqa: N801 - stands in for pluggy's relay
            @staticmethod
            def retrieve(**kwargs):
                raise ConnectionError("chroma server down")

    rt.__dict__["plugins"] = Down
    with caplog.at_level("WARNING", logger="apprenti.serve"):
        warm_retrieval(rt)
    assert "retrieval not warmed up: chroma server down" in caplog.text
