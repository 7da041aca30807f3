"""The one registry watcher of a serving process, against a target that records what it is asked to
load (the ChatModel and the model server's ServerAdapters are the real targets; their own tests are
tests/finetune/test_pipeline.py and tests/bot/test_llm_restarts.py)."""

from __future__ import annotations

from finetune.hotswap import AdapterWatcher
from storage.db import session_scope
from storage.models import Adapter


class Target:
    def __init__(self):
        self.adapters: dict[str, str] = {}
        self.loads: list[str] = []
        self.refuse: set[str] = set()

    def load_adapter(self, name, path):
        self.loads.append(name)
        if name in self.refuse:
            raise RuntimeError(f"cannot load {name}")
        self.adapters[name] = path

    def remove_adapter(self, name):
        self.adapters.pop(name, None)


def activate(engine, track, version):
    with session_scope(engine) as session:
        for row in session.query(Adapter).filter(Adapter.track == track, Adapter.status == "active"):
            row.status = "retired"
            session.add(row)
    with session_scope(engine) as session:
        session.add(
            Adapter(
                track=track,
                version=version,
                name=f"{track}/v{version}",
                base_model="base",
                path=f"/adapters/{track}/v{version}",
                status="active",
            )
        )


def test_current_reads_the_registry_at_most_every_refresh_seconds(engine):
    target = Target()
    watcher = AdapterWatcher(engine, target, preload_candidates=False, refresh_seconds=3600)
    activate(engine, "support", 1)
    assert watcher.current("support") == "support/v1"  # the first call reads at once
    activate(engine, "support", 2)
    assert watcher.current("support") == "support/v1"  # not read again within the hour
    watcher.forget("support")  # the target lost it: read and load again now
    assert watcher.current("support") == "support/v2"
    assert target.loads == ["support/v1", "support/v2"]


def test_a_forgotten_adapter_is_loaded_again_though_the_registry_did_not_change(engine):
    target = Target()
    watcher = AdapterWatcher(engine, target, preload_candidates=False, refresh_seconds=0)
    activate(engine, "support", 1)
    assert watcher.current("support") == "support/v1"
    assert watcher.current("support") == "support/v1" and target.loads == ["support/v1"]
    watcher.forget("support")
    assert watcher.current("support") == "support/v1" and target.loads == ["support/v1", "support/v1"]


def test_a_failed_load_serves_the_base_and_is_retried_only_after_retry_seconds(engine):
    target = Target()
    target.refuse.add("support/v1")
    never = AdapterWatcher(engine, target, preload_candidates=False, refresh_seconds=0)
    soon = AdapterWatcher(engine, target, preload_candidates=False, refresh_seconds=0, retry_seconds=0)
    activate(engine, "support", 1)
    for _ in range(3):
        assert never.current("support") is None and never.failed_for("support") == "support/v1"
    assert target.loads == ["support/v1"]  # without retry_seconds: not tried again
    assert soon.current("support") is None and soon.current("support") is None
    assert target.loads == ["support/v1"] * 3
    target.refuse.clear()
    assert soon.current("support") == "support/v1" and soon.failed_for("support") is None


def test_marked_failed_serves_the_base_until_the_retry_and_a_new_version_clears_it(engine):
    target = Target()
    watcher = AdapterWatcher(engine, target, preload_candidates=False, refresh_seconds=0, retry_seconds=3600)
    activate(engine, "support", 1)
    assert watcher.current("support") == "support/v1"
    watcher.mark_failed("support", "support/v1")
    assert watcher.current("support") is None and watcher.failed_for("support") == "support/v1"
    activate(engine, "support", 2)  # the registry moved on: the failure is no longer reported
    assert watcher.current("support") == "support/v2" and watcher.failed_for("support") is None
