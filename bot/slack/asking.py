"""Questions from Slack: mentions, DMs, follow-ups in threads the bot answered, the assistant pane
and `/apprenti ask`. Listeners only parse and ack; the answer is made in the AnswerPool."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlmodel import select

from bot import messages as text
from bot.slack import blocks as ui
from bot.slack.services import Services
from storage.db import session_scope
from storage.models import Interaction

log = logging.getLogger("apprenti.slack.ask")

MENTION = re.compile(r"<@[UW][A-Z0-9]+(\|[^>]*)?>")
IGNORED_SUBTYPES = {"bot_message", "message_changed", "message_deleted", "channel_join", "channel_leave",
                    "thread_broadcast", "message_replied", "assistant_app_thread"}


@dataclass
class Question:
    text: str
    channel: str
    user: str
    team: str | None = None
    thread_ts: str | None = None  # where the answer goes (None: top level)
    message_ts: str | None = None  # the question's own message
    assistant: bool = False  # the Slack assistant pane: show status instead of a placeholder
    respond: Callable | None = None  # /apprenti ask: answer through the response_url


def clean(question: str) -> str:
    """The question without the bot's mention."""
    return MENTION.sub("", question or "").strip()


def bot_answered_thread(engine, channel: str, thread_ts: str) -> bool:
    """Whether Apprenti answered in this thread before (so a follow-up there is meant for it)."""
    with session_scope(engine) as session:
        return session.exec(select(Interaction.id).where(
            Interaction.channel_id == channel, Interaction.thread_ts == thread_ts).limit(1)).first() is not None


class LiveUpdate:
    """Edits the placeholder with the answer as the model writes it, at most every `interval` seconds.
    Cosmetic: it has its own client without retries, and a refused edit only slows the next ones."""

    def __init__(self, client: WebClient, channel: str, ts: str, interval: float = 1.5):
        self.client = WebClient(token=client.token, base_url=client.base_url, timeout=5)
        self.channel, self.ts, self.interval = channel, ts, interval
        self.last = time.monotonic()  # the placeholder was just posted

    def __call__(self, written: str) -> None:
        now = time.monotonic()
        if now - self.last < self.interval or not written.strip():
            return
        self.last = now
        try:
            self.client.chat_update(channel=self.channel, ts=self.ts, **ui.live_message(written))
        except SlackApiError as exc:
            self.interval *= 2
            log.info("live update refused (%s); next one in %.0f s", exc.response.get("error"), self.interval)


def _post(services: Services, q: Question, message: dict, placeholder: str | None, private: bool) -> None:
    client = services.client
    if q.respond is not None:
        q.respond(response_type="ephemeral", replace_original=False, **message)
    elif private:
        client.chat_postEphemeral(channel=q.channel, user=q.user, thread_ts=q.thread_ts, **message)
    elif placeholder:
        client.chat_update(channel=q.channel, ts=placeholder, **message)
    else:
        client.chat_postMessage(channel=q.channel, thread_ts=q.thread_ts, **message)


def deliver(services: Services, q: Question, messages: list[dict], placeholder: str | None, private: bool) -> None:
    """Send an answer's messages; if Slack refuses, tell the asker by DM and log it."""
    try:
        for i, message in enumerate(messages):
            _post(services, q, message, placeholder if i == 0 else None, private)
    except SlackApiError as exc:
        error = exc.response.get("error") or str(exc)
        log.error("could not post the answer in %s (%s)", q.channel, error)
        try:
            services.client.chat_postMessage(channel=q.user, text=text.SLACK_ANSWER_FAILED.format(
                error=f"Slack refused the message: {error}"))
        except SlackApiError as again:
            log.error("could not tell %s either (%s)", q.user, again.response.get("error"))


def answer_question(services: Services, q: Question) -> None:
    """Runs in the AnswerPool: status or placeholder, the pipeline, then the answer (or the failure)."""
    client = services.client
    try:
        profile = services.runtime.profiles.for_channel(q.channel)
        private = q.respond is not None or profile.ephemeral
    except Exception as exc:  # noqa: BLE001 - a broken profile file is still told to the asker
        log.exception("profiles unavailable")
        deliver(services, q, [ui.notice_message(text.SLACK_ANSWER_FAILED.format(error=exc))], None, False)
        return
    placeholder = None
    try:
        if q.assistant:
            client.assistant_threads_setStatus(channel_id=q.channel, thread_ts=q.thread_ts,
                                               status=text.SLACK_STATUS_THINKING)
        elif not private:
            placeholder = client.chat_postMessage(channel=q.channel, thread_ts=q.thread_ts,
                                                  text=text.SLACK_THINKING)["ts"]
    except SlackApiError as exc:
        log.warning("could not show the thinking status in %s: %s", q.channel, exc.response.get("error"))
    try:
        live = LiveUpdate(client, q.channel, placeholder) if placeholder else None
        answer = services.assistant.answer(q.text, channel=q.channel, user=q.user, thread=q.thread_ts or q.message_ts,
                                           team=q.team, message_ts=q.message_ts, on_text=live)
        messages = ui.answer_messages(ui.AnswerView.from_answer(answer), ephemeral=private)
    except Exception as exc:  # noqa: BLE001 - silence is a bug: the asker hears about every failure
        log.exception("answering failed")
        messages = [ui.notice_message(text.SLACK_ANSWER_FAILED.format(error=f"{type(exc).__name__}: {exc}"))]
    deliver(services, q, messages, placeholder, private)


def register(app, services: Services) -> None:
    def submit(q: Question) -> None:
        services.pool.submit(answer_question, services, q)  # an empty question is answered with a hint

    @app.event("app_mention")
    def on_mention(event, body, ack):
        ack()
        submit(Question(text=clean(event.get("text")), channel=event["channel"], user=event.get("user"),
                        team=body.get("team_id"), thread_ts=event.get("thread_ts") or event.get("ts"),
                        message_ts=event.get("ts")))

    @app.event("assistant_thread_started")
    def on_assistant_thread(event, ack, client):
        ack()
        thread = event.get("assistant_thread") or {}
        try:
            client.assistant_threads_setSuggestedPrompts(
                channel_id=thread["channel_id"], thread_ts=thread["thread_ts"], title=text.SLACK_SUGGESTED_TITLE,
                prompts=[{"title": title, "message": message} for title, message in text.SLACK_SUGGESTED_PROMPTS])
            client.chat_postMessage(channel=thread["channel_id"], thread_ts=thread["thread_ts"],
                                    text=text.SLACK_ASSISTANT_GREETING)
        except SlackApiError as exc:
            log.error("could not set up the assistant thread: %s", exc.response.get("error"))

    @app.event("assistant_thread_context_changed")
    def on_context_changed(ack):
        ack()

    @app.event("message")
    def on_message(event, body, ack, context):
        ack()
        if event.get("subtype") in IGNORED_SUBTYPES or event.get("bot_id"):
            return
        channel, thread = event.get("channel"), event.get("thread_ts")
        bot_user = context.get("bot_user_id")
        if event.get("channel_type") == "im":
            submit(Question(text=clean(event.get("text")), channel=channel, user=event.get("user"),
                            team=body.get("team_id"), thread_ts=thread, message_ts=event.get("ts"),
                            assistant=thread is not None))
            return
        # In channels only follow-ups in a thread the bot answered; a message mentioning the bot is
        # answered through app_mention, not twice.
        if not thread or (bot_user and f"<@{bot_user}" in (event.get("text") or "")):
            return
        if bot_answered_thread(services.engine, channel, thread):
            submit(Question(text=clean(event.get("text")), channel=channel, user=event.get("user"),
                            team=body.get("team_id"), thread_ts=thread, message_ts=event.get("ts")))

    def ask_command(q_text: str, body: dict, respond) -> None:
        submit(Question(text=q_text.strip(), channel=body.get("channel_id"), user=body.get("user_id"),
                        team=body.get("team_id"), respond=respond))

    services.extra["ask_command"] = ask_command
