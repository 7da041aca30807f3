"""Plugins see only their own configuration, never secrets, and each plugin manager has its own
plugin state."""

from __future__ import annotations

import json

import pytest

from bot.runtime import Runtime
from bot.settings import SettingsError, load_settings
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

    # Asks for secrets and URLs too: it gets the URLs without their credentials, and no secret.
    uses_settings = (*SECRETS, "database_url", "chroma_url", "openai_base_url", "rag_k", "home")

    def __init__(self):
        self.seen = []

    @hookimpl
    def startup(self, config):
        self.seen.append(config)


class Quiet:
    """A third-party plugin that names no Apprenti setting: it sees its own options only."""

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
    assert set(config) == {"database_url", "chroma_url", "openai_base_url", "rag_k", "home"}


def test_each_plugin_gets_its_own_options_from_the_config_file_and_nothing_else(tmp_path):
    path = tmp_path / "apprenti.yaml"
    path.write_text("plugins:\n  spy: {colour: blue}\n  quiet: {depth: 3, rag_k: 9}\n", encoding="utf-8")
    spy, quiet = Spy(), Quiet()
    settings = load_settings(**SECRETS, plugins=["spy", "quiet"], pii="off", config=str(path))
    Runtime(settings, entrypoints=False, plugins_extra={"spy": spy, "quiet": quiet}).plugins  # noqa: B018
    assert quiet.seen == [{"depth": 3, "rag_k": 9}]  # its own rag_k, not the setting
    [config] = spy.seen
    assert config["colour"] == "blue" and "depth" not in config and config["rag_k"] == 5


def test_options_for_a_plugin_not_loaded_or_a_setting_that_does_not_exist_are_refused(tmp_path):
    path = tmp_path / "apprenti.yaml"
    path.write_text("plugins:\n  spyy: {colour: blue}\n", encoding="utf-8")
    settings = load_settings(plugins=["spy"], pii="off", config=str(path))
    with pytest.raises(SettingsError, match="plugins: spyy is not a loaded plugin; loaded: .*spy"):
        Runtime(settings, entrypoints=False, plugins_extra={"spy": Spy()}).plugins  # noqa: B018

    class Greedy(Quiet):
        uses_settings = ("no_such_setting",)

    greedy = Runtime(
        load_settings(plugins=["greedy"], pii="off"), entrypoints=False, plugins_extra={"greedy": Greedy()}
    )
    with pytest.raises(SettingsError, match="unknown setting.*no_such_setting"):
        greedy.plugins  # noqa: B018


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
