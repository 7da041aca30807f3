"""At-least-once answers: every Slack event goes through the durable queue (storage/events.py).

The process that receives an event writes it to the database, claimed by itself, before Slack gets
its ack, and dispatches it to the Bolt app inside a `Hold`. The hold counts the work the event
started: the dispatch, and every job submitted to an AnswerPool from inside it (Bolt's listener
threads, then the answer), since the pools carry the submitter's context variables into their jobs.
When the count falls to zero the answer is out (or the person was told it failed) and the event is
marked done.

A poller thread in every serving process renews the claims of the events it holds, and claims the
events whose claim expired (their holder died) and answers them. A Slack retry finds the event's row
on any replica and is dropped, so one event is answered once, by whichever process holds it.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import queue
import socket
import threading
import uuid
from concurrent.futures import Future
from datetime import timedelta

from prometheus_client import Counter
from slack_bolt import BoltRequest

from bot.logs import for_event
from storage.events import (
    claim_due,
    enqueue_event,
    enqueue_events,
    finish_event,
    release_events,
    renew_events,
)

log = logging.getLogger("apprenti.slack.queue")

RECLAIMED = Counter(
    "apprenti_events_reclaimed",
    "Slack events this process answered after another process's claim on them expired (it died or stalled).",
)
WRITE_BATCH = 200  # most events written in one transaction
HOLD: contextvars.ContextVar[Hold | None] = contextvars.ContextVar("apprenti_event_hold", default=None)


def current_hold() -> Hold | None:
    """The event whose work is running in this context (None outside one)."""
    return HOLD.get()


def process_name() -> str:
    """This process's name as a claim holder: unique even for two queues in one process."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Hold:
    """The work one event started, counted; the event is finished when the count falls to zero."""

    def __init__(self, queue: EventQueue, event_id: str):
        self.queue, self.event_id = queue, event_id
        self._count = 0
        self._lock = threading.Lock()

    def enter(self) -> None:
        with self._lock:
            self._count += 1

    def exit(self) -> None:
        with self._lock:
            self._count -= 1
            last = self._count == 0
        if last:
            self.queue.finished(self.event_id)


class EventQueue:
    """This process's side of the queue: what it holds, and the poller that renews and claims."""

    def __init__(
        self,
        engine,
        *,
        lease: float = 30.0,
        poll_interval: float = 2.0,
        max_attempts: int = 3,
        capacity: int = 8,
        holder: str | None = None,
    ):
        self.engine = engine
        self.lease = timedelta(seconds=lease)
        self.poll_interval = poll_interval
        self.max_attempts = max_attempts
        self.capacity = capacity  # events this process claims from others at most at once
        self.holder = holder or process_name()
        self._held: set[str] = set()
        self._unfinished: set[str] = set()  # answered, but the database refused "done": retried each tick
        self._lost: set[str] = set()  # claims another process took over (this one stalled past the lease)
        self._taken: set[str] = set()  # events this process claimed from another one (its holder died)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._dispatch = None
        self._incoming: queue.SimpleQueue = queue.SimpleQueue()
        self._writer: threading.Thread | None = None

    # --- receiving --------------------------------------------------------------------------------
    def accept_soon(self, event_id: str, body: str) -> Future:
        """`accept`, done by the queue's writer thread, which writes the events arriving together in
        one transaction: under a burst, one commit (and no lock convoy) for many acks. The future's
        result is what `accept` returns."""
        future: Future = Future()
        with self._lock:
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_loop, name="apprenti-event-writer", daemon=True
                )
                self._writer.start()
        self._incoming.put((event_id, body, future))
        return future

    def _write_loop(self) -> None:
        while True:
            batch = [self._incoming.get()]
            while len(batch) < WRITE_BATCH:
                try:
                    batch.append(self._incoming.get_nowait())
                except queue.Empty:
                    break
            try:
                fresh = enqueue_events(
                    self.engine, [(event_id, body) for event_id, body, _ in batch], self.holder, self.lease
                )
            except Exception as exc:  # noqa: BLE001 - each waiting request answers Slack with an error
                for _, _, future in batch:
                    future.set_exception(exc)
                continue
            with self._lock:
                self._held.update(fresh)
            for event_id, _, future in batch:
                future.set_result(event_id in fresh)
                fresh.discard(event_id)  # a second copy in the same batch is the first one's retry

    def accept(self, event_id: str, body: str) -> bool:
        """Write a received event, claimed by this process; False for a retry of a queued event (this
        process or another one holds, held or answered it). Raises when the database is unreachable:
        Slack then gets an error instead of an ack, and retries."""
        if not enqueue_event(self.engine, event_id, body, self.holder, self.lease):
            return False
        with self._lock:
            self._held.add(event_id)
        return True

    @contextlib.contextmanager
    def handling(self, event_id: str):
        """Run the event's dispatch inside its hold; the event is done when all it started is."""
        hold = Hold(self, event_id)
        hold.enter()
        token = HOLD.set(hold)
        try:
            with for_event(event_id):
                yield hold
        finally:
            HOLD.reset(token)
            hold.exit()

    def run(self, app, event_id: str, body: str) -> None:
        """Dispatch a claimed event to the Bolt app. Its signature was checked when it was received
        (maybe minutes ago, past Slack's 5-minute window), so Bolt is told not to check it again."""
        try:
            payload = json.loads(body)
        except ValueError:
            log.error("queued event %s is not JSON; dropped", event_id)
            self.finished(event_id, error="not JSON")
            return
        with self.handling(event_id):
            response = app.dispatch(BoltRequest(body=payload, mode="socket_mode"))
        if response.status != 200:
            log.warning(
                "event %s dispatch answered %s: %s", event_id, response.status, str(response.body)[:200]
            )

    def finished(self, event_id: str, error: str | None = None) -> None:
        try:
            if not finish_event(self.engine, event_id, self.holder, error=error):
                log.warning("event %s was taken over by another process before it was marked done", event_id)
        except Exception as exc:  # noqa: BLE001 - the database is away: keep the claim, retry at each tick
            log.warning("could not mark event %s done (%s); retrying", event_id, exc)
            with self._lock:
                self._unfinished.add(event_id)
            return
        with self._lock:
            self._held.discard(event_id)
            self._taken.discard(event_id)

    def lost(self, event_id: str) -> bool:
        """Whether another process took this event over (its answer is theirs to give, not ours)."""
        with self._lock:
            return event_id in self._lost

    def taken_over(self, event_id: str) -> bool:
        """Whether this process claimed the event from another one, which may have answered it
        before it died (the answer out, the event not yet marked done)."""
        with self._lock:
            return event_id in self._taken

    @property
    def held(self) -> int:
        with self._lock:
            return len(self._held)

    # --- the poller ------------------------------------------------------------------------------
    def start(self, dispatch) -> None:
        """Start the poller; `dispatch(event_id, body)` handles a claimed event off the poller's thread."""
        self._dispatch = dispatch
        self._thread = threading.Thread(target=self._loop, name="apprenti-event-poller", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_interval):
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 - the database restarting: the next tick tries again
                log.warning("event queue: %s", exc)

    def tick(self) -> list[str]:
        """Finish what was answered, renew what is held, claim what expired; returns the ids claimed."""
        with self._lock:
            unfinished = list(self._unfinished)
            self._unfinished.clear()
        for event_id in unfinished:
            self.finished(event_id)
        with self._lock:
            held = set(self._held)
        if held:
            kept = renew_events(self.engine, self.holder, held, self.lease)
            lost = held - kept
            if lost:
                with self._lock:
                    still = lost & self._held
                    self._held -= still
                    self._taken -= still
                    self._lost |= still
                if still:
                    log.warning(
                        "lost the claim on %d event(s) to another process: %s", len(still), sorted(still)[:5]
                    )
        if self._dispatch is None:
            return []
        room = self.capacity - self.held
        claimed = claim_due(self.engine, self.holder, self.lease, limit=room, max_attempts=self.max_attempts)
        for event_id, body in claimed:
            with self._lock:
                self._held.add(event_id)
                self._taken.add(event_id)
            log.warning("answering event %s, left unanswered by another process", event_id)
            RECLAIMED.inc()
            self._dispatch(event_id, body)
        return [event_id for event_id, _ in claimed]

    def stop(self, release: bool = True) -> None:
        """Stop the poller; with `release`, give back the claims still held, for another process."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.poll_interval + 5)
        if release:
            with self._lock:
                held = list(self._held - self._unfinished)
            try:
                if released := release_events(self.engine, self.holder, held):
                    log.warning("gave back %d unanswered event(s) to the other processes", released)
            except Exception as exc:  # noqa: BLE001 - they expire on their own
                log.warning("could not give back %d event(s): %s", len(held), exc)
