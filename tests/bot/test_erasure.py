from __future__ import annotations

from bot.erasure import forget_user
from plugins.hookspecs import hookimpl
from plugins.manager import make_manager
from storage.audit import list_events
from storage.db import session_scope
from storage.examples import add_example, list_examples
from storage.interactions import add_interaction, record_vote
from storage.models import Adapter, Interaction


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

    assert result == {"user": "U1", "interactions": 1, "examples": 2, "tainted_adapters": ["default/v1"],
                      "retrain_tracks": ["default"]}
    assert [e.id for e in list_examples(engine)] == [kept.id]
    with session_scope(engine) as s:
        rows = s.query(Interaction).all()
        assert [r.id for r in rows] == [other.id]
        assert rows[0].votes == {"U2": -1} and rows[0].feedback == -1
        assert {a.name: a.tainted for a in s.query(Adapter)} == {"default/v1": True, "default/v2": False}
    assert sorted(seen) == sorted([(by_me.id, "erased"), (on_my_question.id, "erased")])
    (event,) = list_events(engine, action="user.forget")
    assert event.actor == "admin" and event.target == "user:U1" and "my q" not in str(event.details)
