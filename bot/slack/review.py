"""Review buttons: Approve, Edit & approve (modal), Reject. The update is conditional in storage, so
two clicks approve once; the review message then shows who decided what."""

from __future__ import annotations

import json
import logging

from slack_sdk.errors import SlackApiError

from bot import corrections
from bot import messages as text
from bot.slack import blocks as ui
from bot.slack.middleware import tell_privately
from bot.slack.services import Services
from storage.audit import audit
from storage.examples import get_example
from storage.models import ExampleStatus

log = logging.getLogger("apprenti.slack.review")


def update_review_message(
    services: Services, example, *, edited: bool = False, decision: corrections.Decision | None = None
) -> None:
    """Show the outcome on the example's review message (if it has one): who decided, and where an
    approved pair went (the knowledge base, training, both; what it replaced)."""
    if not (example.review_channel and example.review_ts):
        return
    outcome = None
    if example.status != ExampleStatus.pending.value:
        outcome = ui.outcome_line(
            example,
            edited,
            replaced=decision.replaced if decision else None,
            flagged=decision.flagged if decision else 0,
        )
    try:
        services.client.chat_update(
            channel=example.review_channel,
            ts=example.review_ts,
            **ui.review_message(example, outcome=outcome),
        )
    except SlackApiError as exc:
        log.error(
            "could not update the review message of example #%s: %s", example.id, exc.response.get("error")
        )


def self_review(services: Services, example_id: int, user: str) -> bool:
    """Whether approving this example would be its author approving their own correction, which only
    APPRENTI_ALLOW_SELF_REVIEW permits (the few-shot plugin would otherwise show it in the next answer)."""
    if services.runtime.settings.allow_self_review:
        return False
    example = get_example(services.engine, example_id)
    if example is not None and example.author_id == user:
        log.warning("refused %s approving their own example #%s", user, example_id)
        audit(services.engine, user, "slack.denied", f"example:{example_id}", reason="self-review")
        return True
    return False


def _not_done(services: Services, decision: corrections.Decision, example_id: int) -> str:
    current = decision.example
    if current is None:
        return text.SLACK_REVIEW_GONE.format(id=example_id)
    by = f" by <@{current.reviewer_id}>" if current.reviewer_id else ""
    update_review_message(services, current)  # bring a stale message up to date
    return text.SLACK_REVIEW_ALREADY.format(id=example_id, status=current.status, by=by)


def decide(
    services: Services,
    body: dict,
    example_id: int,
    status: ExampleStatus,
    user: str,
    corrected: str | None = None,
) -> str:
    """Apply a reviewer's decision and route the example; returns what to tell the reviewer."""
    if status == ExampleStatus.approved and self_review(services, example_id, user):
        return text.SLACK_SELF_REVIEW.format(id=example_id)
    decision = corrections.decide(
        services.engine, services.plugins, example_id, status, user, corrected=corrected
    )
    if not decision.done:
        return _not_done(services, decision, example_id)
    example = decision.example
    update_review_message(services, example, edited=corrected is not None, decision=decision)
    return "\n".join(
        [
            text.SLACK_REVIEW_DONE.format(id=example_id, status=example.status),
            *ui.routing_lines(example, decision.replaced, decision.flagged),
        ]
    )


def change_kind(services: Services, example_id: int, kind: str, user: str) -> str:
    """A reviewer picked another kind in the review message."""
    decision = corrections.change_kind(services.engine, services.plugins, example_id, kind, user)
    if not decision.done:
        return _not_done(services, decision, example_id)
    update_review_message(services, decision.example, decision=decision)
    return "\n".join(
        [
            text.SLACK_REVIEW_KIND_DONE.format(id=example_id, kind=text.KIND_SHORT.get(kind, kind)),
            *ui.routing_lines(decision.example, decision.replaced, decision.flagged),
        ]
    )


def register(app, services: Services) -> None:
    def after_decision(body: dict, user: str, message: str) -> None:
        if (body.get("view") or {}).get("type") == "home":
            from bot.slack.home import publish_home

            publish_home(services, user)
        tell_privately(services, body, user, message)

    @app.action(ui.APPROVE)
    @app.action(ui.REJECT)
    def on_decision(ack, body, action):
        ack()
        user = body["user"]["id"]
        status = ExampleStatus.approved if action["action_id"] == ui.APPROVE else ExampleStatus.rejected
        after_decision(body, user, decide(services, body, int(action["value"]), status, user))

    @app.action(ui.REVIEW_KIND)
    def on_kind(ack, body, action):
        ack()
        user = body["user"]["id"]
        raw_id, _, kind = ((action.get("selected_option") or {}).get("value") or "").partition(":")
        if not raw_id.isdigit() or kind not in ui.KINDS:
            log.warning("ignored kind choice %r", action.get("selected_option"))
            return
        after_decision(body, user, change_kind(services, int(raw_id), kind, user))

    @app.action(ui.EDIT_APPROVE)
    def on_edit(ack, body, action, client):
        ack()
        user = body["user"]["id"]
        example_id = int(action["value"])
        example = get_example(services.engine, example_id)
        if example is None:
            tell_privately(services, body, user, text.SLACK_REVIEW_GONE.format(id=example_id))
            return
        if example.status != ExampleStatus.pending.value:
            by = f" by <@{example.reviewer_id}>" if example.reviewer_id else ""
            tell_privately(
                services,
                body,
                user,
                text.SLACK_REVIEW_ALREADY.format(id=example.id, status=example.status, by=by),
            )
            return
        if self_review(services, example_id, user):
            tell_privately(services, body, user, text.SLACK_SELF_REVIEW.format(id=example_id))
            return
        client.views_open(trigger_id=body["trigger_id"], view=ui.edit_modal(example, {"example": example.id}))

    @app.view(ui.EDIT_VIEW)
    def on_edit_submit(ack, body, view):
        user = body["user"]["id"]
        metadata = json.loads(view.get("private_metadata") or "{}")
        example_id = int(metadata.get("example", 0))
        corrected = ui.modal_value(view, ui.ANSWER_BLOCK)
        current = get_example(services.engine, example_id)
        if current is None:
            return ack(
                response_action="errors",
                errors={ui.ANSWER_BLOCK: text.SLACK_REVIEW_GONE.format(id=example_id)},
            )
        if not corrected:
            return ack(response_action="errors", errors={ui.ANSWER_BLOCK: text.SLACK_CORRECT_EMPTY})
        if current.status != ExampleStatus.pending.value:
            return ack(
                response_action="errors",
                errors={
                    ui.ANSWER_BLOCK: text.SLACK_REVIEW_ALREADY.format(
                        id=example_id,
                        status=current.status,
                        by=f" by <@{current.reviewer_id}>" if current.reviewer_id else "",
                    )
                },
            )
        ack()
        changed = corrected if corrected != current.corrected_answer else None
        message = decide(
            services,
            body,
            example_id,
            ExampleStatus.approved,
            user,
            services.scrub(changed) if changed else None,
        )
        services.client.chat_postMessage(channel=user, text=message)
