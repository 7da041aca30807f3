"""Running the app: HTTP (Bolt's Starlette adapter under uvicorn: POST /slack/events, GET /healthz) or
Socket Mode.

Acks come first. An Events API request needs nothing from us but a 200 within 3 s (Slack ignores
the body), so once its signature checks out it is acknowledged at once and handed to Bolt's dispatch
on a background thread; retries are still dropped there, by event id. Interactivity and slash
commands may need Bolt's reply (modal errors, command text), so they are dispatched before
answering, on Starlette's thread pool, so that one slow request never holds up the others."""

from __future__ import annotations

import json
import logging
import time
from urllib.parse import parse_qs

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from slack_bolt import App, BoltRequest
from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
from slack_sdk.signature import SignatureVerifier
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from bot import metrics
from bot.logs import for_event
from bot.slack.services import AnswerPool

log = logging.getLogger("apprenti.slack.server")

EVENTS_PATH = "/slack/events"
MAX_BODY = 1_000_000  # Slack's payloads are far smaller; anything bigger is not from Slack


def inspect_body(body: bytes, content_type: str) -> tuple[str | None, bool]:
    """(why the body cannot be a Slack request or None, whether it is an Events API callback)."""
    try:
        raw = body.decode("utf-8")
    except UnicodeDecodeError:
        return "body is not UTF-8", False
    try:
        if content_type.startswith("application/json") or raw.lstrip().startswith("{"):
            data = json.loads(raw)
            if not isinstance(data, dict):
                return "JSON body is not an object", False
            return None, data.get("type") == "event_callback"
        form = parse_qs(raw, keep_blank_values=True, strict_parsing=bool(raw))
        if "payload" in form and not isinstance(json.loads(form["payload"][0]), dict):
            return "payload is not a JSON object", False
    except (ValueError, json.JSONDecodeError) as exc:
        return f"malformed body: {exc}", False
    return None, False


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes | None:
    """The body, or None once it is over `limit`: refused from Content-Length before reading, and
    while streaming for a body that lies about (or omits) its length, so an oversized request is
    never buffered, and costs nothing before its signature is even looked at."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def request_kind(body: bytes) -> str:
    """command, or the interactivity payload's type (block_actions, view_submission...), for the ack histogram."""
    form = parse_qs(body.decode("utf-8"), keep_blank_values=True)
    if "command" in form:
        return "command"
    try:
        return metrics.kind_of(json.loads(form["payload"][0])) if "payload" in form else "other"
    except (ValueError, TypeError):
        return "other"


class EventDispatcher:
    """Bolt's dispatch of already-acknowledged events, off the request path."""

    def __init__(self, app: App, workers: int = 2):
        self.app = app
        self.pool = AnswerPool(workers, name="apprenti-events", nice=5)

    def submit(self, body: bytes, headers: dict[str, str]) -> None:
        self.pool.submit(self._dispatch, body, headers)

    def _dispatch(self, body: bytes, headers: dict[str, str]) -> None:
        raw = body.decode("utf-8")
        with for_event(json.loads(raw).get("event_id")):  # an event body: checked JSON before the ack
            response = self.app.dispatch(BoltRequest(body=raw, headers=headers))
        if response.status != 200:
            log.warning("event dispatch answered %s: %s", response.status, response.body[:200])


def make_starlette(app: App, services=None, signing_secret: str | None = None, *,
                   early_ack: bool = True) -> Starlette:
    verifier = SignatureVerifier(signing_secret) if signing_secret else None
    dispatcher = EventDispatcher(app) if early_ack and verifier else None

    async def events(request: Request) -> Response:
        started = time.perf_counter()
        response = await answer_slack(request)
        if request.state.kind:  # not for requests refused before their kind was read
            metrics.observe_ack(request.state.kind, time.perf_counter() - started)
        return response

    async def answer_slack(request: Request) -> Response:
        request.state.kind = None
        body = await read_body(request)
        if body is None:
            return PlainTextResponse("request too large", status_code=413)
        problem, event = inspect_body(body, request.headers.get("content-type", ""))
        if problem:
            # Signature first: a forged request learns nothing about what we parse.
            if verifier and not verifier.is_valid_request(body, dict(request.headers)):
                return PlainTextResponse("invalid request", status_code=401)
            log.warning("rejected a request: %s", problem)
            return PlainTextResponse(problem, status_code=400)
        request.state.kind = "event" if event else request_kind(body)
        if dispatcher and event:
            headers = dict(request.headers)
            if not verifier.is_valid_request(body, headers):
                return PlainTextResponse("invalid request", status_code=401)
            dispatcher.submit(body, headers)
            return Response(status_code=200)
        bolt_response = await run_in_threadpool(app.dispatch, to_bolt_request(request, body))
        return to_starlette_response(bolt_response)

    async def healthz(request: Request) -> Response:
        data = {"ok": True}
        if services is not None:
            data["answers_in_progress"] = services.pool.pending
        if dispatcher is not None:
            data["events_in_progress"] = dispatcher.pool.pending
        return JSONResponse(data)

    async def metrics_page(request: Request) -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    if services is not None:
        metrics.watch_queue("answers", lambda: services.pool.pending)
    if dispatcher is not None:
        metrics.watch_queue("events", lambda: dispatcher.pool.pending)
    api = Starlette(routes=[Route(EVENTS_PATH, events, methods=["POST"]), Route("/healthz", healthz, methods=["GET"]),
                            Route("/metrics", metrics_page, methods=["GET"])])
    api.state.dispatcher = dispatcher
    return api


def run_http(app: App, services, *, host: str, port: int, signing_secret: str | None) -> None:
    import sys

    import uvicorn

    # The event loop competes for the GIL with the threads that dispatch and answer; a shorter switch
    # interval lets it take the GIL back sooner, which is what keeps acks fast while the model works.
    sys.setswitchinterval(0.001)
    api = make_starlette(app, services, signing_secret)
    config = uvicorn.Config(api, host=host, port=port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    log.warning("Apprenti listening on http://%s:%s%s", host, port, EVENTS_PATH)
    try:
        server.run()
    finally:
        # Events already acknowledged to Slack will not be sent again: handle them before exiting.
        if api.state.dispatcher is not None and not api.state.dispatcher.pool.wait_idle(timeout=30):
            log.error("%d acknowledged event(s) were not handled before shutdown",
                      api.state.dispatcher.pool.pending)


def run_socket_mode(app: App, app_token: str, *, block: bool = True):
    """Connect over Socket Mode; blocks until interrupted, or (block=False) returns the connected handler."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    class TimedHandler(SocketModeHandler):
        def handle(self, client, req) -> None:
            started = time.perf_counter()
            try:
                with for_event((req.payload or {}).get("event_id")):
                    super().handle(client, req)  # dispatches, then sends the ack (Bolt waits for ack())
            finally:
                metrics.observe_ack(metrics.kind_of(req.payload or {}), time.perf_counter() - started)

    log.warning("Apprenti connecting to Slack in Socket Mode")
    handler = TimedHandler(app, app_token)
    if not block:
        handler.connect()
        return handler
    handler.start()
    return handler
