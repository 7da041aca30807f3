"""Plugins see their configuration without secrets, and each plugin manager has its own plugin state."""

from __future__ import annotations

import json

from bot.runtime import Runtime
from bot.settings import load_settings
from plugins.hookspecs import hookimpl
from plugins.manager import make_manager

SECRETS = {
    "slack_bot_token": "xoxb-bot-secret",
    "slack_app_token": "xapp-app-secret",
    "slack_signing_secret": "signing-secret-123",
    "openai_api_key": "sk-key-secret",
}


class Spy:
    """A third-party plugin that keeps the configuration startup gave it."""

    def __init__(self):
        self.seen = []

    @hookimpl
    def startup(self, config):
        self.seen.append(config)


class DatabaseSpy:
    @hookimpl
    def startup(self, database):
        self.database = database


def test_a_plugins_startup_never_sees_tokens_secrets_or_url_credentials():
    settings = load_settings(
        **SECRETS,
        plugins=["spy"],
        pii="off",
        database_url="postgresql+psycopg2://apprenti:db-password@db.example:5432/apprenti",
        chroma_url="http://reader:chroma-password@chroma.example:8000",
        openai_base_url="http://gpu-box:8000/v1",
    )
    spy = Spy()
    Runtime(settings, entrypoints=False, plugins_extra={"spy": spy}).plugins  # noqa: B018 - starts the plugins
    [config] = spy.seen
    text = json.dumps(config)
    for secret in [*SECRETS.values(), "db-password", "chroma-password", "apprenti:", "reader:"]:
        assert secret not in text
    assert not set(SECRETS) & set(config)
    assert config["database_url"] == "postgresql+psycopg2://db.example:5432/apprenti"
    assert config["chroma_url"] == "http://chroma.example:8000"
    assert config["openai_base_url"] == "http://gpu-box:8000/v1"  # URLs without credentials are unchanged
    assert config["rag_k"] == 5 and config["home"]


def test_plugins_reach_the_database_through_the_runtimes_engine():
    spy = DatabaseSpy()
    runtime = Runtime(
        load_settings(plugins=["spy"], pii="off"), entrypoints=False, plugins_extra={"spy": spy}
    )
    runtime.plugins  # noqa: B018
    assert spy.database() is runtime.engine  # no password needed, no second engine


def test_two_managers_in_one_process_do_not_share_plugin_state(tmp_path):
    first, second = (make_manager(["rag", "fewshot"], entrypoints=False) for _ in range(2))
    for name in ("rag", "fewshot"):
        assert first.get_plugin(name) is not second.get_plugin(name)
    first.hook.startup(
        config={"chroma_path": str(tmp_path / "a"), "fewshot_min_score": 0.9}, database=None, documents=None
    )
    second.hook.startup(
        config={"chroma_path": str(tmp_path / "b"), "fewshot_min_score": 0.1}, database=None, documents=None
    )
    assert first.get_plugin("rag").config["chroma_path"] == str(tmp_path / "a")
    assert first.get_plugin("fewshot").config["fewshot_min_score"] == 0.9
