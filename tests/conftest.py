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


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory):
    """A real PostgreSQL server started for this test session (Debian's package; .ci/run installs it)."""
    import glob
    import shutil
    import subprocess
    import time

    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not bins:
        pytest.skip("PostgreSQL server not installed (apt-get install postgresql; .ci/run does it)")
    import tempfile

    bindir = Path(bins[-1]).parent
    # Not under pytest's private temporary folder: the server's own user must reach it.
    top = Path(tempfile.mkdtemp(prefix="apprenti-pg-"))
    data = top / "data"
    port = _free_port()
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL")
        as_postgres = ["runuser", "-u", "postgres", "--"]
        os.chmod(top, 0o777)
    subprocess.run([*as_postgres, str(bindir / "initdb"), "-D", str(data), "-U", "apprenti", "--auth=trust",
                    "-E", "UTF8"], check=True, capture_output=True)
    subprocess.run([*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(data / "server.log"),
                    "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True)
    try:
        url = f"postgresql+psycopg2://apprenti@127.0.0.1:{port}/postgres"
        from sqlalchemy import create_engine, text

        deadline = time.monotonic() + 30
        while True:
            try:
                with create_engine(url).connect() as conn:
                    conn.execute(text("select 1"))
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        yield url
    finally:
        subprocess.run([*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(top, ignore_errors=True)


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
