from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.settings import Settings, SettingsError, env_name, load_settings

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"


def test_defaults_live_in_the_home(isolated_env):
    s = load_settings()
    assert s.home == isolated_env
    assert s.database_url == f"sqlite:///{isolated_env / 'apprenti.db'}"
    assert s.chroma_path == isolated_env / "chroma"
    assert s.llm_backend == "local"
    assert s.admins == []


def test_constructor_beats_environment_which_beats_defaults(monkeypatch):
    monkeypatch.setenv("APPRENTI_RAG_K", "7")
    assert load_settings().rag_k == 7
    assert load_settings(rag_k=9).rag_k == 9


def test_lists_are_comma_separated_and_slack_names_are_kept(monkeypatch):
    monkeypatch.setenv("APPRENTI_ADMINS", "U1, S2 ,U3")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("SLACK_API_URL", "http://127.0.0.1:9/api")
    s = load_settings()
    assert s.admins == ["U1", "S2", "U3"]
    assert s.slack_bot_token == "xoxb-1"
    assert s.slack_api_url == "http://127.0.0.1:9/api/"


def test_empty_values_mean_default(monkeypatch, isolated_env):
    monkeypatch.setenv("APPRENTI_DATABASE_URL", "")
    assert load_settings().database_url.endswith("apprenti.db")


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("APPRENTI_MAX_NEW_TOKENS", "lots", "APPRENTI_MAX_NEW_TOKENS='lots'"),
        ("APPRENTI_LLM_BACKEND", "gpt", "APPRENTI_LLM_BACKEND='gpt'"),
        ("APPRENTI_EMBEDDING_BACKEND", "gpu", "APPRENTI_EMBEDDING_BACKEND='gpu'"),
        ("APPRENTI_TEMPERATURE", "5", "less than or equal to 2"),
        ("APPRENTI_QUIET_HOURS", "night", "two hours like 08-18"),
        ("APPRENTI_AUTO_PROMOTE", "perhaps", "APPRENTI_AUTO_PROMOTE"),
    ],
)
def test_invalid_values_name_the_variable(monkeypatch, name, value, expected):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert expected in str(info.value)


def test_unwritable_home_is_reported(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SettingsError, match="APPRENTI_HOME"):
        load_settings(home=blocker / "sub").ensure_home()


def test_every_setting_is_in_env_example():
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), re.M))
    missing = {env_name(field) for field in Settings.model_fields} - listed
    assert not missing, f".env.example lacks {sorted(missing)}"
