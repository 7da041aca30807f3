"""👍/👎 votes (Slack's feedback buttons, and the plain buttons of older answers), Share, and
corrections: the Correct button, a 👎 and the message shortcut open a modal; a submitted correction
becomes a pending example, goes to the review channel, and the author is thanked."""

from __future__ import annotations

import json
import logging
import threading

from slack_sdk.errors import SlackApiError

from bot import messages as text
from bot.assistant import context_text
from bot.metrics import observe_vote
from bot.routing import suggest_kind
from bot.slack import blocks as ui
from bot.slack.answers import AnswerView, answer_messages
from bot.slack.middleware import tell_privately
from bot.slack.services import Services
from storage.audit import audit
from storage.examples import DuplicateExample, add_example, set_review_message
from storage.interactions import get_interaction, record_vote
from storage.models import ExampleOrigin, ExampleStatus

log = logging.getLogger("apprenti.slack.feedback")
# A vote rewrites the interaction's votes; SQLite has no row locks, so votes in one process take turns.
_votes = threading.Lock()


def _where(body: dict) -> tuple[str | None, str | None]:
    """(channel, thread) of the message a click or shortcut came from."""
    container = body.get("container") or {}
    message = body.get("message") or {}
    channel = (body.get("channel") or {}).get("id") or container.get("channel_id")
    thread = message.get("thread_ts") or container.get("thread_ts")
    return channel, thread


def posted_by_bot(message: dict, context) -> bool:
    """Whether a message is one this app's bot posted: Slack names the posting bot on each message,
    and a person's message (whatever block ids it carries) names a user instead."""
    bot_id, bot_user = context.get("bot_id"), context.get("bot_user_id")
    return bool(
        (bot_id and message.get("bot_id") == bot_id) or (bot_user and message.get("user") == bot_user)
    )


def may_see(row, user: str | None, channel: str | None) -> bool:
    """Whether `user` may act on interaction `row` from `channel`: its asker anywhere, anyone else only
    from the conversation the answer was posted in (Slack shows a bot's message there only to those who
    can read it; a DM or the assistant pane is the asker's own)."""
    return bool(user) and (row.user_id == user or (channel is not None and channel == row.channel_id))


def visible_interaction(services: Services, body: dict, interaction_id: int | None, missing: str):
    """The interaction a click or shortcut names, if the clicker may see it; otherwise None, and the
    clicker is told why (`missing` when there is no such interaction)."""
    user = (body.get("user") or {}).get("id")
    row = get_interaction(services.engine, interaction_id) if interaction_id is not None else None
    if row is None:
        tell_privately(services, body, user, missing)
        return None
    if not may_see(row, user, _where(body)[0]):
        log.warning("refused interaction #%s to %s in %s", row.id, user, _where(body)[0])
        audit(
            services.engine, user or "unknown", "slack.denied", f"interaction:{row.id}", reason="not visible"
        )
        tell_privately(services, body, user, text.SLACK_NOT_VISIBLE)
        return None
    return row


def open_correction(
    services: Services, client, body: dict, interaction_id: int | None, intro: str | None = None, row=None
) -> None:
    if row is None:
        row = visible_interaction(
            services,
            body,
            interaction_id,
            text.SLACK_ANSWER_GONE if interaction_id else text.SLACK_NOT_AN_ANSWER,
        )
    if row is None:
        return
    channel, thread = _where(body)
    metadata = {
        "interaction": row.id,
        "channel": channel or row.channel_id,
        "thread": thread or row.thread_ts,
    }
    client.views_open(
        trigger_id=body["trigger_id"],
        view=ui.correction_modal(row.question, row.answer, metadata, intro=intro),
    )


def post_for_review(services: Services, example) -> str | None:
    """Post a pending example to the review channel; returns the problem when it could not be posted."""
    if not services.review_channel:
        return text.SLACK_NO_REVIEW_CHANNEL
    try:
        response = services.client.chat_postMessage(
            channel=services.review_channel, **ui.review_message(example)
        )
    except SlackApiError as exc:
        error = exc.response.get("error") or str(exc)
        log.error(
            "could not post example #%s to the review channel %s: %s",
            example.id,
            services.review_channel,
            error,
        )
        return text.SLACK_REVIEW_POST_FAILED.format(error=error)
    set_review_message(services.engine, example.id, response["channel"], response["ts"])
    return None


def register(app, services: Services) -> None:
    def vote(body: dict, interaction_id: int, value: int):
        if visible_interaction(services, body, interaction_id, text.SLACK_ANSWER_GONE) is None:
            return False
        with _votes:
            row = record_vote(services.engine, interaction_id, body["user"]["id"], value)
        if row is not None:
            observe_vote(value)
        return row

    @app.action(ui.VOTE_UP)
    @app.action(ui.VOTE_DOWN)
    def on_vote(ack, body, action):
        ack()
        value = 1 if action["action_id"] == ui.VOTE_UP else -1
        row = vote(body, int(action["value"]), value)
        if row is False:
            return
        message = (
            text.SLACK_ANSWER_GONE
            if row is None
            else text.SLACK_VOTE_RECORDED.format(
                emoji=text.SLACK_BUTTON_UP if value > 0 else text.SLACK_BUTTON_DOWN
            )
        )
        tell_privately(services, body, body["user"]["id"], message)

    @app.action(ui.FEEDBACK)
    def on_feedback(ack, body, action, client):
        """Slack's feedback buttons send "up:ID" or "down:ID" (never a deselection): the person's
        latest click is their vote, and a 👎 opens the correction modal at once."""
        ack()
        kind, _, raw = (action.get("value") or "").partition(":")
        if kind not in ("up", "down") or not raw.isdigit():
            log.warning("ignored feedback %r", action.get("value"))
            return
        row = vote(body, int(raw), 1 if kind == "up" else -1)
        if row is False:
            return
        if row is None:
            tell_privately(services, body, body["user"]["id"], text.SLACK_ANSWER_GONE)
        elif kind == "down":
            open_correction(services, client, body, row.id, intro=text.SLACK_FEEDBACK_DOWN_INTRO, row=row)
        else:
            tell_privately(services, body, body["user"]["id"], text.SLACK_FEEDBACK_THANKS)

    @app.action(ui.CORRECT)
    def on_correct(ack, body, action, client):
        ack()
        open_correction(services, client, body, int(action["value"]))

    @app.shortcut(ui.CORRECT_SHORTCUT)
    def on_shortcut(ack, body, client, context):
        ack()
        message = body.get("message") or {}
        if not posted_by_bot(message, context):
            log.warning("correction shortcut on a message the bot did not post, by %s", body["user"]["id"])
            tell_privately(services, body, body["user"]["id"], text.SLACK_NOT_AN_ANSWER)
            return
        interaction_id = ui.interaction_id_from_blocks(message.get("blocks"))
        open_correction(services, client, body, interaction_id)

    @app.action(ui.SHARE)
    def on_share(ack, body, action, client, respond):
        ack()
        user = body["user"]["id"]
        row = visible_interaction(services, body, int(action["value"]), text.SLACK_ANSWER_GONE)
        if row is None:
            return
        channel, thread = _where(body)
        channel = channel or row.channel_id
        for message in answer_messages(AnswerView.from_interaction(row), shared_by=user):
            client.chat_postMessage(channel=channel, thread_ts=thread or row.thread_ts, **message)
        if body.get("response_url"):
            respond(delete_original=True)

    @app.view(ui.CORRECTION_VIEW)
    def on_correction(ack, body, view, client):
        user = body["user"]["id"]
        metadata = json.loads(view.get("private_metadata") or "{}")
        row = get_interaction(services.engine, int(metadata.get("interaction", 0)))
        corrected, note = ui.modal_value(view, ui.ANSWER_BLOCK), ui.modal_value(view, ui.NOTE_BLOCK)
        if row is None:
            return ack(response_action="errors", errors={ui.ANSWER_BLOCK: text.SLACK_ANSWER_GONE})
        if not may_see(row, user, metadata.get("channel")):
            return ack(response_action="errors", errors={ui.ANSWER_BLOCK: text.SLACK_NOT_VISIBLE})
        if not corrected:
            return ack(response_action="errors", errors={ui.ANSWER_BLOCK: text.SLACK_CORRECT_EMPTY})
        if " ".join(corrected.split()) == " ".join((row.answer or "").split()):
            return ack(response_action="errors", errors={ui.ANSWER_BLOCK: text.SLACK_CORRECT_UNCHANGED})
        chosen = ui.modal_value(view, ui.KIND_BLOCK)
        kind, kind_source = (
            (chosen, "author")
            if chosen in ui.KINDS
            else (suggest_kind(row.answer, corrected).kind, "suggested")
        )
        try:
            example = add_example(
                services.engine,
                services.scrub(row.question),
                services.scrub(corrected),
                original_answer=row.answer,
                note=services.scrub(note) or None,
                track=row.track,
                origin=ExampleOrigin.correction.value,
                status=ExampleStatus.pending.value,
                author_id=user,
                interaction_id=row.id,
                kind=kind,
                kind_source=kind_source,
                context=context_text(row.sources or []),
            )
        except DuplicateExample as dup:
            return ack(
                response_action="errors",
                errors={
                    ui.ANSWER_BLOCK: text.SLACK_CORRECT_DUPLICATE.format(
                        id=dup.existing.id, status=dup.existing.status
                    )
                },
            )
        ack()
        services.example_changed(example, "created")
        problem = post_for_review(services, example) or ""
        thanks = text.SLACK_CORRECT_THANKS.format(id=example.id) + problem
        channel = metadata.get("channel") or row.channel_id
        try:
            if channel:
                client.chat_postEphemeral(
                    channel=channel, user=user, text=thanks, thread_ts=metadata.get("thread")
                )
            else:
                client.chat_postMessage(channel=user, text=thanks)
        except SlackApiError as exc:
            log.warning(
                "ephemeral thanks failed in %s (%s); sending it by DM", channel, exc.response.get("error")
            )
            client.chat_postMessage(channel=user, text=thanks)
