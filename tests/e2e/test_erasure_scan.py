"""Erasure, proven: a person asks a question and corrects the answer in Slack with a unique marker,
a reviewer approves it, an adapter is trained on it and put in service, the pairs are exported;
then `apprenti forget` erases the person and every byte under APPRENTI_HOME (SQLite and WAL files,
Chroma, the BM25 store, adapter folders, logs, exports), every table and every collection is
searched for the marker: zero occurrences. Real pieces throughout (Bolt app, tiny model, SQLite,
embedded Chroma, training); Slack's Web API is the stand-in."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli import run_main

pytestmark = pytest.mark.slow

# Lower-case letters only: no PII recogniser (names, secrets, high entropy) touches it, and the
# BM25 tokenizer keeps it whole; the scans are case-insensitive all the same.
MARKER = "plinthquorbex"
PERSON, OTHER, REVIEWER, ADMIN = "U0MARKED", "U0OTHER", "U0REVIEWER", "U0ADMIN"
GENERAL, REVIEW = "C0GENERAL", "C0REVIEW"
SECRET = "scan-signing-secret"


def occurrences(home: Path, needle: str) -> dict[str, int]:
    """Every file under `home` whose bytes hold `needle` (any case), with the count."""
    found = {}
    for path in sorted(home.rglob("*")):
        if path.is_file():
            count = path.read_bytes().lower().count(needle.lower().encode())
            if count:
                found[str(path.relative_to(home))] = count
    return found


def table_rows_with(database: Path, needle: str) -> dict[str, int]:
    """Rows of every table of a SQLite file whose text holds `needle` (any case)."""
    found = {}
    db = sqlite3.connect(database)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            try:
                rows = db.execute(f'SELECT * FROM "{table}"').fetchall()
            except sqlite3.DatabaseError:  # FTS shadow tables and the like
                continue
            hits = sum(needle.lower() in repr(row).lower() for row in rows)
            if hits:
                found[table] = hits
    finally:
        db.close()
    return found


def scan(home: Path, needle: str) -> dict:
    """Files and SQLite tables under `home` holding `needle`, read by another process: opening and
    closing a database file here would drop the locks this process's SQLite connections hold on it
    (POSIX locks belong to the process), and the next process would then miss their writes."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.e2e.test_erasure_scan", str(home), needle],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    return json.loads(done.stdout)


def _scan(home: Path, needle: str) -> dict:
    databases = [p for p in sorted(home.rglob("*")) if p.is_file() and p.suffix in (".db", ".sqlite3")]
    tables = {str(p.relative_to(home)): found for p in databases if (found := table_rows_with(p, needle))}
    return {"files": occurrences(home, needle), "tables": tables}


def collection_records_with(chroma: Path, needle: str) -> dict[str, int]:
    from rag.index import open_client

    found = {}
    client = open_client(path=chroma)
    for collection in client.list_collections():
        got = collection.get(include=["documents", "metadatas"])
        hits = sum(
            needle.lower() in (str(doc) + json.dumps(meta)).lower()
            for doc, meta in zip(got["documents"], got["metadatas"], strict=True)
        )
        if hits:
            found[collection.name] = hits
    return found


@pytest.fixture
def configured(isolated_env, tiny_model_dir, monkeypatch):
    from bot.slack.standin import SlackStandIn

    home = isolated_env
    with SlackStandIn() as standin:
        env = {
            "APPRENTI_BASE_MODEL": str(tiny_model_dir),
            "APPRENTI_LLM_BACKEND": "local",
            "APPRENTI_MAX_NEW_TOKENS": "12",
            "APPRENTI_FEWSHOT_K": "2",
            "APPRENTI_MIN_EXAMPLES": "3",
            "APPRENTI_TRAIN_THRESHOLD": "1000",
            "APPRENTI_TRAIN_EPOCHS": "1",
            "APPRENTI_TORCH_THREADS": "1",
            "APPRENTI_AUTO_PROMOTE": "true",
            "APPRENTI_REVIEW_CHANNEL": REVIEW,
            "APPRENTI_ADMINS": ADMIN,
            "APPRENTI_REVIEWERS": REVIEWER,
            "APPRENTI_HEARTBEAT_TIMEOUT": "600",
            "SLACK_BOT_TOKEN": "xoxb-scan",
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": standin.api_url,
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        yield home, standin


def wait_for(engine, run_id: int, timeout: float = 300.0):
    """The training run once its process has finished it."""
    from storage.runs import get_run

    deadline = time.monotonic() + timeout
    while (run := get_run(engine, run_id)).status in ("queued", "running"):
        log = Path(run.log_path or "")
        assert time.monotonic() < deadline, f"run #{run_id} did not finish: {run}\n" + (
            log.read_text()[-2000:] if log.is_file() else ""
        )
        time.sleep(1)
    return run


def ask_and_correct(people, standin, services, user: str, question: str, corrected: str) -> dict:
    """`@apprenti question` in #general, Correct → modal → submit; returns the review message posted."""
    from bot.slack import blocks as ui
    from bot.slack.standin import button_value, final_message

    ts = people.mention(user, GENERAL, question)
    assert services.wait_idle(120)
    answer = final_message(standin, GENERAL, ts)
    interaction = button_value(answer, ui.CORRECT)
    opened = len(standin.calls("views.open"))
    people.click(user, ui.CORRECT, interaction, channel=GENERAL, message_ts=answer["ts"], message=answer)
    view = standin.wait_for("views.open", count=opened + 1)[-1]["view"]
    in_review = lambda c: c.get("channel") == REVIEW  # noqa: E731
    posted = len(standin.calls("chat.postMessage"))
    # "both": the pair goes to training and, as a fact, into the knowledge entries (Chroma and BM25).
    people.submit(
        user,
        view,
        {ui.ANSWER_BLOCK: corrected, ui.NOTE_BLOCK: None, getattr(ui, "KIND_BLOCK", "kind"): "both"},
    )
    assert services.wait_idle(60)
    return standin.wait_for(
        "chat.postMessage",
        count=1,
        where=lambda c: in_review(c) and c in standin.calls("chat.postMessage")[posted:],
    )[-1]


def test_forget_leaves_no_byte_of_the_person(configured, capsys):
    from bot.runtime import Runtime
    from bot.scheduler import start_run
    from bot.slack import blocks as ui
    from bot.slack.app import create_app
    from bot.slack.notify import make_client
    from bot.slack.standin import SlackPeople, button_value
    from finetune.registry import Registry
    from storage.examples import add_examples, new_example
    from storage.interactions import recent_interactions, record_vote
    from storage.models import ExampleStatus

    home, standin = configured
    runtime = Runtime(entrypoints=False)
    app, services = create_app(
        runtime, client=make_client("xoxb-scan", standin.api_url), token_verification=False
    )
    people = SlackPeople(app, standin, SECRET)
    try:
        # The person asks and corrects; a reviewer approves (few-shot store, knowledge entry, review post).
        review = ask_and_correct(
            people,
            standin,
            services,
            PERSON,
            f"How do I reset the {MARKER} gateway?",
            f"Open the {MARKER} console, then press restart twice.",
        )
        example_id = button_value(review, ui.APPROVE)
        people.click(REVIEWER, ui.APPROVE, example_id, channel=REVIEW, message_ts=review["_response"]["ts"])
        assert services.wait_idle(60)
        # Someone else asks too, and the person votes on that answer: the vote goes, the answer stays.
        people.mention(OTHER, GENERAL, "Where is the printer on the second floor?")
        assert services.wait_idle(120)
        theirs = next(i for i in recent_interactions(runtime.engine) if i.user_id == OTHER)
        record_vote(runtime.engine, theirs.id, PERSON, 1)
    finally:
        services.wait_idle(30)
        services.pool.shutdown()
        services.listeners.shutdown()
    mine = [i for i in recent_interactions(runtime.engine) if i.user_id == PERSON]
    assert mine and MARKER in mine[0].question, "the scrubber must leave the marker as it is"
    add_examples(
        runtime.engine,
        [
            new_example(
                f"Other team question {i}?",
                f"Other team answer {i}.",
                status=ExampleStatus.approved.value,
                author_id=OTHER,
            )
            for i in range(4)
        ],
        "test",
    )

    # An adapter trained on the person's pair by the training process (its log is under logs/), put in
    # service; the pairs exported to a file.
    first, _ = start_run(runtime, "default", "admin", ADMIN, force=True)
    assert wait_for(runtime.engine, first.id).adapter_name == "default/v1"
    registry = Registry(runtime.engine, home / "adapters")
    if registry.active("default") is None:
        registry.activate("default/v1", ADMIN)
    assert int(example_id) in registry.get("default/v1").example_ids
    export = home / "exports" / "pairs.jsonl"
    code, out, err = run_main(["examples", "export", str(export), "--format", "openai"], capsys)
    assert code == 0, err
    scanned = scan(home, MARKER)
    before = scanned["files"]
    assert {"interaction", "example"} <= set(scanned["tables"]["apprenti.db"]), scanned
    assert any(name.startswith("chroma") for name in before), before  # the test can fail: the data is there
    assert "apprenti.db" in before or "apprenti.db-wal" in before, before
    assert "exports/pairs.jsonl" in before, before
    assert (home / "logs" / f"run-{first.id}.log").is_file()

    code, out, err = run_main(["forget", PERSON, "--actor", ADMIN, "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)

    # The adapter with the person's data left service at once; the retrain is gated on a clean baseline.
    assert result["taken_out_of_service"] == [{"adapter": "default/v1", "now": "base model"}]
    assert registry.active("default") is None
    (retrain,) = result["retrain_runs"]
    assert retrain["run"] is not None, retrain
    run = wait_for(runtime.engine, retrain["run"])
    assert run.adapter_name, run.error  # registered, whatever the gate said of a two-step adapter
    retrained = registry.get(run.adapter_name)
    assert int(example_id) not in retrained.example_ids and not retrained.tainted
    assert retrained.metrics["baseline"] == "base model"
    # The adapter that learnt the person's data keeps its card, not its weights.
    assert not (home / "adapters" / "default" / "v1" / "adapter_model.safetensors").exists()
    # The review message about the correction is gone from the review channel.
    assert [c["ts"] for c in standin.calls("chat.delete")] == [review["_response"]["ts"]]
    assert not [m for m in standin.messages(REVIEW) if MARKER in json.dumps(m)]
    # The export is listed (and removed, being exactly what was written).
    assert [e["file"] for e in result["exports"]] == [str(export)]

    assert scan(home, MARKER) == {"files": {}, "tables": {}}
    assert scan(home, PERSON) == {"files": {}, "tables": {}}  # the audit log names a pseudonym
    assert collection_records_with(home / "chroma", MARKER) == {}
    # The erasure itself stays audited, under the pseudonym.
    code, out, _ = run_main(["audit", "--json", "--action", "user.forget"], capsys)
    (event,) = json.loads(out)["events"]
    assert event["actor"] == ADMIN and event["target"] == f"user:{result['pseudonym']}"


if __name__ == "__main__":  # the scan, in a process of its own (see scan())
    print(json.dumps(_scan(Path(sys.argv[1]), sys.argv[2])))
