"""The whole loop on real SQLite and a real tiny model: train, gate, register, activate, hot swap,
roll back; shuffled answers rejected; a killed run leaves nothing registered."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from finetune.config import TrainConfig
from finetune.dataset import build_dataset
from finetune.evaluate import EvalOptions
from finetune.hotswap import AdapterWatcher
from finetune.model import ChatModel
from finetune.pipeline import TrainOptions, run_training
from finetune.registry import Registry, RegistryError
from storage.db import open_database
from storage.examples import add_examples, new_example
from storage.models import AdapterStatus, Example, ExampleStatus
from storage.runs import get_run

from .toy import questions, shuffled_train_answers

pytestmark = pytest.mark.slow


def _store(engine, pairs, track):
    add_examples(
        engine,
        [new_example(q, a, track=track, status=ExampleStatus.approved.value) for q, a in pairs],
        "test",
    )


def _general_file(home: Path) -> Path:
    """General items a random model cannot hit by chance (the shipped set has one-digit answers)."""
    path = home / "general.jsonl"
    if not path.exists():
        items = [
            {"skill": "facts", "question": f"Name item {i}.", "answers": [f"the named item number {i}"]}
            for i in range(4)
        ]
        path.write_text("".join(json.dumps(i) + "\n" for i in items), encoding="utf-8")
    return path


def _options(model, home: Path, **kw) -> TrainOptions:
    values = dict(
        base_model=model,
        adapters_dir=home / "adapters",
        track="gate",
        min_examples=20,
        general_path=_general_file(home),
        train=TrainConfig(
            max_steps=40, batch_size=8, learning_rate=5e-3, max_length=96, qlora=False, progress_bar=False
        ),
        evaluation=EvalOptions(
            max_new_tokens=10, consistency_samples=2, consistency_questions=2, general_limit=4
        ),
        heartbeat_every=0.5,
        triggered_by="U-ADMIN",
    )
    return TrainOptions(**{**values, **kw})


@pytest.fixture(scope="module")
def trained(tiny_model, tmp_path_factory):
    """v1 trained on true answers and activated by the gate."""
    home = tmp_path_factory.mktemp("home")
    engine = open_database(f"sqlite:///{home / 'apprenti.db'}")
    _store(engine, questions(12), "gate")
    outcome = run_training(engine, _options(tiny_model, home))
    return engine, home, outcome


def test_good_adapter_passes_the_gate_and_is_activated(trained):
    engine, home, outcome = trained
    assert outcome.status == "succeeded", outcome.error
    assert outcome.adapter == "gate/v1" and outcome.activated
    registry = Registry(engine, home / "adapters")
    adapter = registry.get("gate/v1")
    assert adapter.status == AdapterStatus.active.value and adapter.activated_by == "auto-promote"
    card = registry.card("gate/v1")
    assert card["dataset_fingerprint"] == build_dataset(engine, "gate", min_examples=1).fingerprint
    assert (
        card["triggered_by"] == "U-ADMIN" and card["libraries"]["peft"] and card["hyperparameters"]["epochs"]
    )
    assert card["metrics"]["verdict"]["passed"] is True
    folder = Path(adapter.path)
    assert (folder / "report.md").read_text().count("| token_f1 |") >= 1
    assert (folder / "report.png").stat().st_size > 1000
    assert get_run(engine, outcome.run_id).status == "succeeded"


def test_gate_rejects_an_adapter_trained_on_shuffled_answers(trained, tiny_model):
    engine, home, _ = trained
    with open_database(str(engine.url)).begin() as conn:
        conn.execute(Example.__table__.update().where(Example.track == "gate").values(status="rejected"))
    _store(engine, shuffled_train_answers(questions(12)), "gate")
    outcome = run_training(engine, _options(tiny_model, home))
    assert outcome.status == "rejected", outcome
    assert outcome.verdict["passed"] is False and outcome.verdict["compared_to"] == "gate/v1"
    registry = Registry(engine, home / "adapters")
    assert registry.get(outcome.adapter).status == AdapterStatus.rejected.value
    assert registry.active("gate").name == "gate/v1"


def test_too_few_examples_is_refused_with_the_count_needed(trained, tiny_model):
    engine, home, _ = trained
    outcome = run_training(engine, _options(tiny_model, home, min_examples=500))
    assert outcome.status == "failed" and "needs at least 500" in outcome.error
    assert get_run(engine, outcome.run_id).status == "failed"


def test_cancelled_run_registers_nothing(trained, tiny_model):
    engine, home, _ = trained
    before = [a.name for a in Registry(engine, home / "adapters").list("gate")]
    outcome = run_training(engine, _options(tiny_model, home), should_stop=lambda: True)
    assert outcome.status == "failed" and "cancelled" in outcome.error
    registry = Registry(engine, home / "adapters")
    assert [a.name for a in registry.list("gate")] == before and registry.active("gate").name == "gate/v1"
    assert not list((home / "adapters" / "gate").glob(".run-*"))


def test_killed_run_leaves_no_adapter_and_the_active_one_unchanged(trained, tiny_model, tmp_path):
    engine, home, _ = trained
    before = [a.name for a in Registry(engine, home / "adapters").list("gate")]
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from finetune.config import TrainConfig
        from finetune.pipeline import TrainOptions, run_training
        from storage.db import open_database
        engine = open_database({str(engine.url)!r})
        run_training(engine, TrainOptions(base_model={tiny_model!r}, adapters_dir={str(home / "adapters")!r},
            track="gate", min_examples=20, heartbeat_every=0.2,
            train=TrainConfig(max_steps=100000, batch_size=8, max_length=96, qlora=False,
                              progress_bar=False)))
    """)
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        while not list((home / "adapters" / "gate").glob(".run-*/adapter.work")):
            assert proc.poll() is None and time.monotonic() < deadline, "the training run never started"
            time.sleep(0.2)
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    registry = Registry(engine, home / "adapters")
    assert [a.name for a in registry.list("gate")] == before
    assert registry.active("gate").name == "gate/v1"
    from datetime import timedelta

    from storage.runs import finish_run, stale_runs

    time.sleep(0.5)
    stale = stale_runs(engine, timedelta(seconds=0.3))
    assert len(stale) == 1 and stale[0].status == "running"
    finish_run(engine, stale[0].id, "failed", error="heartbeat lost")
    # the next run of the track sweeps the dead run's work folder
    registry.clean_work_folders("gate")
    assert not list((home / "adapters" / "gate").glob(".run-*"))


def test_registry_transitions_and_hot_swap(trained, tiny_model, tmp_path):
    engine, home, _ = trained
    registry = Registry(engine, home / "adapters")
    chat = ChatModel.load(tiny_model)
    watcher = AdapterWatcher(engine, chat, keep_loaded=0, preload_candidates=False)
    swaps = watcher.refresh()
    assert [(s.track, s.old, s.new) for s in swaps] == [("gate", None, "gate/v1")]
    assert watcher.refresh() == [] and watcher.adapter_for("gate") == "gate/v1"

    import shutil

    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy(Path(registry.get("gate/v1").path) / name, copy / name)
    rejected = registry.register(copy, track="gate", base_model=tiny_model, status="candidate")
    warm = AdapterWatcher(engine, ChatModel.load(tiny_model))
    warm.refresh()
    assert set(warm.chat_model.adapters) == {"gate/v1", rejected.name}  # the candidate is preloaded
    change = registry.activate(rejected.name, "U-ADMIN")
    assert change.previous == "gate/v1" and registry.get("gate/v1").status == "retired"
    assert [(s.old, s.new) for s in watcher.refresh()] == [("gate/v1", rejected.name)]
    assert list(chat.adapters) == [rejected.name]  # the old adapter was unloaded, the base never reloaded
    assert [(s.old, s.new) for s in warm.refresh()] == [("gate/v1", rejected.name)]
    assert set(warm.chat_model.adapters) == {"gate/v1", rejected.name}  # kept for a fast rollback

    change = registry.rollback("gate", "U-ADMIN")
    assert change.active == "gate/v1" and registry.get(rejected.name).status == "retired"
    watcher.refresh()
    assert watcher.adapter_for("gate") == "gate/v1"

    with pytest.raises(RegistryError, match="in service"):
        registry.discard("gate/v1", "U-ADMIN")
    registry.discard(rejected.name, "U-ADMIN")
    assert registry.get(rejected.name).status == "rejected"
    with pytest.raises(RegistryError, match="missing or incomplete"):
        registry.activate(rejected.name, "U-ADMIN")

    # rollback with no earlier version in service: the base model serves the track
    change = registry.rollback("gate", "U-ADMIN")
    assert change.active is None and change.previous == "gate/v1" and registry.active("gate") is None
    assert [(s.old, s.new) for s in watcher.refresh()] == [("gate/v1", None)]
    assert watcher.adapter_for("gate") is None and chat.adapters == {}
    with pytest.raises(RegistryError, match="nothing to roll back"):
        registry.rollback("gate", "U-ADMIN")
    registry.activate("gate/v1", "U-ADMIN")
    from storage.audit import list_events

    actions = [e.action for e in list_events(engine, limit=200)]
    assert {"adapter.register", "adapter.activate", "adapter.rollback", "adapter.discard"} <= set(actions)
