"""Prometheus metrics of a serving or training process (prometheus-client's default registry, so the
process's CPU, memory and file descriptors come with them).

Counted in the process: acks and answers (latency histograms), answers by mode and adapter,
feedback, retrieval hits, the depth of the in-process queues. Read from the database when scraped:
training runs by track and outcome and the gate's verdicts, which the `apprenti train` processes
decide and which every process then reports alike (sum nothing across processes: take `max`).

Over HTTP, `GET /metrics` sits next to `/slack/events`; Socket Mode and `apprenti worker` serve it
on APPRENTI_METRICS_PORT.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import Engine

from bot import messages as text

log = logging.getLogger("apprenti.metrics")

# An ack must be under Slack's 3 s; an answer takes seconds on a CPU, more with a long prompt.
ACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 3.0, 5.0)
ANSWER_BUCKETS = (0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)

ACK_SECONDS = Histogram(
    "apprenti_ack_seconds",
    "Time from a Slack request's arrival to its acknowledgement.",
    ["kind"],
    buckets=ACK_BUCKETS,
)
ANSWER_SECONDS = Histogram(
    "apprenti_answer_seconds",
    "Time to produce an answer (retrieval, prompt, model).",
    ["mode"],
    buckets=ANSWER_BUCKETS,
)
ANSWERS = Counter(
    "apprenti_answers",
    "Answers produced, by mode, adapter (base: none) and outcome.",
    ["mode", "adapter", "outcome"],
)
FEEDBACK = Counter(
    "apprenti_feedback", "Votes on answers (up or down); feedback rate = this / answers.", ["vote"]
)
RETRIEVAL = Counter(
    "apprenti_retrieval",
    "Questions that retrieved: hit (passages cited), miss (none good enough) or error (index unavailable).",
    ["result"],
)
QUEUE_DEPTH = Gauge("apprenti_queue_depth", "Jobs waiting or running in this process, by queue.", ["queue"])


# Interactivity payload types kept as labels; anything else (a forged request is parsed before Bolt
# checks its signature) is "other", so no request can grow the label set.
INTERACTIVE_KINDS = {
    "block_actions",
    "block_suggestion",
    "view_submission",
    "view_closed",
    "shortcut",
    "message_action",
}


def kind_of(body: dict) -> str:
    """A Slack request's kind for the ack histogram: event, command, or the interactivity payload's type."""
    if body.get("type") == "event_callback" or "event" in body:
        return "event"
    if "command" in body:
        return "command"
    kind = body.get("type")
    return kind if kind in INTERACTIVE_KINDS else "other"


def observe_ack(kind: str, seconds: float) -> None:
    ACK_SECONDS.labels(kind=kind).observe(seconds)


def observe_answer(answer, seconds: float | None = None) -> None:
    """Count one answer of the pipeline (bot.assistant.Answer)."""
    if answer.mode == "none":  # an empty question, answered with a hint
        return
    seconds = answer.latency_ms / 1000 if seconds is None else seconds
    ANSWER_SECONDS.labels(mode=answer.mode).observe(seconds)
    ANSWERS.labels(
        mode=answer.mode, adapter=answer.adapter or "base", outcome="error" if answer.error else "ok"
    ).inc()
    if answer.sources:
        RETRIEVAL.labels(result="hit").inc()
    elif text.NO_SOURCE in answer.notices:
        RETRIEVAL.labels(result="miss").inc()
    elif any(n.startswith(text.INDEX_DOWN.split("{", 1)[0]) for n in answer.notices):
        RETRIEVAL.labels(result="error").inc()


def observe_vote(value: int) -> None:
    FEEDBACK.labels(vote="up" if value > 0 else "down").inc()


def watch_queue(name: str, depth: Callable[[], int]) -> None:
    """Report `depth()` as the queue's depth at each scrape (the last call for a name wins)."""
    QUEUE_DEPTH.labels(queue=name).set_function(depth)


class DatabaseCollector:
    """Training runs and gate verdicts, counted in the database at scrape time (cached a few seconds,
    so a scraper polling fast costs the database little)."""

    def __init__(self, cache_seconds: float = 5.0):
        self.engine: Engine | None = None
        self.cache_seconds = cache_seconds
        self._cached: tuple[float, list] = (0.0, [])
        self._lock = threading.Lock()

    def describe(self):
        return []  # families are produced at scrape time; nothing to check at registration

    def collect(self):
        with self._lock:
            taken, families = self._cached
            if self.engine is not None and time.monotonic() - taken >= self.cache_seconds:
                try:
                    families = self._read(self.engine)
                except Exception as exc:  # noqa: BLE001 - a scrape must not fail for a database hiccup
                    log.warning("training metrics not read from the database: %s", exc)
                self._cached = (time.monotonic(), families)
        yield from families

    @staticmethod
    def _read(engine: Engine) -> list:
        from storage.models import RunStatus
        from storage.runs import run_counts

        runs = GaugeMetricFamily(
            "apprenti_training_runs",
            "Training runs in the database, by track and status "
            "(queued, running, succeeded, failed, rejected by the gate).",
            labels=["track", "status"],
        )
        verdicts = GaugeMetricFamily(
            "apprenti_gate_verdicts",
            "Gate verdicts on trained candidates, by track: passed (the run succeeded) or failed (rejected).",
            labels=["track", "verdict"],
        )
        for track, status, count in run_counts(engine):
            runs.add_metric([track, status], count)
            if status in (RunStatus.succeeded.value, RunStatus.rejected.value):
                verdict = "passed" if status == RunStatus.succeeded.value else "failed"
                verdicts.add_metric([track, verdict], count)
        return [runs, verdicts]


_database = DatabaseCollector()
_registered = False
_registration = threading.Lock()


def watch_database(engine: Engine) -> None:
    """Report this database's training runs and gate verdicts (once per process; the last engine wins)."""
    global _registered
    with _registration:
        _database.engine = engine
        _database._cached = (0.0, [])
        if not _registered:
            REGISTRY.register(_database)
            _registered = True


def serve_port(port: int, host: str = "0.0.0.0") -> bool:
    """Serve /metrics on its own port (Socket Mode, the worker). A port in use is logged, not fatal:
    the process's real work matters more than its metrics."""
    if not port:
        return False
    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        log.error("metrics not served on port %s: %s (set APPRENTI_METRICS_PORT to a free port)", port, exc)
        return False
    log.warning("metrics on http://%s:%s/metrics", host, port)
    return True
