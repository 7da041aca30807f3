"""Cross-cutting checks, each written once: events are queued once (retries dropped), and every
action, command, modal and shortcut is checked against the clicking user's roles before any
listener runs."""

from __future__ import annotations

import hashlib
import json
import logging

from slack_bolt import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

from bot import messages as text
from bot.roles import ROLE_ENV, describe, required_roles
from bot.slack import blocks as ui
from bot.slack.event_queue import current_hold
from bot.slack.services import Services
from storage.audit import audit
from storage.events import claim_nonce

log = logging.getLogger("apprenti.slack")

COMMAND = "/apprenti"

# action_id / callback_id -> capability (bot.roles.PERMISSIONS). Ids not listed pass through to the
# catch-all listener, which ignores them with a log line.
ACTION_CAPABILITIES = {
    ui.VOTE_UP: "vote",
    ui.VOTE_DOWN: "vote",
    ui.FEEDBACK: "vote",
    ui.CORRECT: "correct",
    ui.SHARE: "share",
    ui.APPROVE: "review",
    ui.EDIT_APPROVE: "review",
    ui.REJECT: "review",
    ui.REVIEW_KIND: "review",
    ui.RETRAIN: "retrain",
    ui.ROLLBACK: "rollback",
    ui.ACTIVATE: "activate",
    ui.DISCARD: "discard",
    ui.STATUS: "status",
}
VIEW_CAPABILITIES = {ui.CORRECTION_VIEW: "correct", ui.EDIT_VIEW: "review"}
SHORTCUT_CAPABILITIES = {ui.CORRECT_SHORTCUT: "correct"}


def subcommand(command_text: str | None) -> tuple[str, str]:
    """`/apprenti NAME REST` → (name, rest); no text means help."""
    parts = (command_text or "").strip().split(None, 1)
    if not parts:
        return "help", ""
    return parts[0].lower(), parts[1] if len(parts) > 1 else ""


def capability_for(body: dict) -> tuple[str | None, str | None]:
    """(capability, user id) of an interactive request or command; (None, None) for events."""
    kind = body.get("type")
    if body.get("command"):
        from bot.slack.commands import capability_of

        return capability_of(subcommand(body.get("text"))[0]), body.get("user_id")
    user = (body.get("user") or {}).get("id")
    if kind == "block_actions":
        action_id = ((body.get("actions") or [{}])[0]).get("action_id")
        return ACTION_CAPABILITIES.get(action_id), user
    if kind in ("view_submission", "view_closed"):
        return VIEW_CAPABILITIES.get((body.get("view") or {}).get("callback_id")), user
    if kind in ("shortcut", "message_action"):
        return SHORTCUT_CAPABILITIES.get(body.get("callback_id")), user
    return None, None


def make_drop_retries(services: Services):
    """Every event is answered once: an event not yet queued (Socket Mode, or a request dispatched
    straight to the app) is written to the queue before its listener runs, and so before Bolt's ack;
    one the queue already holds (a Slack retry, on this replica or another) is dropped. An event the
    queue dispatches (received by the HTTP server, or claimed from a dead replica) passes."""
    queue = services.event_queue

    def drop_retries(body, request, logger, next):
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if not event_id:
            return next()
        hold = current_hold()
        if hold is not None and hold.event_id == event_id:
            return next()
        raw = request.raw_body if isinstance(request.raw_body, str) and request.raw_body else json.dumps(body)
        if not queue.accept(event_id, raw):
            retry = request.headers.get("x-slack-retry-num", [None])[0]
            logger.info(
                "dropping event %s already queued (retry %s, reason %s)",
                event_id,
                retry,
                request.headers.get("x-slack-retry-reason", [None])[0],
            )
            return BoltResponse(status=200, body="")
        with queue.handling(event_id):
            return next()

    return drop_retries


def make_refuse_replays(services: Services):
    """A signed slash command or interactive payload is served once: the same signature again (a
    captured request replayed within Slack's 5-minute window) is refused. Events are deduplicated by
    event id instead (drop_retries), so Slack's own retries of them still count once."""

    def refuse_replays(body, request, logger, next):
        signature = request.headers.get("x-slack-signature", [None])[0]
        if not signature or body.get("type") == "event_callback" or body.get("type") == "url_verification":
            return next()
        timestamp = request.headers.get("x-slack-request-timestamp", [""])[0]
        digest = hashlib.sha256(f"{timestamp}:{signature}".encode()).hexdigest()
        if claim_nonce(services.engine, digest):
            return next()
        logger.warning("refused a replayed request (%s)", body.get("type") or body.get("command"))
        return BoltResponse(status=401, body="replayed request")

    return refuse_replays


def refusal(capability: str) -> str:
    roles = required_roles(capability)
    names = " or ".join(roles)
    env = "/".join(f"{ROLE_ENV[r]}" for r in roles)
    return text.SLACK_DENIED.format(what=capability, roles=names, env=env)


def tell_privately(services: Services, body: dict, user: str, message: str) -> None:
    """An ephemeral note to the clicking user: through response_url when Slack gave one, else by DM."""
    try:
        if body.get("response_url"):
            WebhookClient(body["response_url"]).send(
                text=message, response_type="ephemeral", replace_original=False
            )
            return
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
        if channel:
            services.client.chat_postEphemeral(channel=channel, user=user, text=message)
        else:
            services.client.chat_postMessage(channel=user, text=message)
    except SlackApiError as exc:
        log.error("could not tell %s privately (%s): %s", user, exc.response.get("error"), message)


def make_authorize(services: Services):
    def authorize(body, next):
        capability, user = capability_for(body)
        if capability is None or services.roles.can(user, capability):
            return next()
        log.warning("refused %s to %s", capability, user)
        audit(
            services.engine,
            user or "unknown",
            "slack.denied",
            capability,
            roles=describe(services.roles.roles_of(user)),
            request=body.get("type") or body.get("command"),
        )
        message = refusal(capability)
        if body.get("command"):
            return BoltResponse(
                status=200,
                body=json.dumps({"response_type": "ephemeral", "text": message}),
                headers={"content-type": "application/json"},
            )
        if body.get("type") == "view_submission":
            return BoltResponse(
                status=200,
                body=json.dumps({"response_action": "errors", "errors": {ui.ANSWER_BLOCK: message}}),
                headers={"content-type": "application/json"},
            )
        tell_privately(services, body, user, message)
        return BoltResponse(status=200, body="")

    return authorize
