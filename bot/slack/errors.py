"""Failures as people see them: a short sentence with an error id, the details in the log only.

An exception's text can hold an SQL statement and its parameters, a path or someone's question; Slack
gets none of it. The id is what an admin looks up in the log."""

from __future__ import annotations

import logging
import secrets

from bot import messages as text


def report(logger: logging.Logger, what: str) -> str:
    """Log the exception being handled with a fresh error id; returns what to show instead of it."""
    error_id = secrets.token_hex(4)
    logger.exception("%s failed [error %s]", what, error_id)
    return text.ERROR_ID.format(id=error_id)
