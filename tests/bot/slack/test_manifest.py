"""The manifest creates an app that matches the code: command, shortcut, events and scopes."""

from __future__ import annotations

from pathlib import Path

import yaml

from bot.slack import blocks as ui
from bot.slack.middleware import COMMAND

REPO = Path(__file__).resolve().parents[3]


def manifest() -> dict:
    return yaml.safe_load((REPO / "slack-manifest.yml").read_text())


def test_manifest_matches_the_listeners(slack):
    data = manifest()
    features, settings = data["features"], data["settings"]
    assert [c["command"] for c in features["slash_commands"]] == [COMMAND]
    assert [s["callback_id"] for s in features["shortcuts"]] == [ui.CORRECT_SHORTCUT]
    assert features["app_home"]["home_tab_enabled"] and settings["interactivity"]["is_enabled"]
    events = set(settings["event_subscriptions"]["bot_events"])
    listened = set()
    for listener in slack.app._listeners:
        for matcher in listener.matchers:
            func = getattr(matcher, "func", None)
            closure = [c.cell_contents for c in (func.__closure__ or [])] if func else []
            listened |= {c for c in closure if isinstance(c, str)}
    for event in ("app_mention", "app_home_opened", "app_context_changed", "message"):
        assert event in listened
        assert any(e == event or e.startswith(event + ".") for e in events), event
    assert "message.im" in events


def test_manifest_uses_the_agent_experience():
    from bot import messages as text

    features = manifest()["features"]
    assert "assistant_view" not in features  # new apps can only get agent_view
    agent = features["agent_view"]
    assert agent["agent_description"].strip()
    assert [(p["title"], p["message"]) for p in agent["suggested_prompts"]] == list(
        text.SLACK_SUGGESTED_PROMPTS
    )
    assert (
        features["app_home"]["messages_tab_enabled"]
        and not features["app_home"]["messages_tab_read_only_enabled"]
    )
    assert manifest()["settings"]["socket_mode_enabled"] is True


def test_manifest_scopes_cover_the_calls():
    scopes = set(manifest()["oauth_config"]["scopes"]["bot"])
    for needed in (
        "app_mentions:read",
        "chat:write",
        "commands",
        "im:history",
        "assistant:write",
        "usergroups:read",
        "files:write",
        "channels:history",
    ):
        assert needed in scopes


def test_every_url_points_at_the_single_endpoint():
    data = manifest()
    urls = [
        data["settings"]["event_subscriptions"]["request_url"],
        data["settings"]["interactivity"]["request_url"],
        data["features"]["slash_commands"][0]["url"],
    ]
    assert all(url.endswith("/slack/events") for url in urls)
