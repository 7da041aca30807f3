"""Faults and concurrency on the loopback cluster: two replicas, a worker, PostgreSQL and a Chroma
server, the tiny model answering, Slack's Web API stood in for at the network edge. The tests run in
file order on one cluster; the one that kills a replica comes last."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC

import pytest
from sqlmodel import select

from bot import messages as text
from bot.slack import blocks as ui
from bot.slack.standin import TEAM
from storage.db import session_scope
from storage.models import Adapter, Example, Interaction, SlackEvent, TrainingRun, Vote
from tests.cluster.conftest import LEASE, REVIEWERS, TRAIN_AT
from tests.cluster.traffic import CHANNEL, click, mention, replies, reply_counts, wait_answered

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

_ids = itertools.count(1)


def questions(n: int, prefix: str, text_: str = "How do I request holidays?") -> list[dict]:
    bodies = []
    for _ in range(n):
        i = next(_ids)
        bodies.append(mention(f"Ev{prefix}{i:05d}", f"1700{i:06d}.000100", f"{text_} ({prefix} {i})"))
    return bodies


def threads(bodies: list[dict]) -> list[str]:
    return [b["event"]["ts"] for b in bodies]


def ask(sender, standin, replica: int, question: str, *, timeout: float = 60) -> str:
    """One question through `replica`, waited for; returns its thread."""
    (body,) = questions(1, "Ask", question)
    assert sender.event(replica, body) == 200
    wait_answered(standin, threads([body]), timeout)
    return body["event"]["ts"]


def interaction_of(db, thread_ts: str) -> Interaction:
    with session_scope(db) as session:
        return session.exec(select(Interaction).where(Interaction.thread_ts == thread_ts)).one()


def event_rows(db, bodies: list[dict]) -> dict[str, SlackEvent]:
    ids = [b["event_id"] for b in bodies]
    with session_scope(db) as session:
        return {
            row.event_id: row for row in session.exec(select(SlackEvent).where(SlackEvent.event_id.in_(ids)))
        }


def test_events_on_both_replicas_each_retried_on_the_other_are_answered_once(cluster, sender, standin, db):
    bodies = questions(60, "Spread")
    sender.spread(bodies, retry_elsewhere=True, concurrency=10)
    assert [s.status for s in sender.sent] == [200] * 120
    wait_answered(standin, threads(bodies), timeout=180)
    time.sleep(2)  # time for a second answer, were one coming
    counts = reply_counts(standin, threads(bodies))
    assert sorted(set(counts.values())) == [1], {ts: n for ts, n in counts.items() if n != 1}
    rows = event_rows(db, bodies)
    assert {row.status for row in rows.values()} == {"done"} and len(rows) == 60
    assert {row.attempts for row in rows.values()} == {1}
    assert len({row.holder for row in rows.values()}) == 2  # both replicas answered some


def test_fifty_people_voting_through_both_replicas_leave_fifty_votes(cluster, sender, standin, db):
    row = interaction_of(db, ask(sender, standin, 0, "What is the wifi password?"))
    people = [f"UVOTER{i:02d}" for i in range(50)]
    results: list[int] = []

    def vote(i: int, user: str):
        payload = click(user, ui.FEEDBACK, f"up:{row.id}", channel=CHANNEL, message_ts=row.thread_ts)
        payload["response_url"] = standin.response_url(f"vote-{user}")
        results.append(sender.action(i % 2, payload))

    voters = [threading.Thread(target=vote, args=(i, user)) for i, user in enumerate(people)]
    for voter in voters:
        voter.start()
    for voter in voters:
        voter.join(timeout=60)
    assert results == [200] * 50
    deadline = time.monotonic() + 20  # votes are written after the ack, by the listener threads
    while (
        len(
            standin_notes := [
                c
                for c in standin.calls("response_url")
                if c["_url"].startswith("/response/vote-") and c["_url"].split("-", 1)[1] in people
            ]
        )
        < 50
        and time.monotonic() < deadline
    ):
        time.sleep(0.2)
    assert len(standin_notes) == 50  # everyone was thanked
    with session_scope(db) as session:
        votes = session.exec(select(Vote).where(Vote.interaction_id == row.id)).all()
        summary = session.get(Interaction, row.id).votes
    assert sorted(v.user_id for v in votes) == people and {v.value for v in votes} == {1}
    assert len(summary) == 50


def correction_view(standin, sender, row: Interaction, user: str) -> dict:
    """The correction modal Apprenti opens when `user` clicks Correct under the answer."""
    before = len(standin.calls("views.open"))
    payload = click(user, ui.CORRECT, str(row.id), channel=CHANNEL, message_ts=row.thread_ts)
    assert sender.action(0, payload) == 200
    return standin.wait_for("views.open", count=before + 1)[-1]["view"]


def submission(view: dict, user: str, values: dict[str, str]) -> dict:
    return {
        "type": "view_submission",
        "team": {"id": TEAM, "domain": "example"},
        "user": {"id": user, "username": user.lower(), "team_id": TEAM},
        "api_app_id": "AAPPRENTI",
        "token": "verification-token",
        "trigger_id": f"trigger-{time.monotonic_ns()}",
        "view": {
            **view,
            "id": f"V{time.monotonic_ns()}",
            "team_id": TEAM,
            "state": {
                "values": {
                    block: {ui.INPUT_ACTION: {"type": "plain_text_input", "value": value}}
                    for block, value in values.items()
                }
            },
        },
    }


def concurrently(*calls) -> list:
    results: list = [None] * len(calls)

    def run(i, call):
        results[i] = call()

    workers = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    return results


def test_one_correction_sent_to_both_replicas_makes_one_example_and_two_approvals_approve_once(
    cluster, sender, standin, db
):
    row = interaction_of(db, ask(sender, standin, 1, "Who approves expenses?"))
    author = row.user_id
    view = correction_view(standin, sender, row, author)
    values = {
        ui.ANSWER_BLOCK: "Your manager approves expenses in the finance portal.",
        ui.NOTE_BLOCK: "wrong person",
    }
    posts_before = len([c for c in standin.calls("chat.postMessage") if c.get("channel") == "CREVIEW"])
    # The same submission reaching both replicas at once (a double click, a proxy's retry)
    results = concurrently(*(lambda r=r: sender.action(r, submission(view, author, values)) for r in (0, 1)))
    assert results == [200, 200]
    with session_scope(db) as session:
        examples = session.exec(select(Example).where(Example.interaction_id == row.id)).all()
    assert len(examples) == 1
    review_posts = [c for c in standin.calls("chat.postMessage") if c.get("channel") == "CREVIEW"]
    assert len(review_posts) - posts_before == 1
    example = examples[0]
    # Two reviewers approving it at the same moment, each through a different replica
    told = {user: standin.response_url(f"review-{user}-{example.id}") for user in REVIEWERS}

    def approve(replica: int, user: str):
        payload = click(user, ui.APPROVE, str(example.id), channel="CREVIEW", message_ts="1.1")
        payload["response_url"] = told[user]
        return sender.action(replica, payload)

    assert concurrently(lambda: approve(0, REVIEWERS[0]), lambda: approve(1, REVIEWERS[1])) == [200, 200]
    deadline = time.monotonic() + 30
    while True:
        notes = [
            c
            for c in standin.calls("response_url")
            if c["_url"] in {f"/response/review-{u}-{example.id}" for u in REVIEWERS}
        ]
        if len(notes) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    said = sorted(json.dumps(c.get("text")) for c in notes)
    done = text.SLACK_REVIEW_DONE.format(id=example.id, status="approved")
    already = text.SLACK_REVIEW_ALREADY.split("{status}")[0].format(id=example.id)
    assert sum(done in s for s in said) == 1 and sum(already in s for s in said) == 1, said
    with session_scope(db) as session:
        approved = session.get(Example, example.id)
    assert approved.status == "approved" and approved.reviewer_id in REVIEWERS


def ingest(cluster, folder) -> None:
    env = cluster.processes["bot-1"].env
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli.main", "ingest", str(folder), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def shown_text(standin, thread_ts: str) -> str:
    (reply,) = replies(standin, CHANNEL, thread_ts)
    return json.dumps(reply)


def test_chroma_stopped_answers_come_from_the_model_with_a_note_then_retrieval_resumes(
    cluster, sender, standin, tmp_path
):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "parking.md").write_text(
        "# Parking\n\nThe staff car park is level minus two; badges open the gate "
        "from 7 am to 9 pm. Visitors park on level minus one.\n"
    )
    ingest(cluster, docs)
    question = "Where is the staff car park and when does the gate open?"
    before = shown_text(standin, ask(sender, standin, 0, question))
    assert "parking.md" in before
    down_note = text.INDEX_DOWN.split("{")[0]
    chroma = cluster.processes["chroma"]
    chroma.stop()
    try:
        during = [shown_text(standin, ask(sender, standin, r, question)) for r in (0, 1)]
        for shown in during:
            assert down_note in shown and "parking.md" not in shown
    finally:
        cluster.restart("chroma", timeout=60)
    after = [shown_text(standin, ask(sender, standin, r, question)) for r in (0, 1)]
    for shown in after:
        assert "parking.md" in shown and down_note not in shown


def test_postgres_restarted_during_load_loses_nothing_slack_retries_and_answers_nothing_twice(
    cluster, sender, standin, db
):
    bodies = questions(30, "Restart")
    pending = list(enumerate(bodies))
    restart = threading.Thread(target=cluster.postgres.restart, kwargs={"down_for": 3.0})
    sent = 0
    deadline = time.monotonic() + 120
    while pending:  # as Slack does: anything not acknowledged with a 200 is sent again (to either replica)
        assert time.monotonic() < deadline, f"{len(pending)} events never acknowledged"
        i, body = pending.pop(0)
        retry = None if sent < len(bodies) else 1
        if sender.event(i % 2, body, retry=retry) != 200:
            pending.append((i + 1, body))
            time.sleep(0.2)
        sent += 1
        if sent == 10:
            restart.start()
    restart.join(timeout=60)
    refused = [s for s in sender.sent if s.status != 200]
    wait_answered(standin, threads(bodies), timeout=180)
    time.sleep(2)
    counts = reply_counts(standin, threads(bodies))
    assert sorted(set(counts.values())) == [1], {ts: n for ts, n in counts.items() if n != 1}
    deadline = time.monotonic() + 30
    while {row.status for row in event_rows(db, bodies).values()} != {"done"}:
        assert time.monotonic() < deadline, "events left unfinished after the restart"
        time.sleep(0.5)
    print(f"{len(refused)} request(s) refused while PostgreSQL was down, all retried")


def runs(db) -> list[TrainingRun]:
    with session_scope(db) as session:
        return list(session.exec(select(TrainingRun).order_by(TrainingRun.id)))


def active_adapters(db) -> list[str]:
    with session_scope(db) as session:
        return sorted(session.exec(select(Adapter.name).where(Adapter.status == "active")))


def wait_for(condition, what: str, timeout: float):
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"{what} within {timeout:.0f} s"
        time.sleep(0.3)
    return found


def kill_pid(pid: int | None) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, TypeError):
        pass


def import_approved(env: dict, folder, track: str, n: int, topic: str = "expense report") -> None:
    """`apprenti examples import --approved`: n behaviour pairs for `track` (enough to make it due)."""
    pairs = folder / f"pairs-{track}.jsonl"
    pairs.write_text(
        "".join(
            json.dumps(
                {
                    "instruction": f"How do I file {topic} {i}?",
                    "output": f"Open the finance portal, choose {topic.title()}, attach receipt {i}.",
                }
            )
            + "\n"
            for i in range(n)
        )
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot.cli.main",
            "examples",
            "import",
            str(pairs),
            "--format",
            "alpaca",
            "--approved",
            "--kind",
            "behaviour",
            "--track",
            track,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_two_workers_make_one_training_run_per_track_and_train_it(cluster, db, tmp_path, second_worker):
    """Two `apprenti worker` schedulers on one database, two tracks due at once: each track gets one
    run, trained to the end (an adapter registered), and no second run once it is done."""
    tracks = ("two-workers-a", "two-workers-b")
    env = cluster.processes["bot-1"].env
    with ThreadPoolExecutor(len(tracks)) as pool:  # both tracks due at the same moment
        for done in [
            pool.submit(import_approved, env, tmp_path, track, TRAIN_AT + 2, f"claim {track}")
            for track in tracks
        ]:
            done.result()

    def of_tracks() -> list[TrainingRun]:
        return [r for r in runs(db) if r.track in tracks]

    finished = ("succeeded", "rejected", "failed")
    wait_for(
        lambda: {r.track for r in of_tracks() if r.status in finished} == set(tracks),
        "a finished training run for both tracks",
        420,
    )
    time.sleep(8)  # four scheduler ticks of each worker: time for a second run, were one coming
    made = of_tracks()
    assert sorted(r.track for r in made) == sorted(tracks), [(r.id, r.track, r.status, r.error) for r in made]
    assert {r.status for r in made} <= {"succeeded", "rejected"}, [(r.id, r.status, r.error) for r in made]
    with session_scope(db) as session:
        adapters = {a.track: a for a in session.exec(select(Adapter).where(Adapter.track.in_(tracks)))}
    assert {t: adapters[t].run_id for t in tracks} == {r.track: r.id for r in made}
    assert all(r.adapter_name == adapters[r.track].name for r in made)
    assert second_worker.alive() and cluster.processes["worker"].alive()
    print(f"runs {[(r.id, r.track, r.status) for r in made]}, one per track, with two workers")


def test_the_worker_killed_during_training_fails_the_run_requeues_it_and_changes_no_adapter(
    cluster, db, tmp_path
):
    env = cluster.processes["bot-1"].env
    import_approved(env, tmp_path, "default", TRAIN_AT + 2)
    in_service = active_adapters(db)
    first = wait_for(
        lambda: next((r for r in runs(db) if r.status == "running" and r.worker_pid), None),
        "a training run started by the worker",
        120,
    )
    worker = cluster.processes["worker"]
    worker.signal(signal.SIGKILL)  # the worker's machine dies: the worker and its training process
    kill_pid(first.worker_pid)
    worker.popen.wait(timeout=10)
    cluster.restart("worker", timeout=120)
    failed = wait_for(
        lambda: next((r for r in runs(db) if r.id == first.id and r.status == "failed"), None),
        "the dead run marked failed",
        60,
    )
    assert "exited without finishing" in failed.error or "no heartbeat" in failed.error
    requeued = wait_for(
        lambda: [r for r in runs(db) if r.id > first.id and r.track == first.track], "a new run", 60
    )
    try:
        assert len(requeued) == 1 and requeued[0].status in ("queued", "running")
        assert active_adapters(db) == in_service  # nothing changed while the run failed
    finally:  # a training process lives in its own session: stop the re-queued one too
        wait_for(
            lambda: all(r.worker_pid or r.status not in ("queued", "running") for r in runs(db)),
            "the new run's process started",
            60,
        )
        for run in runs(db):
            if run.status in ("queued", "running"):
                kill_pid(run.worker_pid)


def make_adapter(base_dir, folder):
    """A LoRA adapter of the tiny model with random weights (so it changes the answers), as training
    leaves one."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(7)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    config = LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(folder)
    return folder


def test_an_activation_is_served_by_both_replicas_within_five_seconds(cluster, sender, standin, db, tmp_path):
    from finetune.registry import Registry

    env = cluster.processes["bot-1"].env
    registry = Registry(db, f"{env['APPRENTI_HOME']}/adapters")
    adapter = registry.register(
        make_adapter(cluster.model, tmp_path / "adapter"),
        track="default",
        base_model=cluster.model,
        status="candidate",
    )
    probes: list[tuple[int, float, str | None]] = []  # (replica, when the question was sent, adapter used)
    stop = threading.Event()

    def probe(replica: int):  # one question at a time through this replica, until stopped
        while not stop.is_set():
            (body,) = questions(1, f"Adapter{replica}")
            sent_at = time.time()
            assert sender.event(replica, body) == 200
            wait_answered(standin, threads([body]), 60)
            probes.append((replica, sent_at, interaction_of(db, body["event"]["ts"]).adapter_version))

    probers = [threading.Thread(target=probe, args=(r,), daemon=True) for r in (0, 1)]
    for prober in probers:
        prober.start()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bot.cli.main", "adapters", "activate", adapter.name, "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        wait_for(
            lambda: {r for r, _, used in probes if used == adapter.name} == {0, 1},
            f"both replicas serving {adapter.name}",
            30,
        )
    finally:
        stop.set()
        for prober in probers:
            prober.join(timeout=60)
    activated_at = registry.get(adapter.name).activated_at
    activated = (activated_at if activated_at.tzinfo else activated_at.replace(tzinfo=UTC)).timestamp()
    served_after = {
        r: min(at for rr, at, used in probes if rr == r and used == adapter.name) - activated for r in (0, 1)
    }
    # every question sent more than 5 s after the activation was answered with it, on both replicas
    assert all(used == adapter.name for _, at, used in probes if at > activated + 5), probes
    assert max(served_after.values()) <= 5.0, served_after
    print(
        f"{adapter.name} served by replica 1 from {served_after[0]:.1f} s, "
        f"replica 2 from {served_after[1]:.1f} s "
        "after the activation (first question sent then that got it)"
    )


def test_a_replica_killed_right_after_acknowledging_leaves_every_question_to_the_other(
    cluster, sender, standin, db
):
    bodies = questions(20, "Kill")
    acks = concurrently(*(lambda b=b: sender.event(0, b) for b in bodies))  # all to bot-1; Slack retries none
    cluster.processes["bot-1"].signal(signal.SIGKILL)
    killed = time.monotonic()
    assert acks == [200] * 20
    answered_before = sum(1 for n in reply_counts(standin, threads(bodies)).values() if n)
    took = wait_answered(standin, threads(bodies), timeout=60)
    assert time.monotonic() - killed < 60
    time.sleep(2)
    counts = reply_counts(standin, threads(bodies))
    assert sorted(set(counts.values())) == [1], {ts: n for ts, n in counts.items() if n != 1}
    rows = event_rows(db, bodies)
    assert {row.status for row in rows.values()} == {"done"}
    taken_over = [row for row in rows.values() if row.attempts == 2]
    assert len(taken_over) == 20 - answered_before
    assert len({row.holder for row in taken_over}) == 1
    print(
        f"bot-1 answered {answered_before} before it died; bot-2 answered {len(taken_over)}, "
        f"the last {took:.1f} s after the kill (claims last {LEASE} s)"
    )
