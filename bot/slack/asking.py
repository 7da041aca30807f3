"""Questions from Slack: mentions, DMs, follow-ups in threads the bot answered and `/apprenti ask`
(the agent pane's lifecycle is in agent.py). Listeners only parse and ack; the answer is made in the
AnswerPool and streamed into the question's thread (streaming.py)."""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from slack_sdk.errors import SlackApiError
from sqlmodel import select

from bot import messages as text
from bot.slack import blocks as ui
from bot.slack.answers import AnswerView, answer_messages, answer_tail
from bot.slack.context import ViewedProfiles, viewed_channel
from bot.slack.errors import report
from bot.slack.event_queue import current_hold
from bot.slack.services import Services
from bot.slack.streaming import AnswerStream
from storage.db import session_scope
from storage.models import Interaction

log = logging.getLogger("apprenti.slack.ask")

MENTION = re.compile(r"<@[UW][A-Z0-9]+(\|[^>]*)?>")
IGNORED_SUBTYPES = {
    "bot_message",
    "message_changed",
    "message_deleted",
    "channel_join",
    "channel_leave",
    "thread_broadcast",
    "message_replied",
    "assistant_app_thread",
}
TITLE_LIMIT = 80


@dataclass
class Question:
    text: str
    channel: str
    user: str
    team: str | None = None
    thread_ts: str | None = None  # the thread the question is in (None: top level)
    message_ts: str | None = None  # the question's own message
    dm: bool = False  # asked in the person's DM with Apprenti (the agent pane)
    viewed: str | None = None  # the channel the person was looking at (its profile applies)
    respond: Callable | None = None  # /apprenti ask: answer through the response_url

    @property
    def thread(self) -> str | None:
        """Where the answer goes: the question's thread, which a top-level question starts."""
        return self.thread_ts or self.message_ts

    @classmethod
    def from_message(
        cls, message: dict, team: str | None, *, dm: bool = False, viewed: str | None = None
    ) -> Question:
        """The question a Slack message event (`app_mention`, `message`, the agent's user message)
        asks, the bot's mention taken out."""
        return cls(
            text=clean(message.get("text")),
            channel=message.get("channel"),
            user=message.get("user"),
            team=team,
            thread_ts=message.get("thread_ts"),
            message_ts=message.get("ts"),
            dm=dm,
            viewed=viewed,
        )


def clean(question: str) -> str:
    """The question without the bot's mention."""
    return MENTION.sub("", question or "").strip()


def bot_answered_thread(engine, channel: str, thread_ts: str) -> bool:
    """Whether Apprenti answered in this thread before (so a follow-up there is meant for it)."""
    with session_scope(engine) as session:
        return (
            session.exec(
                select(Interaction.id)
                .where(Interaction.channel_id == channel, Interaction.thread_ts == thread_ts)
                .limit(1)
            ).first()
            is not None
        )


def _post(services: Services, q: Question, message: dict, private: bool) -> None:
    client = services.client
    if q.respond is not None:
        q.respond(response_type="ephemeral", replace_original=False, **message)
    elif private:
        client.chat_postEphemeral(channel=q.channel, user=q.user, thread_ts=q.thread, **message)
    else:
        client.chat_postMessage(channel=q.channel, thread_ts=q.thread, **message)


def deliver(services: Services, q: Question, messages: list[dict], private: bool) -> None:
    """Send an answer's messages; if Slack refuses, tell the asker by DM and log it."""
    try:
        for message in messages:
            _post(services, q, message, private)
    except SlackApiError as exc:
        error = exc.response.get("error") or str(exc)
        log.error("could not post the answer in %s (%s)", q.channel, error)
        try:
            services.client.chat_postMessage(
                channel=q.user,
                text=text.SLACK_ANSWER_FAILED.format(error=f"Slack refused the message: {error}"),
            )
        except SlackApiError as again:
            log.error("could not tell %s either (%s)", q.user, again.response.get("error"))


def assistant_for(services: Services, q: Question):
    """The answer pipeline, seeing the DM through the profile of the channel the person views."""
    assistant = services.assistant
    if not (q.dm and q.viewed and q.viewed != q.channel):
        return assistant
    viewing = copy.copy(assistant)
    viewing.profiles = ViewedProfiles(assistant.profiles, q.channel, q.viewed)
    return viewing


def show_thinking(services: Services, q: Question) -> None:
    """Slack's loading status under the question while retrieval and the first tokens run; a channel
    where Slack refuses it is not asked again (the stream then shows the first words instead)."""
    if not q.dm and not services.status_in_channels:
        return
    try:
        services.client.assistant_threads_setStatus(
            channel_id=q.channel,
            thread_ts=q.thread,
            status=text.SLACK_STATUS_THINKING,
            loading_messages=list(text.SLACK_LOADING_MESSAGES),
        )
    except SlackApiError as exc:
        log.info("no thinking status in %s: %s", q.channel, exc.response.get("error"))
        if not q.dm:
            services.status_in_channels = False


def set_title(services: Services, q: Question) -> None:
    """A new conversation in the agent pane is titled with its first question."""
    if not q.dm or (q.thread_ts and bot_answered_thread(services.engine, q.channel, q.thread_ts)):
        return
    try:
        services.client.assistant_threads_setTitle(
            channel_id=q.channel, thread_ts=q.thread, title=ui.clip(q.text, TITLE_LIMIT)
        )
    except SlackApiError as exc:
        log.info("could not title the thread in %s: %s", q.channel, exc.response.get("error"))


def answer_privately(services: Services, q: Question) -> None:
    """Ephemeral answers and /apprenti ask: not streamable, so `markdown` blocks in one go."""
    try:
        answer = services.assistant.answer(
            q.text, channel=q.channel, user=q.user, thread=q.thread, team=q.team, message_ts=q.message_ts
        )
        messages = answer_messages(AnswerView.from_answer(answer), ephemeral=True)
    except Exception:  # noqa: BLE001 - silence is a bug: the asker hears about every failure
        messages = [ui.notice_message(text.SLACK_ANSWER_FAILED.format(error=report(log, "answering")))]
    deliver(services, q, messages, private=True)


def answered_in_thread(services: Services, q: Question) -> bool:
    """Whether the question's thread already holds a whole answer of ours: a message of the app,
    after the question, with the tail's blocks (a stream cut off by a dying process has none)."""
    if not q.thread:
        return False
    try:
        replies = services.client.conversations_replies(channel=q.channel, ts=q.thread, limit=200)
    except SlackApiError as exc:
        log.info("could not read the thread in %s: %s", q.channel, exc.response.get("error"))
        return False
    from bot.slack.feedback import posted_by_bot

    after = float(q.message_ts or 0)
    me = services.identity

    def ours(m: dict) -> bool:
        if not me:  # Slack did not say who we are: any app's answer counts, rather than answer twice
            return bool(m.get("bot_id"))
        return posted_by_bot(m, me)

    return any(
        ours(m) and m.get("blocks") and float(m.get("ts") or 0) > after for m in replies.get("messages") or []
    )


def answer_question(services: Services, q: Question) -> None:
    """Runs in the AnswerPool: the thinking status, the pipeline streamed into the thread, then the
    tail (or, when streaming fails, the whole answer posted and the person told why)."""
    hold = current_hold()
    if hold is not None and hold.queue.lost(hold.event_id):
        # This process stalled past its claim and another one took the event over: one answer only.
        log.warning("event %s is being answered by another process; not answering it here", hold.event_id)
        return
    if hold is not None and hold.queue.taken_over(hold.event_id) and answered_in_thread(services, q):
        # The process that held it posted the answer and died before marking the event done.
        log.warning("event %s was answered by the process that died; not answering it again", hold.event_id)
        return
    try:
        private = q.respond is not None or (
            not q.dm and services.runtime.profiles.for_channel(q.channel).ephemeral
        )
    except Exception:  # noqa: BLE001 - a broken profile file is still told to the asker
        deliver(
            services,
            q,
            [
                ui.notice_message(
                    text.SLACK_ANSWER_FAILED.format(error=report(log, "reading the channel profiles"))
                )
            ],
            False,
        )
        return
    if private:
        answer_privately(services, q)
        return
    show_thinking(services, q)
    set_title(services, q)
    stream = AnswerStream(services.client, channel=q.channel, thread_ts=q.thread, user=q.user, team=q.team)
    try:
        answer = assistant_for(services, q).answer(
            q.text,
            channel=q.channel,
            user=q.user,
            thread=q.thread,
            team=q.team,
            message_ts=q.message_ts,
            on_text=stream,
        )
        view = AnswerView.from_answer(answer)
    except Exception:  # noqa: BLE001 - silence is a bug: the asker hears about every failure
        notice = text.SLACK_ANSWER_FAILED.format(error=report(log, "answering"))
        if not stream.interrupt(notice):
            deliver(services, q, [ui.notice_message(notice)], False)
        return
    if stream.finish(view, answer_tail(view)):
        return
    messages = answer_messages(view)
    if stream.shown:  # part of the answer is on screen: say why it is sent again in full
        messages.insert(0, ui.notice_message(text.SLACK_STREAM_INTERRUPTED.format(error=stream.error)))
    deliver(services, q, messages, False)


def submit(services: Services, q: Question) -> None:
    """Answered off the ack path, in the AnswerPool (an empty question is answered with a hint)."""
    services.pool.submit(answer_question, services, q)


def ask_command(services: Services, q_text: str, body: dict, respond) -> None:
    """`/apprenti ask …`: answered privately, through the command's response_url."""
    submit(
        services,
        Question(
            text=q_text.strip(),
            channel=body.get("channel_id"),
            user=body.get("user_id"),
            team=body.get("team_id"),
            respond=respond,
        ),
    )


def register(app, services: Services) -> None:
    viewed = services.viewed

    @app.event("app_mention")
    def on_mention(event, body, ack):
        ack()
        submit(services, Question.from_message(event, body.get("team_id")))

    @app.event("message")
    def on_message(event, body, ack, context):
        ack()
        if event.get("subtype") in IGNORED_SUBTYPES or event.get("bot_id"):
            return
        channel, thread = event.get("channel"), event.get("thread_ts")
        bot_user = context.get("bot_user_id")
        if event.get("channel_type") == "im":
            viewed.remember(channel, viewed_channel(event), thread)
            question = Question.from_message(
                event, body.get("team_id"), dm=True, viewed=viewed.viewed(channel, thread)
            )
            submit(services, question)
            return
        # In channels only follow-ups in a thread the bot answered; a message mentioning the bot is
        # answered through app_mention, not twice.
        if not thread or (bot_user and f"<@{bot_user}" in (event.get("text") or "")):
            return
        if bot_answered_thread(services.engine, channel, thread):
            submit(services, Question.from_message(event, body.get("team_id")))
