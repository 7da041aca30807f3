from __future__ import annotations

from datetime import timedelta

from bot.erasure import forget_user
from plugins.hookspecs import hookimpl
from plugins.manager import make_manager
from storage.audit import list_events
from storage.db import session_scope
from storage.examples import add_example, list_examples
from storage.interactions import add_interaction, record_vote
from storage.models import Adapter, Interaction, utcnow


def test_forget_erases_a_person_and_taints_adapters(engine):
    mine = add_interaction(engine, question="my q", answer="a", user_id="U1")
    other = add_interaction(engine, question="other q", answer="a", user_id="U2")
    record_vote(engine, other.id, "U1", 1)
    record_vote(engine, other.id, "U2", -1)
    by_me = add_example(engine, "q1", "a1", author_id="U1")
    on_my_question = add_example(engine, "my q", "fixed", author_id="U3", interaction_id=mine.id)
    kept = add_example(engine, "q2", "a2", author_id="U2")
    with session_scope(engine) as s:
        s.add(
            Adapter(
                track="default",
                version=1,
                name="default/v1",
                base_model="m",
                path="/p",
                status="active",
                example_ids=[by_me.id, kept.id],
            )
        )
        s.add(
            Adapter(
                track="default",
                version=2,
                name="default/v2",
                base_model="m",
                path="/p",
                status="candidate",
                example_ids=[kept.id],
            )
        )

    seen = []

    class Watcher:
        @hookimpl
        def example_changed(self, example, action):
            seen.append((example["id"], action))

    pm = make_manager(["w"], entrypoints=False, extra={"w": Watcher()})
    result = forget_user(engine, "<@U1>", "admin", pm=pm)

    pseudonym = result.pop("pseudonym")
    assert pseudonym.startswith("erased-") and "U1" not in pseudonym
    assert result == {
        "user": "U1",
        "interactions": 1,
        "examples": 2,
        "tainted_adapters": ["default/v1"],
        "retrain_tracks": ["default"],
        "erased_example_ids": sorted([by_me.id, on_my_question.id]),
        "taken_out_of_service": [{"adapter": "default/v1", "now": "base model"}],
        "review_posts": [],
        "exports": [],
        "audit_rows_pseudonymised": result["audit_rows_pseudonymised"],
    }
    assert [e.id for e in list_examples(engine)] == [kept.id]
    with session_scope(engine) as s:
        rows = s.query(Interaction).all()
        assert [r.id for r in rows] == [other.id]
        assert rows[0].votes == {"U2": -1} and rows[0].feedback == -1
        assert {a.name: a.tainted for a in s.query(Adapter)} == {"default/v1": True, "default/v2": False}
    assert sorted(seen) == sorted([(by_me.id, "erased"), (on_my_question.id, "erased")])
    (event,) = list_events(engine, action="user.forget")
    assert event.actor == "admin" and event.target == f"user:{pseudonym}" and "my q" not in str(event.details)


def adapters(engine, folder, *specs):
    """Adapter rows (name, status, tainted) with folders holding the files the registry checks."""
    from finetune.registry import ADAPTER_FILES

    with session_scope(engine) as s:
        for version, (status, tainted) in enumerate(specs, start=1):
            path = folder / f"v{version}"
            path.mkdir(parents=True)
            for name in ADAPTER_FILES:
                (path / name).write_text("{}")
            s.add(
                Adapter(
                    track="default",
                    version=version,
                    name=f"default/v{version}",
                    base_model="m",
                    path=str(path),
                    status=status,
                    tainted=tainted,
                    activated_at=utcnow() - timedelta(hours=10 - version) if status != "candidate" else None,
                )
            )


def test_a_tainted_adapter_is_never_activated_nor_rolled_back_to(engine, tmp_path):
    import pytest

    from finetune.registry import Registry, RegistryError

    adapters(engine, tmp_path, ("retired", False), ("retired", True), ("active", False), ("candidate", True))
    registry = Registry(engine, tmp_path)
    for name in ("default/v2", "default/v4"):
        with pytest.raises(RegistryError, match="can never serve again"):
            registry.activate(name, "admin")
        with pytest.raises(RegistryError, match="can never serve again"):
            registry.rollback("default", "admin", to=name)
    assert (
        registry.rollback("default", "admin").active == "default/v1"
    )  # v2 was in service later, but tainted


def test_erasing_data_in_the_active_adapter_takes_it_out_of_service_at_once(engine, tmp_path):
    from storage.adapters import active_adapter

    example = add_example(engine, "q1", "a1", author_id="U1")
    adapters(engine, tmp_path, ("retired", False), ("active", False))
    with session_scope(engine) as s:
        s.query(Adapter).filter(Adapter.name == "default/v2").update({"example_ids": [example.id]})
    result = forget_user(engine, "U1", "admin")
    assert result["taken_out_of_service"] == [{"adapter": "default/v2", "now": "default/v1"}]
    assert active_adapter(engine, "default").name == "default/v1"


def test_withdrawal_never_fails_for_want_of_a_previous_version(engine, tmp_path):
    """A plain rollback refuses when the previous version lost its folder; erasure must not, or the
    tainted adapter stays in service: it skips to the next clean version, else the base model."""
    import shutil

    from storage.adapters import active_adapter

    example = add_example(engine, "q1", "a1", author_id="U1")
    adapters(engine, tmp_path, ("retired", False), ("retired", False), ("active", False))
    shutil.rmtree(tmp_path / "v2")  # the most recent previous version, deleted by hand
    with session_scope(engine) as s:
        s.query(Adapter).filter(Adapter.name == "default/v3").update({"example_ids": [example.id]})
    result = forget_user(engine, "U1", "admin", adapters_dir=tmp_path)
    assert result["taken_out_of_service"] == [{"adapter": "default/v3", "now": "default/v1"}]
    assert active_adapter(engine, "default").name == "default/v1"

    shutil.rmtree(tmp_path / "v1")
    example = add_example(engine, "q2", "a2", author_id="U2")
    with session_scope(engine) as s:
        s.query(Adapter).filter(Adapter.name == "default/v1").update({"example_ids": [example.id]})
    assert forget_user(engine, "U2", "admin")["taken_out_of_service"] == [
        {"adapter": "default/v1", "now": "base model"}
    ]
    assert active_adapter(engine, "default") is None
    assert {e.action for e in list_events(engine, action="adapter.withdraw")} == {"adapter.withdraw"}


def test_tainted_versions_lose_their_weights(engine, tmp_path):
    from finetune.registry import ADAPTER_FILES, Registry

    adapters(engine, tmp_path, ("retired", True), ("active", False), ("candidate", True))
    purged = Registry(engine, tmp_path).purge_tainted("admin")
    assert purged == ["default/v1", "default/v3"]
    for version, present in ((1, False), (2, True), (3, False)):
        assert all((tmp_path / f"v{version}" / name).exists() == present for name in ADAPTER_FILES)
    with session_scope(engine) as s:
        assert {a.name: a.status for a in s.query(Adapter)} == {
            "default/v1": "retired",
            "default/v2": "active",
            "default/v3": "rejected",
        }


def test_audit_rows_name_a_stable_pseudonym(engine):
    from bot.erasure import pseudonym_for
    from storage.audit import audit

    audit(
        engine,
        "U1",
        "example.add",
        "example:1",
        by="U1",
        people=["U1", "U12"],
        nested={"U1": {"asker": "U1"}},
    )
    audit(engine, "U12", "vote", "interaction:U1:3")
    audit(engine, "admin", "adapter.activate", "default/v1")
    key = b"k" * 32
    result = forget_user(engine, "U1", "admin", pseudonym=pseudonym_for("U1", key))
    alias = result["pseudonym"]
    assert alias == pseudonym_for("U1", key) != pseudonym_for("U1", b"other key") and "U1" not in alias
    rows = {e.action: e for e in list_events(engine)}
    assert rows["example.add"].actor == alias and rows["example.add"].target == "example:1"
    assert rows["example.add"].details == {
        "by": alias,
        "people": [alias, "U12"],
        "nested": {alias: {"asker": alias}},
    }
    assert (
        rows["vote"].actor == "U12" and rows["vote"].target == f"interaction:{alias}:3"
    )  # U12 is someone else
    assert rows["user.forget"].target == f"user:{alias}" and rows["user.forget"].actor == "admin"
    assert result["audit_rows_pseudonymised"] == 2


def test_exports_are_recorded_and_removed_by_forget(engine, tmp_path):
    from bot.erasure import remove_exports
    from finetune.formats import training_pairs, write_file
    from storage.models import ExampleStatus

    asked = add_interaction(engine, question="q by U1", answer="a", user_id="U1")
    add_example(
        engine,
        "q by U1",
        "fixed by U3",
        author_id="U3",
        interaction_id=asked.id,
        status=ExampleStatus.approved.value,
    )
    add_example(engine, "q by U2", "a by U2", author_id="U2", status=ExampleStatus.approved.value)
    kept, changed = tmp_path / "out" / "pairs.jsonl", tmp_path / "out" / "edited.json"
    write_file(training_pairs(engine), "openai", kept, actor="U9")
    write_file(training_pairs(engine), "alpaca", changed)
    changed.write_text(changed.read_text() + " ")
    events = list_events(engine, action="examples.export")
    assert [e.details["people"] for e in events] == [["U1", "U2", "U3"]] * 2
    assert {e.details["file"] for e in events} == {str(kept.resolve()), str(changed.resolve())}

    result = forget_user(engine, "U1", "admin")
    assert [e["file"] for e in result["exports"]] == [str(kept.resolve()), str(changed.resolve())]
    outcomes = {e["file"]: e["outcome"] for e in remove_exports(result["exports"])}
    assert outcomes[str(kept.resolve())].startswith("deleted") and not kept.exists()
    assert outcomes[str(changed.resolve())].startswith("changed since") and changed.exists()
    assert forget_user(engine, "U7", "admin")["exports"] == []


def test_forget_deletes_the_persons_queued_slack_events_and_checkpoints(engine, tmp_path):
    import json
    from pathlib import Path

    from sqlalchemy import text

    from storage.db import checkpoint

    rows = [
        ("Ev1", {"event": {"type": "app_mention", "user": "U1", "text": "secret plan zorbaquintex"}}),
        ("Ev2", {"event": {"type": "app_mention", "user": "U2", "text": "a question about <@U1>"}}),
    ]
    with session_scope(engine) as s:
        if "slack_event" not in {r[0] for r in s.execute(text("SELECT name FROM sqlite_master"))}:
            import pytest

            pytest.skip("no slack_event table in this schema")
        for event_id, body in rows:
            s.execute(
                text(
                    "INSERT INTO slack_event (event_id, received_at, body, status, attempts) "
                    "VALUES (:id, CURRENT_TIMESTAMP, :body, 'done', 1)"
                ),
                {"id": event_id, "body": json.dumps(body)},
            )
    forget_user(engine, "U1", "admin")
    with session_scope(engine) as s:
        assert [r[0] for r in s.execute(text("SELECT event_id FROM slack_event"))] == ["Ev2"]
    database = Path(engine.url.database)
    wal = database.with_name(database.name + "-wal")
    assert wal.stat().st_size > 0
    assert checkpoint(engine)["busy"] == 0
    assert wal.stat().st_size == 0
    assert b"zorbaquintex" not in database.read_bytes()


def test_answers_that_repeat_or_cite_an_erased_correction_are_redacted(engine):
    from bot.erasure import ANSWER_REDACTED
    from storage.interactions import get_interaction

    fact = add_example(
        engine,
        "Which floor is the badge office on?",
        "The badge office is on floor seven, room 712.",
        author_id="U1",
    )
    cited = add_interaction(
        engine,
        question="badge office?",
        answer="Floor seven.",
        user_id="U2",
        sources=[
            {"kind": "team_answer", "source": f"team-answer:{fact.id}", "snippet": "room 712"},
            {"kind": "document", "source": "handbook.md", "snippet": "badges"},
        ],
    )
    echoed = add_interaction(
        engine,
        question="where do I get a badge?",
        user_id="U3",
        answer="Go there: The badge office is on floor seven, room 712. Bring ID.",
    )
    other = add_interaction(
        engine,
        question="printer?",
        answer="Second floor.",
        user_id="U4",
        sources=[{"kind": "team_answer", "source": "team-answer:999"}],
    )
    forget_user(engine, "U1", "admin")
    assert get_interaction(engine, cited.id).answer == ANSWER_REDACTED
    assert [s["source"] for s in get_interaction(engine, cited.id).sources] == ["handbook.md"]
    assert get_interaction(engine, echoed.id).answer == ANSWER_REDACTED
    assert get_interaction(engine, other.id).answer == "Second floor."


def test_a_failed_step_is_reported_and_the_others_still_run(isolated_env, monkeypatch, capsys):
    """`apprenti forget` prints what it did; a step that fails (here the Chroma purge) is listed as
    unfinished, the exit code is 1, and the later steps (exports, checkpoint) still ran."""
    import bot.erasure
    from finetune.formats import training_pairs, write_file
    from storage.db import open_database
    from storage.models import ExampleStatus
    from tests.cli import run_main

    monkeypatch.setenv("APPRENTI_PLUGINS", "tone")
    monkeypatch.setenv("APPRENTI_PII", "off")
    engine = open_database(f"sqlite:///{isolated_env / 'apprenti.db'}")
    add_example(engine, "q by U1", "a by U1", author_id="U1", status=ExampleStatus.approved.value)
    export = isolated_env / "pairs.jsonl"
    write_file(training_pairs(engine), "openai", export)
    (isolated_env / "chroma").mkdir()

    def broken(path):
        raise OSError("disk on fire")

    monkeypatch.setattr(bot.erasure, "purge_chroma", broken)
    monkeypatch.setenv("COLUMNS", "400")  # one line per step, however long the path
    code, out, _ = run_main(["forget", "<@U1>", "--actor", "UADMIN"], capsys)
    assert code == 1
    assert "Erased 0 interaction(s) and 1 example(s) of U1" in out and "erased-" in out
    assert f"Export {export.resolve()}" in out and "deleted" in out and not export.exists()
    assert "Not finished: Chroma and BM25: OSError" in out and "disk on fire" not in out
    (done,) = list_events(engine, action="user.forget.done")
    assert done.details["unfinished"] and done.actor == "UADMIN"


def test_where_the_person_acted_on_others_data_the_rows_name_the_pseudonym(engine, tmp_path):
    import json

    from storage.models import Example, TrainingRun
    from storage.runs import acquire_run

    reviewed = add_example(engine, "q", "a", author_id="U2")
    with session_scope(engine) as s:
        s.query(Example).filter(Example.id == reviewed.id).update({"reviewer_id": "U1"})
    run = acquire_run(engine, "default", "admin", "U1")
    adapters(engine, tmp_path, ("active", False))
    with session_scope(engine) as s:
        s.query(Adapter).update({"activated_by": "U1"})
    (tmp_path / "v1" / "card.json").write_text(
        json.dumps({"triggered_by": "U1", "activated_by": "U1", "name": "x"})
    )

    alias = forget_user(engine, "U1", "admin")["pseudonym"]
    with session_scope(engine) as s:
        assert s.get(Example, reviewed.id).reviewer_id == alias
        assert s.get(TrainingRun, run.id).triggered_by == alias
        assert s.query(Adapter).one().activated_by == alias
    card = json.loads((tmp_path / "v1" / "card.json").read_text())
    assert card["triggered_by"] == card["activated_by"] == alias and card["name"] == "x"


def test_the_chroma_purge_runs_apart_and_reports_a_failure(tmp_path):
    import pytest

    from bot.erasure import purge_chroma

    assert purge_chroma(tmp_path / "none") == {"redacted": 0}
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "chroma.sqlite3").write_bytes(b"not a database" * 100)
    with pytest.raises(RuntimeError, match="the Chroma purge exited with 1: .*DatabaseError"):
        purge_chroma(tmp_path / "broken")


def test_forget_on_postgres(pg_engine):
    """The same queries on PostgreSQL: JSON searched as text, the queue table found, no checkpoint."""
    import json

    from sqlalchemy import text

    from bot.erasure import ANSWER_REDACTED
    from storage.audit import audit, record_export
    from storage.db import checkpoint
    from storage.interactions import get_interaction

    engine = pg_engine
    mine = add_interaction(engine, question="my q", answer="a", user_id="U1")
    fact = add_example(
        engine,
        "Which floor is the badge office on?",
        "The badge office is on floor seven, room 712.",
        author_id="U3",
        interaction_id=mine.id,
    )
    cited = add_interaction(
        engine,
        question="badge?",
        answer="Seven.",
        user_id="U2",
        sources=[{"kind": "team_answer", "source": f"team-answer:{fact.id}"}],
    )
    audit(engine, "U1", "example.add", "example:1", people=["U1", "U12"])
    record_export(engine, "U9", "/tmp/x.jsonl", ["U1", "U2"], count=2, file="/tmp/x.jsonl", sha256="0")
    with session_scope(engine) as s:
        s.execute(
            text(
                "INSERT INTO slack_event (event_id, received_at, body, status, attempts) "
                "VALUES ('Ev1', now(), :body, 'done', 1)"
            ),
            {"body": json.dumps({"event": {"user": "U1"}})},
        )
    result = forget_user(engine, "U1", "admin")
    alias = result["pseudonym"]
    assert result["examples"] == 1 and [e["file"] for e in result["exports"]] == ["/tmp/x.jsonl"]
    assert get_interaction(engine, cited.id).answer == ANSWER_REDACTED
    rows = {e.action: e for e in list_events(engine)}
    assert rows["example.add"].actor == alias and rows["example.add"].details["people"] == [alias, "U12"]
    assert rows["examples.export"].details["people"] == [alias, "U2"]
    with session_scope(engine) as s:
        assert s.execute(text("SELECT count(*) FROM slack_event")).scalar() == 0
    assert checkpoint(engine) is None
