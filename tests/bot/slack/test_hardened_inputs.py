"""Hostile inputs through the real app: oversized bodies are refused before they are buffered,
replayed signed requests are refused, and failures reach Slack as an error id (details in the log)."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.testclient import TestClient

from bot.slack import blocks as ui
from bot.slack.server import MAX_BODY, make_starlette, read_body
from storage.examples import add_example, get_example
from tests.bot.slack.conftest import AUDITOR, REVIEW_CHANNEL, REVIEWER, SECRET
from tests.slack_fakes import form_body, signed_headers, template


def streamed_request(chunks: int, size: int, headers: list | None = None):
    """A request whose body arrives in `chunks` pieces of `size` bytes; counts the pieces read."""
    read = [0]

    async def receive():
        read[0] += 1
        return {"type": "http.request", "body": b"x" * size, "more_body": read[0] < chunks}

    scope = {"type": "http", "method": "POST", "path": "/slack/events", "headers": headers or []}
    return Request(scope, receive), read


def test_a_body_over_the_limit_is_refused_while_streaming_without_reading_the_rest():
    request, read = streamed_request(chunks=1000, size=64 * 1024)  # 64 MB, no Content-Length
    assert asyncio.run(read_body(request)) is None
    assert read[0] == MAX_BODY // (64 * 1024) + 1  # stopped just past the limit, not at 1000


def test_a_declared_length_over_the_limit_is_refused_before_reading():
    request, read = streamed_request(chunks=1, size=10, headers=[(b"content-length", b"67108864")])
    assert asyncio.run(read_body(request)) is None and read[0] == 0


def test_an_oversized_unsigned_body_gets_413_over_http(slack):
    with TestClient(make_starlette(slack.app, slack.services, SECRET)) as client:
        response = client.post("/slack/events", content=b"x" * (MAX_BODY + 1))
        assert response.status_code == 413
        body = form_body(template("block_actions_button.json"))
        assert (
            client.post("/slack/events", content=body, headers=signed_headers(SECRET, body)).status_code
            == 200
        )


def test_a_replayed_slash_command_is_refused(slack):
    fields = template("slash_command.form.txt")
    fields.update(
        {
            "command": "/apprenti",
            "text": "help",
            "user_id": AUDITOR,
            "channel_id": "C111",
            "response_url": slack.fake.response_url("replay"),
        }
    )
    body = urlencode(fields)
    headers = signed_headers(SECRET, body)
    assert slack.dispatch(body, headers=headers).status == 200
    replay = slack.dispatch(body, headers=headers)
    slack.settle()
    assert replay.status == 401 and replay.body == "replayed request"
    assert len(slack.fake.calls("response_url")) == 1


def test_a_replayed_click_is_refused(slack):
    example = add_example(slack.engine, "q?", "a.", author_id="UAUTHOR")
    payload = template("block_actions_button.json")
    payload["user"]["id"] = REVIEWER
    payload["channel"]["id"] = REVIEW_CHANNEL
    payload["response_url"] = slack.fake.response_url("click")
    payload["actions"][0].update({"action_id": ui.REJECT, "value": str(example.id)})
    body = form_body(payload)
    headers = signed_headers(SECRET, body)
    assert slack.dispatch(body, headers=headers).status == 200
    slack.settle()
    assert get_example(slack.engine, example.id).status == "rejected"
    assert slack.dispatch(body, headers=headers).status == 401


def test_a_failing_command_shows_an_error_id_and_logs_the_details(slack, monkeypatch, caplog):
    statement = "SELECT question FROM interaction WHERE user_id = 'UPRIVATE'"

    def broken(engine, limit=20):
        raise RuntimeError(statement)

    monkeypatch.setattr("bot.slack.reports.audit_text", broken)
    slack.command("audit", user=AUDITOR)
    slack.settle()
    reply = slack.fake.wait_for("response_url")[0]["text"]
    assert "SELECT" not in reply and "UPRIVATE" not in reply
    error_id = reply.split("error id `")[1].split("`")[0]
    assert f"[error {error_id}]" in caplog.text and statement in caplog.text


def test_a_crash_while_answering_shows_an_error_id(slack, monkeypatch, caplog):
    class Broken:
        def answer(self, *args, **kwargs):
            raise RuntimeError("sqlite3.OperationalError: SELECT * FROM example WHERE author_id='UX'")

    monkeypatch.setattr("bot.slack.asking.assistant_for", lambda services, q: Broken())
    slack.send_event(slack.event(text="<@UAPPRENTI> anything"))
    slack.settle()
    shown = json.dumps(slack.fake.calls())
    assert "OperationalError" not in shown and "error id `" in shown
    assert "OperationalError" in caplog.text
