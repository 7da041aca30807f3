"""The channel a person is looking at while they talk to Apprenti, so its channel profile
(collections, tone, format, track) applies to the answer given in their DM.

Slack tells it three ways: the agent experience sends `app_context_changed` and puts the same
`context` on `message.im` and `app_home_opened` (entities ordered by relevance); the older assistant
pane sends `assistant_thread_started` / `assistant_thread_context_changed` with
`assistant_thread.context.channel_id`, which Bolt's Assistant saves through this store."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from slack_bolt.context.assistant.thread_context import AssistantThreadContext
from slack_bolt.context.assistant.thread_context_store.store import AssistantThreadContextStore

CHANNEL_ENTITY = "slack#/types/channel_id"
MESSAGE_ENTITY = "slack#/types/message_context"


def viewed_channel(event: dict[str, Any] | None) -> str | None:
    """The most relevant channel in an event's context, if it names one."""
    event = event or {}
    context = (
        event.get("context")
        or event.get("app_context")
        or (event.get("assistant_thread") or {}).get("context")
    )
    if not isinstance(context, dict):
        return None
    if context.get("channel_id"):
        return context["channel_id"]
    for entity in context.get("entities") or []:
        if entity.get("type") == CHANNEL_ENTITY and entity.get("value"):
            return entity["value"]
        if entity.get("type") == MESSAGE_ENTITY and isinstance(entity.get("value"), dict):
            if channel := entity["value"].get("channel_id"):
                return channel
    return None


class ViewedChannels(AssistantThreadContextStore):
    """What each person's DM with Apprenti was last looking at, per DM and per assistant thread.
    In memory and bounded: an event without context falls back to the last one seen, and after a
    restart to the DM's own profile until Slack sends context again."""

    def __init__(self, size: int = 10_000):
        self._seen: OrderedDict[tuple[str, str | None], dict] = OrderedDict()
        self._lock = threading.Lock()
        self.size = size

    def _put(self, key: tuple[str, str | None], context: dict) -> None:
        with self._lock:
            self._seen[key] = context
            self._seen.move_to_end(key)
            while len(self._seen) > self.size:
                self._seen.popitem(last=False)

    def remember(self, dm: str, channel: str | None, thread_ts: str | None = None) -> None:
        if dm and channel and channel != dm:
            self._put((dm, None), {"channel_id": channel})
            if thread_ts:
                self._put((dm, thread_ts), {"channel_id": channel})

    def viewed(self, dm: str, thread_ts: str | None = None) -> str | None:
        with self._lock:
            found = self._seen.get((dm, thread_ts)) if thread_ts else None
            found = found or self._seen.get((dm, None))
        return (found or {}).get("channel_id")

    # Bolt's AssistantThreadContextStore: the assistant pane's context per thread
    def save(self, *, channel_id: str, thread_ts: str, context: dict[str, str]) -> None:
        self.remember(channel_id, (context or {}).get("channel_id"), thread_ts)

    def find(self, *, channel_id: str, thread_ts: str) -> AssistantThreadContext | None:
        channel = self.viewed(channel_id, thread_ts)
        return AssistantThreadContext({"channel_id": channel}) if channel else None


class ViewedProfiles:
    """The runtime's profiles, except that the DM takes the profile of the channel being viewed."""

    def __init__(self, profiles, dm: str, viewed: str):
        self._profiles, self._dm, self._viewed = profiles, dm, viewed

    def for_channel(self, channel: str | None):
        return self._profiles.for_channel(self._viewed if channel == self._dm else channel)

    def __getattr__(self, name: str):
        return getattr(self._profiles, name)
