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
        s.add(Adapter(track="default", version=1, name="default/v1", base_model="m", path="/p", status="active",
                      example_ids=[by_me.id, kept.id]))
        s.add(Adapter(track="default", version=2, name="default/v2", base_model="m", path="/p", status="candidate",
                      example_ids=[kept.id]))

    seen = []

    class Watcher:
        @hookimpl
        def example_changed(self, example, action):
            seen.append((example["id"], action))

    pm = make_manager(["w"], entrypoints=False, extra={"w": Watcher()})
    result = forget_user(engine, "<@U1>", "admin", pm=pm)

    pseudonym = result.pop("pseudonym")
    assert pseudonym.startswith("erased-") and "U1" not in pseudonym
    assert result == {"user": "U1", "interactions": 1, "examples": 2, "tainted_adapters": ["default/v1"],
                      "retrain_tracks": ["default"], "erased_example_ids": sorted([by_me.id, on_my_question.id]),
                      "taken_out_of_service": [{"adapter": "default/v1", "now": "base model"}],
                      "review_posts": [], "exports": [], "audit_rows_pseudonymised": result["audit_rows_pseudonymised"]}
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
            s.add(Adapter(track="default", version=version, name=f"default/v{version}", base_model="m",
                          path=str(path), status=status, tainted=tainted,
                          activated_at=utcnow() - timedelta(hours=10 - version) if status != "candidate" else None))


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
    assert registry.rollback("default", "admin").active == "default/v1"  # v2 was in service later, but tainted


def test_erasing_data_in_the_active_adapter_takes_it_out_of_service_at_once(engine, tmp_path):
    from storage.adapters import active_adapter

    example = add_example(engine, "q1", "a1", author_id="U1")
    adapters(engine, tmp_path, ("retired", False), ("active", False))
    with session_scope(engine) as s:
        s.query(Adapter).filter(Adapter.name == "default/v2").update({"example_ids": [example.id]})
    result = forget_user(engine, "U1", "admin")
    assert result["taken_out_of_service"] == [{"adapter": "default/v2", "now": "default/v1"}]
    assert active_adapter(engine, "default").name == "default/v1"
