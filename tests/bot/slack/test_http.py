"""The HTTP face: Bolt's Starlette adapter in-process, and `apprenti serve --http` as a real process
answering with the tiny model over loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from bot.slack.server import make_starlette
from storage.interactions import recent_interactions
from tests.bot.slack.conftest import SECRET
from tests.slack_fakes import form_body, signed_headers, template

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def http(slack):
    with TestClient(make_starlette(slack.app, slack.services, SECRET)) as client:
        yield client


def post(client, body: str, **kwargs):
    return client.post("/slack/events", content=body.encode(), headers=signed_headers(SECRET, body, **kwargs))


def test_healthz(http):
    response = http.get("/healthz")
    assert response.status_code == 200 and response.json()["ok"] is True


def test_signed_event_over_http(http, slack):
    body = json.dumps(slack.event(text="<@UAPPRENTI> over http"))
    assert post(http, body).status_code == 200
    slack.fake.wait_for("chat.stopStream")


def test_url_verification(http):
    body = json.dumps({"token": "t", "challenge": "abc123", "type": "url_verification"})
    response = post(http, body)
    assert response.status_code == 200 and "abc123" in response.text


@pytest.mark.parametrize(
    "body",
    ['{"type": "event_callback", "event": ', "[1, 2]", "payload=%7Bnot-json", "payload=%5B%5D", "\xff"],
)
def test_malformed_bodies_get_400(http, slack, body):
    response = post(http, body)
    assert response.status_code == 400
    assert recent_interactions(slack.engine) == []


def test_forged_malformed_body_gets_401(http):
    body = '{"broken": '
    headers = signed_headers("wrong-secret", body)
    assert http.post("/slack/events", content=body, headers=headers).status_code == 401


def test_forged_and_stale_over_http(http, slack):
    body = form_body(template("block_actions_button.json"))
    assert http.post("/slack/events", content=body, headers=signed_headers("nope", body)).status_code == 401
    assert post(http, body, timestamp=int(time.time()) - 3600).status_code == 401
    assert (
        http.post(
            "/slack/events", content=body, headers={"content-type": "application/x-www-form-urlencoded"}
        ).status_code
        == 401
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_apprenti_serve_http_process(fake_slack, tiny_model_dir, tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "APPRENTI_HOME": str(tmp_path / "home"),
        "APPRENTI_BASE_MODEL": str(tiny_model_dir),
        "APPRENTI_MAX_NEW_TOKENS": "8",
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": fake_slack.api_url,
        "APPRENTI_REVIEW_CHANNEL": "CREVIEW",
        "APPRENTI_PLUGINS": "pii",
    }
    env.pop("SLACK_APP_TOKEN", None)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bot.cli.main",
            "serve",
            "--http",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-scheduler",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, process.stdout.read()
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "apprenti serve did not start in 90 s"
            time.sleep(0.3)
        body = template("app_mention_event.json")
        body["event"]["text"] = "<@UAPPRENTI> How do I request holidays?"
        raw = json.dumps(body)
        started = time.perf_counter()
        response = httpx.post(
            f"{base}/slack/events", content=raw, headers=signed_headers(SECRET, raw), timeout=10
        )
        ack_ms = (time.perf_counter() - started) * 1000
        assert response.status_code == 200
        assert ack_ms < 3000  # Slack's deadline; the model's work happens after the ack
        assert (
            httpx.post(
                f"{base}/slack/events", content=raw, headers=signed_headers(SECRET, raw, retry=1), timeout=10
            ).status_code
            == 200
        )
        stop = fake_slack.wait_for("chat.stopStream", timeout=60)[0]
        assert "mode *" in json.dumps(stop["blocks"]) and stop["channel"] == "C111"
        forged = httpx.post(
            f"{base}/slack/events", content=raw, headers=signed_headers("bad", raw), timeout=10
        )
        assert forged.status_code == 401
        time.sleep(0.5)
        assert len(fake_slack.calls("chat.stopStream")) == 1  # the retry was dropped
        # an event acknowledged just before shutdown is still answered: Slack will not send it again
        body["event_id"], body["event"]["ts"] = "EvLast", "1595926230.009700"
        last = json.dumps(body)
        assert (
            httpx.post(
                f"{base}/slack/events", content=last, headers=signed_headers(SECRET, last), timeout=10
            ).status_code
            == 200
        )
        process.terminate()
        process.wait(timeout=60)
        assert len(fake_slack.calls("chat.stopStream")) == 2
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    assert process.returncode in (0, -15), process.stdout.read()
