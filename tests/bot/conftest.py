"""A stand-in for an OpenAI-compatible server (vLLM): chat completions, streaming (SSE), the model
list and runtime LoRA loading and unloading, on 127.0.0.1 at a free port. It records every request,
and `restart()` forgets the adapters loaded at run time, as a restarted vLLM does."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class StandIn:
    def __init__(self):
        self.requests: list[dict] = []
        self.models = {"base-model"}
        self.reply = "Hello from the stand-in."
        self.delay = 0.0
        self.status = 200
        self.can_load_lora = True
        self.url = ""

    def restart(self) -> None:
        self.models = {"base-model"}

    def answer_for(self, body: dict) -> str:
        return f"{self.reply} [model={body.get('model')}]"


def _handler(standin: StandIn):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def handle(self):
            try:
                super().handle()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout tests): nothing to answer

        def _json(self, status, data):
            payload = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self):
            standin.requests.append({"path": self.path})
            if self.path == "/v1/models":
                return self._json(
                    200, {"object": "list", "data": [{"id": m, "object": "model"} for m in standin.models]}
                )
            self._json(404, {"error": {"message": "not found"}})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            standin.requests.append({"path": self.path, "body": body})
            if self.path == "/v1/load_lora_adapter":
                if not standin.can_load_lora:
                    return self._json(404, {"error": {"message": "runtime LoRA updating is disabled"}})
                if body["lora_name"] in standin.models:  # vLLM's answer to a second load
                    return self._json(
                        400,
                        {
                            "error": {
                                "message": f"The lora adapter '{body['lora_name']}' has already been loaded."
                            }
                        },
                    )
                standin.models.add(body["lora_name"])
                return self._json(200, {"status": "ok"})
            if self.path == "/v1/unload_lora_adapter":
                if body["lora_name"] not in standin.models:
                    return self._json(
                        404,
                        {"error": {"message": f"The lora adapter '{body['lora_name']}' cannot be found."}},
                    )
                standin.models.discard(body["lora_name"])
                return self._json(200, {"status": "ok"})
            if self.path != "/v1/chat/completions":
                return self._json(404, {"error": {"message": "not found"}})
            time.sleep(standin.delay)
            if standin.status != 200:
                return self._json(
                    standin.status, {"error": {"message": "overloaded", "type": "server_error"}}
                )
            if body.get("model") not in standin.models:
                return self._json(404, {"error": {"message": f"model {body.get('model')} does not exist"}})
            text = standin.answer_for(body)
            if not body.get("stream"):
                return self._json(
                    200,
                    {
                        "id": "cmpl-1",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": text},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16},
                    },
                )
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            words = text.split(" ")
            for i, word in enumerate(words):
                piece = word if i == 0 else " " + word
                chunk = {
                    "id": "cmpl-1",
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": body["model"],
                    "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
                }
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
            final = {
                "id": "cmpl-1",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            }
            usage = {
                "id": "cmpl-1",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": body["model"],
                "choices": [],
                "usage": {"prompt_tokens": 11, "completion_tokens": len(words), "total_tokens": 20},
            }
            self.wfile.write(
                f"data: {json.dumps(final)}\n\ndata: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode()
            )
            self.wfile.flush()

    return Handler


@pytest.fixture
def openai_standin():
    standin = StandIn()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(standin))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    standin.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield standin
    server.shutdown()
    server.server_close()
