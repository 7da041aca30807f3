"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Offline, quiet, deterministic: set before any library reads them.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["ANONYMIZED_TELEMETRY"] = "False"
os.environ["TOKENIZERS_PARALLELISM"] = "false"


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


@pytest.fixture
def engine(tmp_path):
    """A migrated SQLite database in a temporary folder."""
    from storage.db import open_database

    engine = open_database(f"sqlite:///{tmp_path / 'test.db'}")
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server started for this test session (Debian's package; .ci/run installs it),
    the same one `apprenti cluster` starts (bot/cli/cluster.py)."""
    import shutil

    from bot.cli.cluster import ClusterError, LocalPostgres

    try:
        server = LocalPostgres(database="postgres")
    except ClusterError as exc:
        pytest.skip(f"{exc}")
    try:
        server.start()
        yield server.url.replace("postgresql://", "postgresql+psycopg2://")
    finally:
        server.stop("immediate")
        shutil.rmtree(server.folder, ignore_errors=True)


@pytest.fixture
def pg_engine(postgres_url):
    """A fresh, migrated database on the session's PostgreSQL server."""
    import uuid

    from sqlalchemy import create_engine, text

    from storage.db import open_database

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = open_database(postgres_url.rsplit("/", 1)[0] + f"/{name}")
    yield engine
    engine.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()
