"""Engines and sessions, and bringing a database to the current schema with Alembic."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as SATimeoutError
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")


_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()
"""Every engine this process made, for `_forget_inherited_pools`."""


def _forget_inherited_pools() -> None:
    """In a forked child (a prefork worker's new pool child, after a crash, OOM kill or time limit): the
    pools' connections are the parent's sockets, which its sweeper thread goes on using. Two processes on
    one connection interleave their protocol (`EMPTY_QUERY`, `prepared statement already exists`) and can
    commit each other's transactions. Each engine gets a new, empty pool (new locks too, in case a thread
    of the parent held one at the fork); `close=False` leaves the sockets to the parent."""
    for engine in list(_ENGINES):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_inherited_pools)


@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    engine = _new_engine(url)
    _ENGINES.add(engine)
    return engine


def _new_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(conn: sqlite3.Connection, _record: object) -> None:
            # WAL lets the API read while a worker writes; foreign keys are off by default in SQLite
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


@lru_cache(maxsize=8)
def _factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(engine_for(url), expire_on_commit=False)


def new_session(url: str) -> Session:
    """A session that commits only when told to (the API's: each change commits before its answer)."""
    return _factory(url)()


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    """One unit of work: committed when the block ends normally, rolled back otherwise."""
    session = new_session(url)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def migrate(url: str) -> None:
    """Upgrade the database at `url` to the newest schema (idempotent; safe at every start)."""
    # deferred: alembic
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine_for(url).begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


T = TypeVar("T")
DATABASE_ERRORS: tuple[type[Exception], ...] = (OperationalError, SATimeoutError)
"""What a database that is away (restarting, failing over, unreachable) raises."""


def retrying(action: Callable[[], T], what: str, within_s: float = 300.0) -> T:
    """`action()`, tried again while the database is away, for up to `within_s`: a worker that
    finished an edit keeps its result and records it once the database answers again."""
    deadline = time.monotonic() + within_s
    delay = 0.5
    while True:
        try:
            return action()
        except DATABASE_ERRORS:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("the database is unavailable while %s; trying again in %.1f s", what, delay)
            time.sleep(delay)
            delay = min(2 * delay, 5.0)
