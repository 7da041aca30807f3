"""A local stand-in for the Slack Web API: answers like Slack, records every call.

The offline demo drives the real Bolt app against it, and the tests use it as the network edge.

    with SlackStandIn() as slack:
        client = WebClient(token="xoxb-test", base_url=slack.api_url)
        ...
        slack.wait_for("chat.postMessage")
        slack.calls("chat.update")[0]["ts"]

Errors are injected per method: `slack.fail("chat.postMessage", "channel_not_found")`, or a rate
limit `slack.fail("chat.update", "ratelimited", status=429, headers={"Retry-After": "1"})`.
Request signing and body helpers build what Slack would send to the app.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode

BOT_USER = "UAPPRENTI"
BOT_ID = "BAPPRENTI"
TEAM = "T111"


# --- signing -------------------------------------------------------------------------------------
def signature(secret: str, timestamp: str, body: str) -> str:
    """x-slack-signature: v0= + HMAC-SHA256(secret, "v0:{timestamp}:{body}")."""
    digest = hmac.new(secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return f"v0={digest}"


def signed_headers(secret: str, body: str, *, timestamp: int | None = None, content_type: str | None = None,
                   retry: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    headers = {
        "content-type": content_type or ("application/json" if body.lstrip().startswith("{")
                                         else "application/x-www-form-urlencoded"),
        "x-slack-request-timestamp": ts,
        "x-slack-signature": signature(secret, ts, body),
    }
    if retry is not None:
        headers["x-slack-retry-num"] = str(retry)
        headers["x-slack-retry-reason"] = "http_timeout"
    return headers


# --- request bodies ---------------------------------------------------------------------------
def form_body(payload: dict) -> str:
    """An interactivity body as Slack sends it: payload=<url-encoded JSON>."""
    return urlencode({"payload": json.dumps(payload)})


def command_body(fields: dict) -> str:
    return urlencode(fields)


# --- the fake Web API ----------------------------------------------------------------------------
class SlackStandIn:
    def __init__(self):
        self._calls: list[dict[str, Any]] = []
        self._lock = threading.Condition()
        self._failures: dict[str, list[tuple[str, int, dict]]] = defaultdict(list)
        self._ts = itertools.count(1)
        self.groups: dict[str, list[str]] = {}
        self.socket_url: str | None = None  # what apps.connections.open hands out (Socket Mode)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.api_url = f"{self.base}/api/"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self) -> SlackStandIn:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- what tests read ---------------------------------------------------------------------------
    def response_url(self, name: str = "r") -> str:
        return f"{self.base}/response/{name}"

    def calls(self, method: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [c for c in self._calls if method is None or c["_method"] == method]

    def wait_for(self, method: str, count: int = 1, timeout: float = 15.0, where=None) -> list[dict[str, Any]]:
        """Wait until `count` calls of `method` (matching `where`) were made; fail the test otherwise."""
        def matching():
            return [c for c in self._calls if c["_method"] == method and (where is None or where(c))]

        with self._lock:
            if not self._lock.wait_for(lambda: len(matching()) >= count, timeout=timeout):
                raise AssertionError(f"expected {count} {method} call(s), got {len(matching())}: "
                                     f"{[c['_method'] for c in self._calls]}")
            return matching()

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()

    def fail(self, method: str, error: str, *, times: int = 1, status: int = 200,
             headers: dict[str, str] | None = None) -> None:
        """The next `times` calls of `method` fail with Slack's `error` (and HTTP status / headers)."""
        self._failures[method].extend([(error, status, headers or {})] * times)

    # --- how Slack answers -------------------------------------------------------------------------
    def next_ts(self) -> str:
        return f"1700000000.{next(self._ts):06d}"

    def answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        channel = args.get("channel")
        if method == "auth.test":
            return {"ok": True, "url": "https://example.slack.com/", "team": "Example", "user": "apprenti",
                    "team_id": TEAM, "user_id": BOT_USER, "bot_id": BOT_ID}
        if method in ("chat.postMessage", "chat.update"):
            ts = args.get("ts") or self.next_ts()
            return {"ok": True, "channel": channel, "ts": ts,
                    "message": {"text": args.get("text"), "ts": ts, "bot_id": BOT_ID}}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": self.next_ts()}
        if method in ("views.open", "views.publish", "views.update"):
            return {"ok": True, "view": {"id": "V" + self.next_ts().replace(".", "")}}
        if method == "usergroups.users.list":
            group = args.get("usergroup")
            if group not in self.groups:
                return {"ok": False, "error": "no_such_subteam"}
            return {"ok": True, "users": self.groups[group]}
        if method == "apps.connections.open":
            if not self.socket_url:
                return {"ok": False, "error": "no_socket_server"}
            return {"ok": True, "url": self.socket_url}
        if method == "conversations.open":
            return {"ok": True, "channel": {"id": "D" + str(args.get("users", "X"))[1:]}}
        if method == "files.getUploadURLExternal":
            return {"ok": True, "upload_url": f"{self.base}/upload/F1", "file_id": "F1"}
        if method == "files.completeUploadExternal":
            return {"ok": True, "files": [{"id": "F1", "title": args.get("files")}]}
        return {"ok": True}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _reply(self, status: int, data: Any, headers: dict | None = None) -> None:
                raw = json.dumps(data).encode() if not isinstance(data, bytes) else data
                self.send_response(status)
                self.send_header("content-type", "application/json; charset=utf-8")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                ctype = self.headers.get("content-type", "")
                if "json" in ctype:
                    try:
                        args = json.loads(raw or b"{}")
                    except ValueError:
                        args = {"_raw": raw.decode("utf-8", "replace")}
                elif "form" in ctype:
                    args = dict(parse_qsl(raw.decode()))
                    for key in ("blocks", "view", "prompts", "files"):
                        if isinstance(args.get(key), str) and args[key][:1] in "[{":
                            args[key] = json.loads(args[key])
                else:
                    args = {"_bytes": len(raw)}
                path, _, query = self.path.partition("?")
                if query and isinstance(args, dict):
                    args = {**dict(parse_qsl(query)), **args}
                if path.startswith("/api/"):
                    method = path[len("/api/"):]
                elif path.startswith("/response/"):
                    method = "response_url"
                    args["_url"] = path
                elif path.startswith("/upload/"):
                    method = "file.upload"
                else:
                    self._reply(404, {"ok": False, "error": "unknown_path"})
                    return
                args["_method"] = method
                args["_auth"] = self.headers.get("authorization")
                with fake._lock:
                    failure = fake._failures[method].pop(0) if fake._failures.get(method) else None
                if failure:
                    error, status, headers = failure
                    with fake._lock:
                        fake._calls.append({**args, "_error": error})
                        fake._lock.notify_all()
                    self._reply(status, {"ok": False, "error": error}, headers)
                    return
                if method in ("response_url", "file.upload"):
                    response: Any = b"ok"
                else:
                    response = fake.answer(method, args)
                with fake._lock:
                    fake._calls.append({**args, "_response": response})
                    fake._lock.notify_all()
                self._reply(200, response)

            do_GET = do_POST

        return Handler
