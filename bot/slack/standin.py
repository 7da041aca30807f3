"""A local stand-in for the Slack Web API: answers like Slack, records every call.

The offline demo drives the real Bolt app against it, and the tests use it as the network edge.

    with SlackStandIn() as slack:
        client = WebClient(token="xoxb-test", base_url=slack.api_url)
        ...
        slack.wait_for("chat.postMessage")
        slack.calls("chat.update")[0]["ts"]

`chat.delete` removes a message from the transcript (`message_not_found` for one it does not hold);
Slack's refusals are injected like any error, e.g. `slack.fail("chat.delete", "cant_delete_message")`.

Errors are injected per method: `slack.fail("chat.postMessage", "channel_not_found")`, or a rate
limit `slack.fail("chat.update", "ratelimited", status=429, headers={"Retry-After": "1"})`.
Request signing and body helpers build what Slack would send to the app.

Streaming (Slack's agent experience) works as Slack does: `chat.startStream` opens a message in a
thread (in a channel it needs `recipient_user_id` and `recipient_team_id`), `chat.appendStream` adds
`markdown_text` or `markdown_text` chunks to it, `chat.stopStream` adds the last text and its
`blocks` and closes it; appending to a closed stream fails with `message_not_in_streaming_state`,
text over 12,000 characters in one message with `msg_too_long`. What a person sees is read with:

    slack.streams()                       # every streamed message: channel, thread_ts, ts, text,
                                          # blocks (from stopStream), stopped, appends (call count)
    slack.messages(channel, thread_ts)    # the transcript: every message posted, streamed or
                                          # ephemeral, in order, with chat.update edits applied;
                                          # each {channel, thread_ts, ts, text, blocks, streamed,
                                          # ephemeral, user}; a streamed one shows its Markdown as
                                          # a `markdown` block followed by its stop blocks
    final_message(slack, channel, thread_ts)   # the last of them in a thread
    message_text(message)                 # its text as a person reads it
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


def signed_headers(
    secret: str,
    body: str,
    *,
    timestamp: int | None = None,
    content_type: str | None = None,
    retry: int | None = None,
) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    headers = {
        "content-type": content_type
        or ("application/json" if body.lstrip().startswith("{") else "application/x-www-form-urlencoded"),
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
        self._posted: list[dict[str, Any]] = []  # the transcript, in order (see messages())
        self._by_ts: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, list[str]] = {}
        self.socket_url: str | None = None  # what apps.connections.open hands out (Socket Mode)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.api_url = f"{self.base}/api/"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

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

    def wait_for(
        self, method: str, count: int = 1, timeout: float = 15.0, where=None
    ) -> list[dict[str, Any]]:
        """Wait until `count` calls of `method` (matching `where`) were made; fail the test otherwise."""

        def matching():
            return [c for c in self._calls if c["_method"] == method and (where is None or where(c))]

        with self._lock:
            if not self._lock.wait_for(lambda: len(matching()) >= count, timeout=timeout):
                raise AssertionError(
                    f"expected {count} {method} call(s), got {len(matching())}: "
                    f"{[c['_method'] for c in self._calls]}"
                )
            return matching()

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self._posted.clear()
            self._by_ts.clear()

    def streams(self) -> list[dict[str, Any]]:
        """Every streamed message (a copy), in the order they were started."""
        with self._lock:
            return [dict(m) for m in self._posted if m["streamed"]]

    def messages(self, channel: str | None = None, thread_ts: str | None = None) -> list[dict[str, Any]]:
        """What people see: every message the app posted, in order, as it reads now."""
        with self._lock:
            found = [
                m
                for m in self._posted
                if (channel is None or m["channel"] == channel)
                and (thread_ts is None or m["thread_ts"] == thread_ts)
            ]
            return [shown(m) for m in found]

    def fail(
        self,
        method: str,
        error: str,
        *,
        times: int = 1,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> None:
        """The next `times` calls of `method` fail with Slack's `error` (and HTTP status / headers)."""
        self._failures[method].extend([(error, status, headers or {})] * times)

    # --- how Slack answers -------------------------------------------------------------------------
    def next_ts(self) -> str:
        return f"1700000000.{next(self._ts):06d}"

    def _post(
        self, args: dict[str, Any], *, streamed: bool = False, ephemeral: bool = False
    ) -> dict[str, Any]:
        message = {
            "channel": args.get("channel"),
            "thread_ts": args.get("thread_ts"),
            "ts": self.next_ts(),
            "text": args.get("text") or "",
            "blocks": args.get("blocks") or [],
            "streamed": streamed,
            "ephemeral": ephemeral,
            "user": args.get("user") or args.get("recipient_user_id"),
            "stopped": not streamed,
            "appends": 0,
        }
        with self._lock:
            self._posted.append(message)
            self._by_ts[message["ts"]] = message
        return message

    def _stream(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        added = (args.get("markdown_text") or "") + "".join(
            c.get("text") or "" for c in args.get("chunks") or [] if c.get("type") == "markdown_text"
        )
        if len(added) > 12_000:
            return {"ok": False, "error": "msg_too_long"}
        channel = args.get("channel")
        if method == "chat.startStream":
            if not args.get("thread_ts"):
                return {"ok": False, "error": "invalid_thread_ts"}
            if not str(channel).startswith("D"):
                for needed in ("recipient_user_id", "recipient_team_id"):
                    if not args.get(needed):
                        return {"ok": False, "error": f"missing_{needed}"}
            message = self._post({**args, "text": ""}, streamed=True)
        else:
            with self._lock:
                message = self._by_ts.get(args.get("ts"))
            if message is None or not message["streamed"] or message["channel"] != channel:
                return {"ok": False, "error": "message_not_found"}
            if message["stopped"]:
                return {"ok": False, "error": "message_not_in_streaming_state"}
        with self._lock:
            if len(message["text"]) + len(added) > 12_000:
                return {"ok": False, "error": "msg_too_long"}
            message["text"] += added
            message["appends"] += method == "chat.appendStream"
            if method == "chat.stopStream":
                message["stopped"] = True
                message["blocks"] = args.get("blocks") or []
        return {"ok": True, "channel": channel, "ts": message["ts"]}

    def answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        channel = args.get("channel")
        if method in ("chat.startStream", "chat.appendStream", "chat.stopStream"):
            return self._stream(method, args)
        if method == "chat.postMessage":
            ts = self._post(args)["ts"]
            return {
                "ok": True,
                "channel": channel,
                "ts": ts,
                "message": {"text": args.get("text"), "ts": ts, "bot_id": BOT_ID},
            }
        if method == "chat.update":
            with self._lock:
                message = self._by_ts.get(args.get("ts"))
                if message is not None:
                    message["text"], message["blocks"] = args.get("text") or "", args.get("blocks") or []
                    message["streamed"] = False  # what is shown now is the edit
        if method == "chat.delete":
            # Slack refuses to delete a message it does not know, or in another channel.
            with self._lock:
                message = self._by_ts.get(args.get("ts"))
                if message is None or message["channel"] != channel:
                    return {"ok": False, "error": "message_not_found"}
                self._posted.remove(message)
                del self._by_ts[message["ts"]]
            return {"ok": True, "channel": channel, "ts": message["ts"]}
        if method == "auth.test":
            return {
                "ok": True,
                "url": "https://example.slack.com/",
                "team": "Example",
                "user": "apprenti",
                "team_id": TEAM,
                "user_id": BOT_USER,
                "bot_id": BOT_ID,
            }
            ts = args.get("ts")
            return {
                "ok": True,
                "channel": channel,
                "ts": ts,
                "message": {"text": args.get("text"), "ts": ts, "bot_id": BOT_ID},
            }
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": self._post(args, ephemeral=True)["ts"]}
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
        if method == "conversations.replies":
            # The thread as Slack returns it: the app's messages in it, oldest first (no parent here).
            with self._lock:
                replies = [
                    {
                        "type": "message",
                        "ts": m["ts"],
                        "thread_ts": m["thread_ts"],
                        "text": m.get("text") or "",
                        "blocks": m.get("blocks") or [],
                        "bot_id": BOT_ID,
                    }
                    for m in self._posted
                    if m["channel"] == channel and m["thread_ts"] == args.get("ts") and not m["ephemeral"]
                ]
            return {"ok": True, "messages": replies, "has_more": False}
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
                if self.path.startswith("/upload/"):  # a file's bytes, whatever the content type says
                    args = {"_bytes": len(raw)}
                elif "json" in ctype:
                    try:
                        args = json.loads(raw or b"{}")
                    except ValueError:
                        args = {"_raw": raw.decode("utf-8", "replace")}
                elif "form" in ctype:
                    args = dict(parse_qsl(raw.decode("utf-8", "replace")))
                    for key in ("blocks", "view", "prompts", "files", "chunks", "loading_messages"):
                        if isinstance(args.get(key), str) and args[key][:1] in "[{":
                            args[key] = json.loads(args[key])
                else:
                    args = {"_bytes": len(raw)}
                path, _, query = self.path.partition("?")
                if query and isinstance(args, dict):
                    args = {**dict(parse_qsl(query)), **args}
                if path.startswith("/api/"):
                    method = path[len("/api/") :]
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


# --- people in Slack: signed requests to the real Bolt app -----------------------------------------
class SlackPeople:
    """What people do in Slack, sent to the Bolt app as Slack sends it: signed Events API envelopes,
    interactivity payloads and slash commands. Replies land in the stand-in's recorded calls."""

    def __init__(self, app, standin: SlackStandIn, signing_secret: str, team: str = TEAM):
        self.app, self.standin, self.secret, self.team = app, standin, signing_secret, team
        self._ids = itertools.count(1)

    def dispatch(self, body: str):
        from slack_bolt import BoltRequest

        response = self.app.dispatch(BoltRequest(body=body, headers=signed_headers(self.secret, body)))
        if response.status >= 400:
            raise RuntimeError(f"the app answered {response.status}: {response.body}")
        return response

    def mention(self, user: str, channel: str, text: str) -> str:
        """`@apprenti text` in a channel; returns the message's ts (the thread the answer goes to)."""
        n = next(self._ids)
        ts = f"1700001000.{n:06d}"
        body = {
            "token": "verification-token",
            "team_id": self.team,
            "api_app_id": "AAPPRENTI",
            "type": "event_callback",
            "event_id": f"EvDEMO{n:06d}",
            "event_time": int(time.time()),
            "authorizations": [
                {"enterprise_id": None, "team_id": self.team, "user_id": BOT_USER, "is_bot": True}
            ],
            "event": {
                "type": "app_mention",
                "user": user,
                "text": f"<@{BOT_USER}> {text}",
                "ts": ts,
                "channel": channel,
                "event_ts": ts,
            },
        }
        self.dispatch(json.dumps(body))
        return ts

    def click(
        self,
        user: str,
        action_id: str,
        value: str,
        *,
        channel: str,
        message_ts: str,
        message: dict | None = None,
    ):
        payload = {
            "type": "block_actions",
            "team": {"id": self.team, "domain": "example"},
            "user": {"id": user, "username": user.lower(), "team_id": self.team},
            "api_app_id": "AAPPRENTI",
            "token": "verification-token",
            "trigger_id": f"trigger-{next(self._ids)}",
            "container": {
                "type": "message",
                "message_ts": message_ts,
                "channel_id": channel,
                "is_ephemeral": False,
            },
            "channel": {"id": channel, "name": channel.lower()},
            "message": message or {"type": "message", "ts": message_ts, "bot_id": BOT_ID},
            "response_url": self.standin.response_url(f"action-{user}"),
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": "b",
                    "value": value,
                    "action_ts": str(time.time()),
                }
            ],
        }
        return self.dispatch(form_body(payload))

    def submit(
        self, user: str, view: dict, values: dict[str, str | None], choices: dict[str, str] | None = None
    ):
        """Submit a modal the app opened (the `view` it sent to views.open), typing `values` per block
        and picking `choices` (block -> option value) in its radio buttons."""
        from bot.slack.blocks import INPUT_ACTION

        state = {
            block: {INPUT_ACTION: {"type": "plain_text_input", "value": value}}
            for block, value in values.items()
        }
        state |= {
            block: {INPUT_ACTION: {"type": "radio_buttons", "selected_option": {"value": option}}}
            for block, option in (choices or {}).items()
        }
        payload = {
            "type": "view_submission",
            "team": {"id": self.team, "domain": "example"},
            "user": {"id": user, "username": user.lower(), "team_id": self.team},
            "api_app_id": "AAPPRENTI",
            "token": "verification-token",
            "trigger_id": f"trigger-{next(self._ids)}",
            "view": {
                **view,
                "id": f"VDEMO{next(self._ids)}",
                "team_id": self.team,
                "state": {"values": state},
            },
        }
        return self.dispatch(form_body(payload))

    def command(self, user: str, channel: str, text: str):
        fields = {
            "token": "verification-token",
            "team_id": self.team,
            "team_domain": "example",
            "channel_id": channel,
            "channel_name": channel.lower(),
            "user_id": user,
            "user_name": user.lower(),
            "command": "/apprenti",
            "text": text,
            "api_app_id": "AAPPRENTI",
            "response_url": self.standin.response_url(f"command-{user}"),
            "trigger_id": f"t{next(self._ids)}",
        }
        return self.dispatch(command_body(fields))


def shown(message: dict[str, Any]) -> dict[str, Any]:
    """A transcript entry as a person sees it: a streamed message's Markdown as a `markdown` block
    above the blocks its stopStream carried."""
    out = {k: v for k, v in message.items() if k not in ("stopped", "appends")}
    out["blocks"] = list(message["blocks"])
    if message["streamed"]:
        out["blocks"] = [{"type": "markdown", "text": message["text"]}, *out["blocks"]]
        out["stopped"] = message["stopped"]
    return out


def final_message(standin: SlackStandIn, channel: str, thread_ts: str) -> dict | None:
    """The app's last message in a thread, as it reads now (streamed, posted, or edited)."""
    found = standin.messages(channel, thread_ts)
    return found[-1] if found else None


def button_value(message: dict, action_id: str) -> str | None:
    for block in message.get("blocks") or []:
        for element in block.get("elements") or []:
            if isinstance(element, dict) and element.get("action_id") == action_id:
                return element.get("value")
    return None


def message_text(message: dict) -> str:
    """What a person reads: section and context texts of the blocks, else the fallback text."""
    parts = []
    for block in message.get("blocks") or []:
        if block.get("type") == "section" and block.get("text"):
            parts.append(block["text"].get("text", ""))
        elif block.get("type") == "markdown":
            parts.append(block.get("text", ""))
        elif block.get("type") == "context":
            parts.append(" ".join(e.get("text", "") for e in block.get("elements") or []))
    return "\n".join(parts) if parts else message.get("text") or ""
