"""Observability: /metrics scraped after signed requests, the database's training metrics, the
metrics port of Socket Mode and the worker, and JSON logs carrying the Slack event id."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from bot import logs, metrics
from bot.slack import blocks as ui
from bot.slack.server import make_starlette
from storage.db import session_scope
from storage.interactions import recent_interactions
from storage.models import TrainingRun
from tests.bot.slack.conftest import SECRET
from tests.bot.slack.test_http import free_port, post
from tests.slack_fakes import form_body, signed_headers, template


def scrape(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of an exposition page, by (name, labels), read with prometheus-client's parser."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def http(slack):
    with TestClient(make_starlette(slack.app, slack.services, SECRET)) as client:
        yield client


def test_metrics_after_signed_requests(http, slack):
    metrics.watch_database(slack.engine)
    before = scrape(http.get("/metrics").text)
    body = json.dumps(slack.event(text="<@UAPPRENTI> How do I request holidays?"))
    assert post(http, body).status_code == 200
    slack.fake.wait_for("chat.stopStream")
    slack.settle()
    interaction = recent_interactions(slack.engine)[0]
    payload = template("block_actions_button.json")
    payload["actions"][0].update({"action_id": ui.VOTE_UP, "value": str(interaction.id), "block_id": "b"})
    payload["response_url"] = slack.fake.response_url("vote")
    raw = form_body(payload)
    assert http.post("/slack/events", content=raw, headers=signed_headers(SECRET, raw)).status_code == 200
    slack.settle()
    with session_scope(slack.engine) as session:
        session.add(TrainingRun(track="support", status="succeeded"))
        session.add(TrainingRun(track="support", status="rejected"))
        session.add(TrainingRun(track="support", status="rejected"))
    metrics._database._cached = (0.0, [])  # the collector caches for a few seconds

    response = http.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=")
    after = scrape(response.text)

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("apprenti_ack_seconds_count", kind="event") == 1
    assert grew("apprenti_ack_seconds_count", kind="block_actions") == 1
    assert value(after, "apprenti_ack_seconds_bucket", kind="event", le="3.0") >= 1
    assert grew("apprenti_answers_total", mode="prompt", adapter="base", outcome="ok") == 1
    assert grew("apprenti_answer_seconds_count", mode="prompt") == 1
    assert grew("apprenti_retrieval_total", result="miss") == 1  # auto mode, no document indexed
    assert grew("apprenti_feedback_total", vote="up") == 1
    assert value(after, "apprenti_queue_depth", queue="answers") == 0
    assert value(after, "apprenti_queue_depth", queue="events") == 0
    assert value(after, "apprenti_training_runs", track="support", status="rejected") == 2
    assert value(after, "apprenti_gate_verdicts", track="support", verdict="passed") == 1
    assert value(after, "apprenti_gate_verdicts", track="support", verdict="failed") == 2
    assert value(after, "process_resident_memory_bytes") > 0


def test_forged_requests_add_no_labels(http, slack):
    payload = {"type": "made_up_kind", "user": {"id": "U1"}}
    raw = form_body(payload)
    assert http.post("/slack/events", content=raw, headers=signed_headers("wrong", raw)).status_code == 401
    page = http.get("/metrics").text
    assert "made_up_kind" not in page and 'kind="other"' in page


def test_json_logs_carry_the_event_id_into_the_answer_thread(http, slack):
    from bot.slack.services import AnswerPool

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("apprenti.test.answer")
    logger.addHandler(handler)
    original = slack.llm.generate

    def generate(messages, track="default"):
        logger.warning("generating")  # in the answer pool's thread, three threads away from the request
        return original(messages, track)

    slack.llm.generate = generate
    try:
        assert (
            post(http, json.dumps(slack.event(event_id="EvJSON0001", text="<@UAPPRENTI> hello?"))).status_code
            == 200
        )
        slack.fake.wait_for("chat.stopStream")
        slack.settle()
        AnswerPool(1).submit(logger.warning, "outside any event").result()
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0]["message"] == "generating" and lines[0]["event_id"] == "EvJSON0001"
    assert lines[0]["level"] == "WARNING" and lines[0]["logger"] == "apprenti.test.answer"
    assert lines[1]["message"] == "outside any event" and "event_id" not in lines[1]


def test_the_metrics_port_serves_the_same_registry():
    port = free_port()
    assert metrics.serve_port(port, host="127.0.0.1")
    metrics.observe_ack("event", 0.012)
    page = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert value(scrape(page), "apprenti_ack_seconds_count", kind="event") >= 1
    assert not metrics.serve_port(port, host="127.0.0.1")  # taken: logged, not fatal


@pytest.mark.slow
def test_apprenti_worker_serves_metrics_and_logs_json(tmp_path):
    from storage.db import open_database

    home = tmp_path / "home"
    engine = open_database(f"sqlite:///{home / 'apprenti.db'}")
    with session_scope(engine) as session:
        session.add(TrainingRun(track="default", status="failed"))
    engine.dispose()
    port = free_port()
    env = {
        **os.environ,
        "APPRENTI_HOME": str(home),
        "APPRENTI_METRICS_PORT": str(port),
        "APPRENTI_LOG_FORMAT": "json",
        "APPRENTI_SCHEDULER_INTERVAL": "3600",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli.main", "worker"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stderr.read()
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).text
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the worker served no metrics in 60 s"
                time.sleep(0.3)
        assert value(scrape(page), "apprenti_training_runs", track="default", status="failed") == 1
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(r["logger"] == "apprenti.metrics" and str(port) in r["message"] for r in records), err
