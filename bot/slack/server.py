"""Running the app: HTTP (Bolt's Starlette adapter under uvicorn: POST /slack/events, GET /healthz) or
Socket Mode.

Acks come first. An Events API request needs nothing from us but a 200 within 3 s (Slack ignores
the body), and Slack never sends an acknowledged event again: so once its signature checks out it is
written to the durable queue (bot/slack/event_queue.py), then acknowledged, then handed to Bolt's
dispatch on a background thread; a retry of a queued event (same event id) is acknowledged and
dropped, and a database that cannot take the write gets Slack a 503, so that Slack retries.
Interactivity and slash commands may need Bolt's reply (modal errors, command text), so they are
dispatched before answering, on Starlette's thread pool, so that one slow request never holds up
the others."""

from __future__ import annotations

import asyncio
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
from bot.slack.event_queue import EventQueue
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
    """command, or the interactivity payload's type (block_actions, view_submission...), for the ack
    histogram."""
    form = parse_qs(body.decode("utf-8"), keep_blank_values=True)
    if "command" in form:
        return "command"
    try:
        return metrics.kind_of(json.loads(form["payload"][0])) if "payload" in form else "other"
    except (ValueError, TypeError):
        return "other"


class EventDispatcher:
    """Bolt's dispatch of events already queued and acknowledged, off the request path: those this
    process received, and those its poller claimed from a process that died."""

    def __init__(self, app: App, queue: EventQueue, workers: int = 2):
        self.app = app
        self.queue = queue
        self.pool = AnswerPool(workers, name="apprenti-events", nice=5)

    def submit(self, event_id: str, body: str) -> None:
        self.pool.submit(self.queue.run, self.app, event_id, body)


def event_id_of(body: bytes) -> str | None:
    """An Events API body's event id (the body was checked to be a JSON object)."""
    value = json.loads(body).get("event_id")
    return value if isinstance(value, str) and value else None


def make_starlette(
    app: App, services=None, signing_secret: str | None = None, *, early_ack: bool = True
) -> Starlette:
    verifier = SignatureVerifier(signing_secret) if signing_secret else None
    queue = services.event_queue if services is not None else None
    dispatcher = EventDispatcher(app, queue) if early_ack and verifier and queue is not None else None

    async def events(request: Request) -> Response:
        started = time.perf_counter()
        response = await answer_slack(request)
        if request.state.kind:  # not for requests refused before their kind was read
            metrics.observe_ack(request.state.kind, time.perf_counter() - started)
        return response

    async def queue_event(body: bytes, headers: dict[str, str]) -> Response:
        """Verified, written to the queue, then acknowledged: an ack means the event is durably queued."""
        if not verifier.is_valid_request(body, headers):
            return PlainTextResponse("invalid request", status_code=401)
        event_id = event_id_of(body)
        if event_id is None:  # nothing to deduplicate on: Bolt decides what it is
            bolt_response = await run_in_threadpool(
                app.dispatch, BoltRequest(body=body.decode(), headers=headers)
            )
            return to_starlette_response(bolt_response)
        try:
            fresh = await asyncio.wrap_future(dispatcher.queue.accept_soon(event_id, body.decode("utf-8")))
        except Exception as exc:  # noqa: BLE001 - no ack without the write: Slack retries, maybe elsewhere
            log.error("could not queue event %s: %s", event_id, exc)
            return PlainTextResponse("event queue unavailable, retry", status_code=503)
        if fresh:
            dispatcher.submit(event_id, body.decode("utf-8"))
        else:
            log.info(
                "dropping event %s already queued (retry %s)", event_id, headers.get("x-slack-retry-num")
            )
        return Response(status_code=200)

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
            return await queue_event(body, dict(request.headers))
        bolt_response = await run_in_threadpool(app.dispatch, to_bolt_request(request, body))
        return to_starlette_response(bolt_response)

    async def healthz(request: Request) -> Response:
        data = {"ok": True}
        if services is not None:
            data["answers_in_progress"] = services.pool.pending
        if dispatcher is not None:
            data["events_in_progress"] = dispatcher.pool.pending
            data["events_held"] = dispatcher.queue.held
        return JSONResponse(data)

    async def metrics_page(request: Request) -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    if services is not None:
        metrics.watch_queue("answers", lambda: services.pool.pending)
    if dispatcher is not None:
        metrics.watch_queue("events", lambda: dispatcher.pool.pending)
        metrics.watch_queue("events_held", lambda: dispatcher.queue.held)
    api = Starlette(
        routes=[
            Route(EVENTS_PATH, events, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics_page, methods=["GET"]),
        ]
    )
    api.state.dispatcher = dispatcher
    return api


def run_http(app: App, services, *, host: str, port: int, signing_secret: str | None) -> None:
    import sys

    import uvicorn

    # The event loop competes for the GIL with the threads that dispatch and answer; a shorter switch
    # interval lets it take the GIL back sooner, which is what keeps acks fast while the model works.
    sys.setswitchinterval(0.001)
    api = make_starlette(app, services, signing_secret)
    config = uvicorn.Config(
        api, host=host, port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    dispatcher = api.state.dispatcher
    if dispatcher is not None:
        dispatcher.queue.start(dispatcher.submit)  # answers what a replica that died left claimed
    log.warning("Apprenti listening on http://%s:%s%s", host, port, EVENTS_PATH)
    try:
        server.run()
    finally:
        # Events already acknowledged to Slack will not be sent again: handle them before exiting
        # (those left when the wait is over are given back to the other replicas: see apprenti serve).
        if dispatcher is not None:
            dispatcher.queue.stop(release=False)
            if not dispatcher.pool.wait_idle(timeout=30):
                log.error(
                    "%d acknowledged event(s) were not handled before shutdown", dispatcher.pool.pending
                )


def run_socket_mode(app: App, app_token: str, *, block: bool = True, queue: EventQueue | None = None):
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
    if (
        queue is not None
    ):  # events are queued by the middleware before Bolt acks them; this answers the dead's
        queue.start(EventDispatcher(app, queue).submit)
    handler = TimedHandler(app, app_token)
    if not block:
        handler.connect()
        return handler
    handler.start()
    return handler
