"""`/apprenti SUBCOMMAND`: parsed here, checked by the roles middleware (capability_of), answered
privately. Slow subcommands run after the ack, through response_url."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from slack_sdk.errors import SlackApiError

from bot import messages as text
from bot.roles import describe
from bot.slack import asking, reports
from bot.slack import blocks as ui
from bot.slack.errors import report
from bot.slack.middleware import COMMAND, subcommand
from bot.slack.operations import Operations
from bot.slack.services import Services
from storage.examples import count_examples, list_examples
from storage.models import ExampleStatus

log = logging.getLogger("apprenti.slack.commands")

USER_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>|^([UW][A-Z0-9]+)$")


@dataclass(frozen=True)
class Subcommand:
    name: str
    usage: str
    run: Callable  # (services, ops, ctx) -> str | dict | None


@dataclass
class Call:
    user: str
    channel: str | None
    args: str
    body: dict
    respond: Callable


def capability_of(name: str) -> str:
    """The capability a subcommand needs; unknown names are answered by help (which anyone may use)."""
    return name if name in SUBCOMMANDS else "help"


def _help(services: Services, ops: Operations, call: Call):
    roles = services.roles.roles_of(call.user)
    lines = [text.SLACK_HELP_HEADER.format(roles=describe(roles))]
    for name in SUBCOMMANDS:
        if services.roles.can(call.user, name) and name in text.SLACK_HELP:
            lines.append(text.SLACK_HELP[name])
    return "\n".join(lines)


def _ask(services: Services, ops: Operations, call: Call):
    if not call.args.strip():
        return text.EMPTY_QUESTION
    asking.ask_command(services, call.args, call.body, call.respond)
    return None  # the answer arrives through response_url


def _status(services: Services, ops: Operations, call: Call):
    return reports.status_text(services.engine, ops.tracks(), reports.advice_lines(services.runtime))


def _review(services: Services, ops: Operations, call: Call):
    page = _first_arg(call) or "1"
    if not page.isdigit() or int(page) < 1:
        return text.SLACK_USAGE.format(usage=SUBCOMMANDS["review"].usage)
    page = int(page)
    pending = list_examples(
        services.engine,
        status=ExampleStatus.pending.value,
        limit=ui.REVIEW_PAGE,
        offset=(page - 1) * ui.REVIEW_PAGE,
    )
    total = count_examples(services.engine, status=ExampleStatus.pending.value)
    return ui.review_queue(pending, total, page)


def _audit(services: Services, ops: Operations, call: Call):
    return reports.audit_text(services.engine)


def _adapters(services: Services, ops: Operations, call: Call):
    return reports.adapters_text(services.engine)


def _retrain(services: Services, ops: Operations, call: Call):
    words = call.args.split()
    dry_run = "--dry-run" in words
    tracks = [w for w in words if w != "--dry-run"] or ["default"]
    if dry_run:
        return "\n".join(ops.retrain_preview(track) for track in tracks)
    return "\n".join(ops.retrain(track, call.user) for track in tracks)


def _first_arg(call: Call) -> str | None:
    parts = call.args.split()
    return parts[0] if parts else None


def _activate(services: Services, ops: Operations, call: Call):
    target = _first_arg(call)
    return (
        ops.activate(target, call.user)
        if target
        else text.SLACK_USAGE.format(usage=SUBCOMMANDS["activate"].usage)
    )


def _discard(services: Services, ops: Operations, call: Call):
    target = _first_arg(call)
    return (
        ops.discard(target, call.user)
        if target
        else text.SLACK_USAGE.format(usage=SUBCOMMANDS["discard"].usage)
    )


def _rollback(services: Services, ops: Operations, call: Call):
    return ops.rollback(call.args.strip() or None, call.user)


def _forget(services: Services, ops: Operations, call: Call):
    match = USER_MENTION.search(call.args.strip())
    if not match:
        return text.SLACK_USAGE.format(usage=SUBCOMMANDS["forget"].usage)
    return ops.forget(match.group(1) or match.group(2), call.user)


def _export(services: Services, ops: Operations, call: Call):
    content, count = ops.export(call.user)
    try:
        dm = services.client.conversations_open(users=call.user)["channel"]["id"]
        services.client.files_upload_v2(
            channel=dm,
            content=content or "\n",
            filename="apprenti-approved.jsonl",
            title="Apprenti approved training pairs",
            initial_comment=f"{count} approved pair(s), OpenAI chat JSON Lines.",
        )
    except SlackApiError as exc:
        return text.SLACK_ADMIN_FAILED.format(what="export", error=exc.response.get("error"))
    return text.SLACK_ADMIN_DONE.format(what=f"export ({count} pairs, sent to you by DM)")


def _ingest(services: Services, ops: Operations, call: Call):
    paths = call.args.split()
    if not paths:
        return text.SLACK_USAGE.format(usage=SUBCOMMANDS["ingest"].usage)
    return ops.ingest(paths, call.user)


SUBCOMMANDS: dict[str, Subcommand] = {
    s.name: s
    for s in [
        Subcommand("help", "/apprenti help", _help),
        Subcommand("ask", "/apprenti ask QUESTION", _ask),
        Subcommand("status", "/apprenti status", _status),
        Subcommand("review", "/apprenti review [PAGE]", _review),
        Subcommand("audit", "/apprenti audit", _audit),
        Subcommand("adapters", "/apprenti adapters", _adapters),
        Subcommand("retrain", "/apprenti retrain [TRACK] [--dry-run]", _retrain),
        Subcommand("activate", "/apprenti activate TRACK/vN", _activate),
        Subcommand("rollback", "/apprenti rollback [TRACK | TRACK/vN]", _rollback),
        Subcommand("discard", "/apprenti discard TRACK/vN", _discard),
        Subcommand("forget", "/apprenti forget @user", _forget),
        Subcommand("export", "/apprenti export", _export),
        Subcommand("ingest", "/apprenti ingest PATH...", _ingest),
    ]
}


def register(app, services: Services) -> None:
    ops = services.operations

    @app.command(COMMAND)
    def on_command(ack, body, respond):
        ack()
        name, args = subcommand(body.get("text"))
        call = Call(
            user=body.get("user_id"), channel=body.get("channel_id"), args=args, body=body, respond=respond
        )
        command = SUBCOMMANDS.get(name)
        if command is None:
            respond(response_type="ephemeral", text=text.SLACK_UNKNOWN_SUBCOMMAND.format(name=name[:40]))
            return
        try:
            result = command.run(services, ops, call)
        except Exception:  # noqa: BLE001 - the caller is told; the trace is logged
            result = text.SLACK_COMMAND_FAILED.format(name=name, error=report(log, f"/apprenti {name}"))
        if result is None:
            return
        message = result if isinstance(result, dict) else ui.notice_message(result)
        respond(response_type="ephemeral", replace_original=False, **message)
