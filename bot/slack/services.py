"""What the listeners share: the runtime, the roles, and the pool that answers off the ack path."""

from __future__ import annotations

import contextvars
import logging
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from slack_sdk import WebClient

from bot.roles import Roles
from bot.slack.context import ViewedChannels
from bot.slack.event_queue import EventQueue, current_hold
from plugins.pii import scrub

log = logging.getLogger("apprenti.slack")


def lower_priority(nice: int) -> None:
    """Lower the calling thread's CPU priority (Linux schedules threads individually; threads it starts,
    such as torch's, inherit it). The model then yields the CPU to the threads that ack Slack."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except OSError as exc:
        log.debug("cannot lower the priority of %s: %s", threading.current_thread().name, exc)


class AnswerPool:
    """A thread pool of its own for the slow work (the model), so Bolt's listener threads, and with
    them the acks, never wait behind an answer being generated."""

    def __init__(self, workers: int = 2, name: str = "apprenti-answer", nice: int = 0):
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix=name, initializer=lower_priority, initargs=(nice,)
        )
        self._pending = 0
        self._idle = threading.Condition()

    def submit(self, fn, *args, **kwargs) -> Future:
        with self._idle:
            self._pending += 1
        hold = current_hold()  # the Slack event this job works for is done only after the job
        if hold is not None:
            hold.enter()

        def run():
            try:
                return fn(*args, **kwargs)
            except Exception:  # the job tells the user itself; this only keeps the pool alive
                log.exception("background job failed")
            finally:
                if hold is not None:
                    hold.exit()
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

        # The submitter's context variables (the Slack event id of its log lines) follow the job.
        return self._executor.submit(contextvars.copy_context().run, run)

    @property
    def pending(self) -> int:
        return self._pending

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until every submitted job has finished (tests, graceful shutdown)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout=timeout)

    def shutdown(self, wait: bool = True) -> None:
        self._executor.shutdown(wait=wait, cancel_futures=not wait)


@dataclass
class Services:
    runtime: Any  # bot.runtime.Runtime
    client: WebClient
    roles: Roles
    pool: AnswerPool
    listeners: AnswerPool | None = None  # Bolt's listener threads, counted so shutdown can drain them
    review_channel: str | None = None
    admin_channel: str | None = None
    # The channel each DM's person views in the agent pane (its profile applies to the DM's answers).
    viewed: ViewedChannels = field(default_factory=ViewedChannels)
    # Cleared when Slack refuses the thinking status in a channel: channels are not asked again.
    status_in_channels: bool = True

    @cached_property
    def event_queue(self) -> EventQueue:
        """The process's side of the durable event queue (bot/slack/event_queue.py), made once per app."""
        settings = self.runtime.settings
        return EventQueue(
            self.engine,
            lease=settings.event_lease,
            poll_interval=settings.event_poll_interval,
            max_attempts=settings.event_max_attempts,
        )

    @cached_property
    def identity(self) -> dict[str, str]:
        """The app's own `bot_id` and `bot_user_id`, named as in Bolt's context (auth.test, once per app);
        empty when Slack could not say."""
        from slack_sdk.errors import SlackApiError

        try:
            found = self.client.auth_test()
        except SlackApiError as exc:
            log.warning(
                "auth.test failed (%s): the app's own messages cannot be told from other bots'",
                exc.response.get("error"),
            )
            return {}
        named = {"bot_id": found.get("bot_id"), "bot_user_id": found.get("user_id")}
        return {k: v for k, v in named.items() if v}

    @cached_property
    def operations(self):
        """The admin engines behind /apprenti and the App Home buttons (one per Slack face)."""
        from bot.slack.operations import Operations

        return Operations(self.runtime)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Until no answer is being made and no listener runs (a listener may start an answer, so loop)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pools = [p for p in (self.listeners, self.pool) if p is not None]
            for pool in pools:
                if not pool.wait_idle(max(0.0, deadline - time.monotonic())):
                    return False
            if all(p.pending == 0 for p in pools):
                return True
        return False

    @property
    def engine(self):
        return self.runtime.engine

    @property
    def assistant(self):
        return self.runtime.assistant

    @property
    def plugins(self):
        return self.runtime.plugins

    def scrub(self, value: str | None) -> str | None:
        return scrub(self.plugins, value)

    def example_changed(self, example, action: str) -> bool | None:
        """Tell the plugins a pair changed (bot.corrections.tell_plugins); never fatal to the click."""
        from bot.corrections import tell_plugins

        return tell_plugins(self.plugins, example, action)
