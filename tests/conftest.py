"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Offline, quiet, deterministic: set before any library reads them.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["ANONYMIZED_TELEMETRY"] = "False"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
sys._called_from_test = True  # type: ignore[attr-defined]

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Each test gets its own APPRENTI_HOME and none of the caller's Apprenti or Slack variables."""
    for name in list(os.environ):
        if name.startswith(("APPRENTI_", "SLACK_")):
            monkeypatch.delenv(name, raising=False)
    home = tmp_path / "apprenti-home"
    monkeypatch.setenv("APPRENTI_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A random tiny Llama model with its tokenizer, made once per test session."""
    from finetune.tiny import make_tiny

    return make_tiny(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA} (../shared/data beside the checkout)")
    return SHARED_DATA


@pytest.fixture
def engine(tmp_path):
    """A migrated SQLite database in a temporary folder."""
    from storage.db import open_database

    engine = open_database(f"sqlite:///{tmp_path / 'test.db'}")
    yield engine
    engine.dispose()
