"""Running the app: HTTP (Bolt's Starlette adapter under uvicorn: POST /slack/events, GET /healthz) or
Socket Mode. Bolt's dispatch is synchronous, so it runs in Starlette's thread pool: one slow request
never holds up the acks of the others."""

from __future__ import annotations

import json
import logging
from urllib.parse import parse_qs

from slack_bolt import App
from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
from slack_sdk.signature import SignatureVerifier
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

log = logging.getLogger("apprenti.slack.server")

EVENTS_PATH = "/slack/events"
MAX_BODY = 1_000_000  # Slack's payloads are far smaller; anything bigger is not from Slack


def body_problem(body: bytes, content_type: str) -> str | None:
    """Why a body cannot be a Slack request (malformed JSON or form), or None when it parses."""
    try:
        raw = body.decode("utf-8")
    except UnicodeDecodeError:
        return "body is not UTF-8"
    try:
        if content_type.startswith("application/json") or raw.lstrip().startswith("{"):
            if not isinstance(json.loads(raw), dict):
                return "JSON body is not an object"
            return None
        form = parse_qs(raw, keep_blank_values=True, strict_parsing=bool(raw))
        if "payload" in form:
            if not isinstance(json.loads(form["payload"][0]), dict):
                return "payload is not a JSON object"
    except (ValueError, json.JSONDecodeError) as exc:
        return f"malformed body: {exc}"
    return None


def make_starlette(app: App, services=None, signing_secret: str | None = None) -> Starlette:
    verifier = SignatureVerifier(signing_secret) if signing_secret else None

    async def events(request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_BODY:
            return PlainTextResponse("request too large", status_code=413)
        problem = body_problem(body, request.headers.get("content-type", ""))
        if problem:
            # Signature first: a forged request learns nothing about what we parse.
            if verifier and not verifier.is_valid_request(body, dict(request.headers)):
                return PlainTextResponse("invalid request", status_code=401)
            log.warning("rejected a request: %s", problem)
            return PlainTextResponse(problem, status_code=400)
        bolt_response = await run_in_threadpool(app.dispatch, to_bolt_request(request, body))
        return to_starlette_response(bolt_response)

    async def healthz(request: Request) -> Response:
        data = {"ok": True}
        if services is not None:
            data["answers_in_progress"] = services.pool.pending
        return JSONResponse(data)

    return Starlette(routes=[Route(EVENTS_PATH, events, methods=["POST"]), Route("/healthz", healthz, methods=["GET"])])


def run_http(app: App, services, *, host: str, port: int, signing_secret: str | None) -> None:
    import uvicorn

    config = uvicorn.Config(make_starlette(app, services, signing_secret), host=host, port=port,
                            log_level="warning", access_log=False, timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    log.warning("Apprenti listening on http://%s:%s%s", host, port, EVENTS_PATH)
    server.run()


def run_socket_mode(app: App, app_token: str) -> None:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    log.warning("Apprenti connecting to Slack in Socket Mode")
    SocketModeHandler(app, app_token).start()
