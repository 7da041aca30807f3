"""The learning loop end to end, as people live it in Slack, with the real pieces: signed requests to
the real Bolt app, a real tiny model, SQLite, Chroma, the scheduler, the training subprocess."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from rich.console import Console

from bot.demo.run import ADMIN, EMPLOYEES, Demo
from storage.audit import list_events
from storage.db import open_database, session_scope
from storage.examples import add_example, review_example
from storage.models import Adapter, RunStatus
from storage.runs import get_run, list_runs

pytestmark = pytest.mark.slow


def test_corrections_train_an_adapter_that_serves_then_rolls_back(tmp_path):
    from finetune.tiny import make_tiny

    console = Console(file=io.StringIO(), width=120)
    # The demo's own loop on the tiny random model (the bundled model runs it in `make run`): it has no
    # general skills to keep (its general score is noise around 0.02), so the general-skills floor and
    # the leak rule are lifted and it trains harder to learn the template.
    tiny = make_tiny(tmp_path / "tiny", initializer_range=0.1)
    demo = Demo(
        tmp_path / "home",
        console,
        examples=16,
        timeout=600,
        base_model=str(tiny),
        train={
            "train_epochs": 25,
            "train_step_budget": 0,
            "train_learning_rate": 5e-3,
            "train_cpu_top_layers": 0,
            "gate_max_leak_rate": 1.0,
            "gate_general_ratio": 0.0,
            "train_replay_ratio": 0.0,
        },
    )
    result = demo.run()

    assert result["run"]["status"] == RunStatus.succeeded.value, console.file.getvalue()[-3000:]
    assert result["adapter"] == "default/v1"
    said = [(m["where"], m["who"], m["text"]) for m in result["transcript"]]
    answers = [
        text for where, who, text in said if who == "Apprenti" and where.startswith("#general (thread")
    ]
    assert "adapter *base model*" in answers[0]
    assert "*Sources*" in answers[0]  # the handbook was retrieved
    assert "adapter *default/v1*" in answers[2]  # served by the new adapter
    assert "adapter *base model*" in answers[-1]  # after the rollback
    admin_posts = " ".join(text for where, _, text in said if where == "#admin")
    assert "succeeded" in admin_posts and "token_f1" in admin_posts
    refused = [text for where, _, text in said if where == "#general (only you)"]
    assert refused and "admin" in refused[0]
    done = [text for where, _, text in said if where == "#admin (only you)"]
    assert "base model" in done[0] and "default/v1" in done[0]
    # Whether the adapter learns the template is measured on the bundled model (`make run`,
    # docs/benchmarks.md); the random model only proves the loop. After the rollback the base model answers
    # exactly as before.
    assert result["after_rollback"] == result["before"]

    engine = open_database(f"sqlite:///{tmp_path / 'home' / 'apprenti.db'}")
    actions = {(e.actor, e.action) for e in list_events(engine, limit=500)}
    assert (ADMIN, "adapter.rollback") in actions
    assert (EMPLOYEES[2], "slack.denied") in actions
    assert ("auto-promote", "adapter.activate") in actions


WORKER = """
import sys, time
from bot import scheduler
from bot.runtime import Runtime
runtime = Runtime()
scheduler.bind(runtime)
runtime.engine
time.sleep(max(0.0, float(sys.argv[1]) - time.time()))
print(scheduler.check_thresholds(), flush=True)
"""


def test_two_workers_race_one_run_and_a_killed_training_is_reaped(tmp_path, tiny_model_dir, monkeypatch):
    home = tmp_path / "home"
    env = {
        **os.environ,
        "APPRENTI_HOME": str(home),
        "APPRENTI_BASE_MODEL": str(tiny_model_dir),
        "APPRENTI_MIN_EXAMPLES": "4",
        "APPRENTI_TRAIN_THRESHOLD": "4",
        "APPRENTI_TRAIN_EPOCHS": "200",
        "APPRENTI_TRAIN_STEP_BUDGET": "0",
        "APPRENTI_TORCH_THREADS": "1",
        "APPRENTI_HEARTBEAT_TIMEOUT": "600",
    }
    for key, value in env.items():
        if key.startswith("APPRENTI_"):
            monkeypatch.setenv(key, value)
    home.mkdir(parents=True)
    engine = open_database(f"sqlite:///{home / 'apprenti.db'}")
    for i in range(6):
        example = add_example(engine, f"question {i}?", f"answer {i}.")
        review_example(engine, example.id, "approved", "R")
    with session_scope(engine) as session:
        session.add(
            Adapter(
                track="default",
                version=1,
                name="default/v1",
                base_model=str(tiny_model_dir),
                path=str(home / "adapters" / "missing"),
                status="active",
                example_ids=[],
            )
        )

    start = time.time() + 8  # both workers are imported and connected by then
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(start)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=120) for w in workers]
    started = [json.loads(out) for out, _ in outputs]
    assert sorted(len(s) for s in started) == [0, 1], outputs
    (run_id,) = [i for s in started for i in s]
    assert [r.id for r in list_runs(engine)] == [run_id]

    # The training process (its parent has exited) is killed outright mid-run.
    deadline = time.monotonic() + 120
    while (run := get_run(engine, run_id)).worker_pid is None or run.status != RunStatus.running.value:
        assert time.monotonic() < deadline, f"training never started: {run}"
        time.sleep(0.5)
    os.kill(run.worker_pid, signal.SIGKILL)
    time.sleep(1)

    from bot import scheduler
    from bot.runtime import Runtime

    scheduler.bind(Runtime())
    assert scheduler.reap_runs() == [run_id]
    reaped = get_run(engine, run_id)
    assert reaped.status == RunStatus.failed.value
    assert "exited without finishing" in reaped.error
    with session_scope(engine) as session:
        adapters = {a.name: a.status for a in session.query(Adapter)}
    assert adapters == {"default/v1": "active"}  # the adapter in service never changes on failure
