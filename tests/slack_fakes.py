"""Slack at the network edge, for tests and benchmarks: the product's stand-in for the Web API
(bot/slack/standin.py) plus real request bodies from tests/data/slack as templates."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qsl

from bot.slack.standin import (  # noqa: F401 - re-exported for the tests
    BOT_ID,
    BOT_USER,
    TEAM,
    command_body,
    form_body,
    signature,
    signed_headers,
)
from bot.slack.standin import SlackStandIn as FakeSlack  # noqa: F401

SLACK_DATA = Path(__file__).resolve().parent / "data" / "slack"


def template(name: str) -> dict:
    """A real Slack request body from tests/data/slack (JSON, or a form's parsed fields)."""
    path = SLACK_DATA / name
    if name.endswith(".form.txt"):
        fields = dict(parse_qsl(path.read_text().strip()))
        return json.loads(fields["payload"]) if "payload" in fields else fields
    return json.loads(path.read_text())
