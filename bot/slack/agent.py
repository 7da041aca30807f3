"""The agent pane: Slack's agent experience (`features.agent_view`: the Chat tab opens with
`app_home_opened`, `tab == "messages"`; what the person views arrives with `app_context_changed`)
and the older assistant pane (`assistant_view`), whose thread lifecycle Bolt's Assistant handles.
Both end in the same place: a DM question answered through the viewed channel's profile."""

from __future__ import annotations

import logging

from slack_bolt import Assistant
from slack_sdk.errors import SlackApiError

from bot import messages as text
from bot.slack.asking import Question, submit
from bot.slack.context import ViewedChannels, viewed_channel
from bot.slack.services import Services

log = logging.getLogger("apprenti.slack.agent")


def suggested_prompts() -> list[dict[str, str]]:
    return [{"title": title, "message": message} for title, message in text.SLACK_SUGGESTED_PROMPTS]


def chat_tab(event: dict) -> bool:
    return event.get("tab") == "messages"


def register(app, services: Services) -> None:
    viewed: ViewedChannels = services.viewed

    @app.event("app_home_opened", matchers=[chat_tab])
    def on_chat_opened(event, ack, set_suggested_prompts):
        ack()
        viewed.remember(event.get("channel"), viewed_channel(event))
        try:
            set_suggested_prompts(prompts=suggested_prompts(), title=text.SLACK_SUGGESTED_TITLE)
        except SlackApiError as exc:
            log.warning("could not suggest prompts to %s: %s", event.get("user"), exc.response.get("error"))

    @app.event("app_context_changed")
    def on_context_changed(event, ack):
        ack()
        viewed.remember(event.get("channel"), viewed_channel(event))

    assistant = Assistant(thread_context_store=viewed)  # the assistant pane's context lands in `viewed`

    @assistant.thread_started
    def on_thread_started(payload, set_suggested_prompts, say):
        thread = payload.get("assistant_thread") or {}
        viewed.remember(thread.get("channel_id"), viewed_channel(payload), thread.get("thread_ts"))
        try:
            set_suggested_prompts(prompts=suggested_prompts(), title=text.SLACK_SUGGESTED_TITLE)
            say(text.SLACK_ASSISTANT_GREETING)
        except SlackApiError as exc:
            log.error("could not set up the assistant thread: %s", exc.response.get("error"))

    @assistant.user_message
    def on_user_message(payload, body):
        channel, thread = payload["channel"], payload.get("thread_ts")
        viewed.remember(channel, viewed_channel(payload), thread)
        question = Question.from_message(
            payload, body.get("team_id"), dm=True, viewed=viewed.viewed(channel, thread)
        )
        submit(services, question)

    app.assistant(assistant)
