"""What the listeners share: the runtime, the roles, and the pool that answers off the ack path."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from slack_sdk import WebClient

from bot.roles import Roles
from plugins.pii import scrub

log = logging.getLogger("apprenti.slack")


class AnswerPool:
    """A thread pool of its own for the slow work (the model), so Bolt's listener threads, and with
    them the acks, never wait behind an answer being generated."""

    def __init__(self, workers: int = 2):
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="apprenti-answer")
        self._pending = 0
        self._idle = threading.Condition()

    def submit(self, fn, *args, **kwargs) -> Future:
        with self._idle:
            self._pending += 1

        def run():
            try:
                return fn(*args, **kwargs)
            except Exception:  # the job tells the user itself; this only keeps the pool alive
                log.exception("answer job failed")
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

        return self._executor.submit(run)

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
    review_channel: str | None = None
    admin_channel: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

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

    def example_changed(self, example, action: str) -> None:
        """Tell the plugins a training pair changed; a failing plugin is logged, never fatal to the click."""
        data = {"id": example.id, "question": example.question, "answer": example.corrected_answer,
                "track": example.track, "status": example.status}
        try:
            self.plugins.hook.example_changed(example=data, action=action)
        except Exception:  # noqa: BLE001 - a plugin's bug must not undo a reviewer's decision
            log.exception("a plugin failed in example_changed(%s)", action)
