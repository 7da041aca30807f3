"""The durable event queue through the real Bolt app: two apps (replicas) on one database, events
sent over HTTP (the early-ack path) and straight to Bolt (the Socket Mode path)."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from starlette.testclient import TestClient

from bot.slack.server import make_starlette
from storage.events import enqueue_event, get_event
from tests.bot.slack.conftest import SECRET, FakeLLM, make_harness
from tests.slack_fakes import signed_headers


def post_event(client, body: dict, retry: int | None = None):
    raw = json.dumps(body)
    return client.post("/slack/events", content=raw, headers=signed_headers(SECRET, raw, retry=retry))


def wait_status(engine, event_id: str, status: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while (row := get_event(engine, event_id)) is None or row.status != status:
        assert time.monotonic() < deadline, f"event {event_id} is {row and row.status}, not {status}"
        time.sleep(0.05)
    return row


@pytest.fixture
def replica_b(fake_slack, slack, tmp_path):
    """A second app sharing the first one's database, as a second replica does."""
    harness = make_harness(fake_slack, tmp_path / "b", database_url=slack.runtime.settings.database_url)
    yield harness
    harness.close()


def test_an_event_is_queued_before_the_ack_and_done_only_once_answered(slack):
    slack.llm.delay = 1.0  # the answer takes a while after the ack
    body = slack.event(text="<@UAPPRENTI> what is the VPN address?")
    with TestClient(make_starlette(slack.app, slack.services, SECRET)) as client:
        assert post_event(client, body).status_code == 200
        row = get_event(slack.engine, body["event_id"])
        assert row is not None and row.holder == slack.services.event_queue.holder
        assert row.status == "queued"  # acknowledged, not yet answered
        slack.fake.wait_for("chat.stopStream")
        row = wait_status(slack.engine, body["event_id"], "done")
        assert row.attempts == 1
        assert slack.services.event_queue.held == 0


def test_a_retry_on_the_other_replica_never_answers_twice(slack, replica_b):
    slack.llm.delay = 0.5
    body = slack.event(text="<@UAPPRENTI> answer me once")
    with (
        TestClient(make_starlette(slack.app, slack.services, SECRET)) as a,
        TestClient(make_starlette(replica_b.app, replica_b.services, SECRET)) as b,
    ):
        assert post_event(a, body).status_code == 200
        assert post_event(b, body, retry=1).status_code == 200  # while A is still answering
        wait_status(slack.engine, body["event_id"], "done")
        assert post_event(b, body, retry=2).status_code == 200  # after A answered
        slack.settle()
        replica_b.settle()
    assert len(slack.fake.calls("chat.stopStream")) == 1
    assert replica_b.llm.calls == [] and len(slack.llm.calls) == 1


def test_the_other_replica_answers_what_a_dead_one_had_claimed(slack, replica_b):
    """Replica A wrote the event and died before answering: B's poller answers it, once."""
    body = slack.event(text="<@UAPPRENTI> are you there?")
    enqueue_event(slack.engine, body["event_id"], json.dumps(body), "dead-replica", timedelta(seconds=-1))
    queue = replica_b.services.event_queue
    answered = []
    queue._dispatch = lambda event_id, raw: (
        answered.append(event_id) or queue.run(replica_b.app, event_id, raw)
    )
    assert queue.tick() == [body["event_id"]]
    assert queue.tick() == []  # B holds it now
    replica_b.fake.wait_for("chat.stopStream")
    row = wait_status(slack.engine, body["event_id"], "done")
    assert (row.holder, row.attempts) == (queue.holder, 2)
    # Slack's retry reaches A (restarted) afterwards: dropped
    assert slack.send_event(body, retry=1).status == 200
    slack.settle()
    replica_b.settle()
    assert len(slack.fake.calls("chat.stopStream")) == 1 and slack.llm.calls == []


@pytest.mark.parametrize("whole", [True, False])
def test_an_answer_the_dead_replica_posted_is_not_posted_again(slack, replica_b, whole):
    """Replica A streamed the answer and died before marking the event done. B takes the event over
    and reads the thread first: a whole answer there (its tail's blocks) is not given twice; a stream
    A left cut off is answered again."""
    body = slack.event(text="<@UAPPRENTI> was I answered?")
    event = body["event"]
    enqueue_event(slack.engine, body["event_id"], json.dumps(body), "dead-replica", timedelta(seconds=-1))
    client = slack.services.client
    started = client.chat_startStream(
        channel=event["channel"],
        thread_ts=event["ts"],
        recipient_user_id=event["user"],
        recipient_team_id=body["team_id"],
    )
    client.chat_appendStream(channel=event["channel"], ts=started["ts"], markdown_text="The VPN is")
    if whole:
        tail = [{"type": "context", "elements": [{"type": "mrkdwn", "text": "prompt · base model"}]}]
        client.chat_stopStream(channel=event["channel"], ts=started["ts"], blocks=tail)
    queue = replica_b.services.event_queue
    queue._dispatch = lambda event_id, raw: queue.run(replica_b.app, event_id, raw)
    assert queue.tick() == [body["event_id"]]
    row = wait_status(slack.engine, body["event_id"], "done")
    replica_b.settle()
    assert row.holder == queue.holder
    assert replica_b.fake.calls("conversations.replies")
    assert len(replica_b.llm.calls) == (0 if whole else 1)
    assert len(slack.fake.calls("chat.stopStream")) == 1  # A's whole answer, or B's after A's cut one


def test_another_apps_answer_in_the_thread_does_not_count_as_ours(slack, replica_b):
    """Replica A died before answering; another app (a bot with its own id) replied in the thread with
    blocks. B takes the event over and answers: only the app's own messages are a whole answer."""
    body = slack.event(text="<@UAPPRENTI> was I answered?")
    event = body["event"]
    enqueue_event(slack.engine, body["event_id"], json.dumps(body), "dead-replica", timedelta(seconds=-1))
    client = replica_b.services.client
    thread = client.conversations_replies

    def with_another_app(**kwargs):
        reply = thread(**kwargs)
        other = {
            "type": "message",
            "ts": str(float(event["ts"]) + 1),
            "text": "Ticket opened",
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "Ticket opened"}}],
            "bot_id": "BOTHERAPP",
            "user": "UOTHERAPP",
        }
        return {**reply.data, "messages": [*reply.data["messages"], other]}

    client.conversations_replies = with_another_app
    assert replica_b.services.identity == {"bot_id": "BAPPRENTI", "bot_user_id": "UAPPRENTI"}
    queue = replica_b.services.event_queue
    queue._dispatch = lambda event_id, raw: queue.run(replica_b.app, event_id, raw)
    assert queue.tick() == [body["event_id"]]
    wait_status(slack.engine, body["event_id"], "done")
    replica_b.settle()
    assert len(replica_b.llm.calls) == 1
    assert len(slack.fake.calls("chat.stopStream")) == 1


def test_a_claim_is_renewed_while_the_answer_takes_longer_than_the_lease(fake_slack, tmp_path):
    harness = make_harness(fake_slack, tmp_path, llm=FakeLLM(delay=3.0), event_lease=1.0)
    try:
        queue = harness.services.event_queue
        other = make_harness(fake_slack, tmp_path / "b", database_url=harness.runtime.settings.database_url)
        body = harness.event(text="<@UAPPRENTI> slow one")
        assert harness.send_event(body).status == 200  # straight to Bolt: queued by the middleware
        for _ in range(8):  # 4 s: past the 1 s lease, renewed by A's ticks; B finds nothing due
            time.sleep(0.5)
            queue.tick()
            assert other.services.event_queue.tick() == []
        wait_status(harness.engine, body["event_id"], "done")
        harness.settle()
        other.close()
        assert len(fake_slack.calls("chat.stopStream")) == 1
    finally:
        harness.close()


def test_an_event_that_answers_nothing_is_done_at_once(slack):
    body = slack.event("message_channel_event.json", text="people chatting", thread_ts=None)
    assert slack.send_event(body).status == 200
    slack.settle()
    wait_status(slack.engine, body["event_id"], "done", timeout=5)
    assert slack.fake.calls("chat.startStream") == []


def test_forged_or_stale_events_never_reach_the_queue(slack):
    body = slack.event(text="<@UAPPRENTI> let me in")
    raw = json.dumps(body)
    with TestClient(make_starlette(slack.app, slack.services, SECRET)) as client:
        forged = client.post("/slack/events", content=raw, headers=signed_headers("not-the-secret", raw))
        stale = client.post(
            "/slack/events",
            content=raw,
            headers=signed_headers(SECRET, raw, timestamp=int(time.time()) - 600),
        )
        assert (forged.status_code, stale.status_code) == (401, 401)
    assert (
        slack.send_event(body, secret="not-the-secret").status == 401
    )  # straight to Bolt (Socket Mode path)
    assert get_event(slack.engine, body["event_id"]) is None


def test_a_database_that_cannot_take_the_event_gets_slack_to_retry(slack):
    body = slack.event(text="<@UAPPRENTI> are you up?")
    queue = slack.services.event_queue
    real = queue.engine
    from sqlalchemy import create_engine

    queue.engine = create_engine("postgresql://nobody@127.0.0.1:1/none")  # unreachable
    try:
        with TestClient(make_starlette(slack.app, slack.services, SECRET)) as client:
            assert post_event(client, body).status_code == 503
    finally:
        queue.engine = real
    with TestClient(make_starlette(slack.app, slack.services, SECRET)) as client:
        assert post_event(client, body, retry=1).status_code == 200  # Slack's retry, the database back
    slack.fake.wait_for("chat.stopStream")
    wait_status(slack.engine, body["event_id"], "done")


def test_a_replica_that_lost_its_claim_while_stalled_does_not_answer_too(slack):
    """A stalled past its lease, B took the event over: when A's work resumes it leaves the answer to B."""
    from storage.events import claim_due
    from tests.storage.test_events import expire

    body = slack.event(text="<@UAPPRENTI> who answers me?")
    raw = json.dumps(body)
    queue = slack.services.event_queue
    assert queue.accept(body["event_id"], raw)
    expire(slack.engine, body["event_id"])
    assert claim_due(slack.engine, "replica-b", timedelta(seconds=30)) == [(body["event_id"], raw)]
    queue.tick()  # A's renewal finds the claim gone
    assert queue.lost(body["event_id"]) and queue.held == 0
    queue.run(slack.app, body["event_id"], raw)  # A's dispatch, late
    slack.settle()
    assert slack.llm.calls == [] and slack.fake.calls("chat.startStream") == []
    row = get_event(slack.engine, body["event_id"])
    assert (row.status, row.holder) == ("queued", "replica-b")  # B's to answer and finish
