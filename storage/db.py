"""Engine, sessions and migrations. Takes a plain SQLAlchemy URL; knows nothing of settings."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlmodel import Session

MIGRATIONS = Path(__file__).parent / "migrations"
_migrate_lock = threading.Lock()


class DatabaseError(Exception):
    """The database cannot be used; the message names the URL and what to do."""


def _redact(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """Create an engine; SQLite gets WAL mode, a busy timeout and enforced foreign keys."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError(
            f"malformed database URL {url!r}: expected e.g. sqlite:///path/apprenti.db "
            "or postgresql://user:password@host/dbname"
        ) from None
    kwargs: dict = {"echo": echo, "pool_pre_ping": True}
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        if parsed.database:
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        raise DatabaseError(f"database URL {_redact(url)}: unsupported driver ({exc})") from None

    if parsed.get_backend_name() == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA secure_delete=ON")  # erased rows are overwritten, not left in free pages
            cursor.close()
            # SQLAlchemy then starts each transaction itself (below) instead of the driver's deferred BEGIN.
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin_immediate(connection):
            # A deferred transaction that reads and then writes fails, or writes from a stale snapshot,
            # when another process wrote in between (two activations, two votes): taking the write lock
            # at BEGIN makes transactions on one database file take turns, each seeing the last.
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def checkpoint(engine: Engine) -> dict | None:
    """Fold SQLite's write-ahead log into the database file and truncate it to zero bytes.

    The WAL keeps old page images, deleted rows included, until a checkpoint copies them back: after an
    erasure this is what makes the deleted text (already overwritten in the main file by
    `secure_delete`) leave the disk. Returns {"busy", "log_frames", "checkpointed"} (busy=1 when a
    reader in another process kept part of the log; run it again later), or None for other databases.
    """
    if engine.dialect.name != "sqlite":
        return None
    # Outside any transaction (the driver connection is in autocommit): a checkpoint cannot run in one.
    connection = engine.raw_connection()
    try:
        busy, log_frames, checkpointed = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        connection.close()
    return {"busy": int(busy), "log_frames": int(log_frames), "checkpointed": int(checkpointed)}


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (idempotent, safe to call at every start)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option(
        "sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%")
    )
    with _migrate_lock:
        try:
            with engine.begin() as connection:
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        except OperationalError as exc:
            raise DatabaseError(f"database {_redact(str(engine.url))} is unreachable: {exc.orig}") from None


def open_database(url: str) -> Engine:
    """An engine whose schema is up to date."""
    engine = make_engine(url)
    migrate(engine)
    return engine


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error, Ctrl-C included."""
    session = Session(engine, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
