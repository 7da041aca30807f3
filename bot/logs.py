"""Log lines as text or, with APPRENTI_LOG_FORMAT=json, one JSON object per line for a log collector,
carrying the Slack event id of the request being handled (`event_id`), set by the Slack face and
copied into the threads that answer it."""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
from datetime import UTC, datetime

# The Slack event being handled in this context (None outside one).
EVENT_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("apprenti_event_id", default=None)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "thread": record.threadName,
        }
        event_id = EVENT_ID.get()
        if event_id:
            data["event_id"] = event_id
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


def configure(log_format: str = "text") -> None:
    """With "json", give the root logger's handlers the JSON format (the command line set them up as text)."""
    if log_format != "json":
        return
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.WARNING)
    for handler in root.handlers:
        handler.setFormatter(JsonFormatter())


@contextlib.contextmanager
def for_event(event_id: str | None):
    """Log lines written inside (and in the jobs submitted from inside) carry this event id."""
    token = EVENT_ID.set(event_id)
    try:
        yield
    finally:
        EVENT_ID.reset(token)
