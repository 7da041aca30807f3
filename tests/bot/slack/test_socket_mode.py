"""Socket Mode (the default): apps.connections.open on the fake Web API hands out a local WebSocket
server that sends Slack's real envelopes; the app acks each one and answers through the Web API."""

from __future__ import annotations

import json
import threading

import pytest
from websockets.sync.server import serve

from bot.slack.server import run_socket_mode
from storage.interactions import recent_interactions
from tests.slack_fakes import SLACK_DATA


def envelopes() -> dict[str, dict]:
    lines = [
        json.loads(line)
        for line in (SLACK_DATA / "socket_mode_envelopes.jsonl").read_text().splitlines()
        if line.strip()
    ]
    return {e["type"] if e["type"] != "events_api" else e["payload"]["event"]["type"]: e for e in lines}


@pytest.fixture
def socket_server():
    received: list[dict] = []
    config: dict = {}
    sent = threading.Event()
    done = threading.Event()
    chosen = envelopes()

    def handler(ws):
        ws.send(json.dumps(chosen["hello"]))
        mention = chosen["app_mention"]
        mention["payload"]["event"]["text"] = "<@U111> What is our VPN address?"
        ws.send(json.dumps(mention))
        ws.send(
            json.dumps(
                chosen["slash_commands"]
                | {
                    "payload": chosen["slash_commands"]["payload"]
                    | {"command": "/apprenti", "text": "help", "response_url": config["response_url"]}
                }
            )
        )
        sent.set()
        while not done.is_set():
            try:
                received.append(json.loads(ws.recv(timeout=0.2)))
            except TimeoutError:
                continue
            except Exception:  # noqa: BLE001 - the client went away
                return

    with serve(handler, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}/link", received, config
        done.set()
        server.shutdown()


def test_socket_mode_acks_envelopes_and_answers(slack, socket_server):
    url, received, config = socket_server
    slack.fake.socket_url = url
    config["response_url"] = slack.fake.response_url("socket-command")
    handler = run_socket_mode(slack.app, "xapp-test", block=False)
    try:
        update = slack.fake.wait_for("chat.stopStream", timeout=20)[0]
        assert "What is our VPN address?" in recent_interactions(slack.engine)[0].question
        assert update["channel"] == "C111"
        assert (
            "/apprenti ask" in slack.fake.wait_for("response_url", timeout=10)[0]["text"]
        )  # the command's answer
        chosen = envelopes()
        acked = {m.get("envelope_id") for m in received}
        for _ in range(50):
            if {chosen["app_mention"]["envelope_id"], chosen["slash_commands"]["envelope_id"]} <= acked:
                break
            threading.Event().wait(0.1)
            acked = {m.get("envelope_id") for m in received}
        assert chosen["app_mention"]["envelope_id"] in acked
        assert chosen["slash_commands"]["envelope_id"] in acked
    finally:
        handler.close()
