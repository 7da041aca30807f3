"""The plain `postgresql://` URL, which SQLAlchemy 2.1 maps to psycopg 3, against the real server."""

from __future__ import annotations

import uuid

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from storage.db import open_database, session_scope
from storage.interactions import add_interaction, record_vote
from storage.models import Interaction


def test_plain_postgresql_url_uses_psycopg_3_and_migrates(postgres_url):
    server = make_url(postgres_url).set(drivername="postgresql")
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    plain = f"postgresql://{server.username}@{server.host}:{server.port}/{name}"
    engine = open_database(plain)
    try:
        assert engine.dialect.driver == "psycopg"
        interaction = add_interaction(
            engine, team_id="T1", channel_id="C1", user_id="U1", question="q?", answer="a.", mode="prompt"
        )
        record_vote(engine, interaction.id, "U2", 1)
        with session_scope(engine) as session:
            assert session.get(Interaction, interaction.id).question == "q?"
        with engine.connect() as conn:
            assert conn.execute(text("select version_num from alembic_version")).scalar()
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()
