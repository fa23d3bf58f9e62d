"""Where conversations and user memory live: SQLite files by default, PostgreSQL when configured.

``EDGE_ALIGN_DATABASE_URL=postgresql://user:pass@host:5432/db`` moves both the checkpointer (paused
and finished threads) and the store (what each user told the agent) into PostgreSQL, so several
app processes on several machines serve the same conversations. Unset, nothing changes: the
SQLite files in the data home, as before.

A process keeps one connection pool per database URL, shared by its checkpointer and its store,
and closes it at exit. Schema set-up runs once per process under an advisory lock, so app
processes that start together do not race to create the tables.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.store.base import BaseStore

from memory.checkpoints import open_sqlite_saver
from memory.paths import checkpoints_path, profiles_path
from memory.profiles import open_sqlite_store

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

DATABASE_URL_ENV = "EDGE_ALIGN_DATABASE_URL"
POOL_SIZE_ENV = "EDGE_ALIGN_DATABASE_POOL_SIZE"
POSTGRES_SCHEMES = ("postgresql", "postgres")
CONNECT_TIMEOUT_S = 10
DEFAULT_POOL_SIZE = 8  # threads of one app process that may hold a connection at once
_SETUP_LOCK_KEY = 0x6564_6765  # pg_advisory_lock key shared by every Edge Align process ("edge")


class BackendConfigError(ValueError):
    """A backend setting cannot be used; the message names the variable (never its password)."""


class BackendUnavailableError(RuntimeError):
    """The configured database does not answer; the message names the variable and the server."""


def database_url(environ: Mapping[str, str] | None = None) -> str | None:
    """The PostgreSQL URL from EDGE_ALIGN_DATABASE_URL, or None for the SQLite default."""
    env = os.environ if environ is None else environ
    raw = env.get(DATABASE_URL_ENV, "").strip()
    if not raw:
        return None
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises ValueError when the port is not a number in range
    except ValueError:
        raise BackendConfigError(
            f"{DATABASE_URL_ENV} has an invalid port; expected postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
        ) from None
    if parts.scheme not in POSTGRES_SCHEMES:
        # The value is not echoed: it may carry a password.
        raise BackendConfigError(
            f"{DATABASE_URL_ENV} must be a postgresql:// URL such as postgresql://USER:PASSWORD@HOST:5432/DATABASE "
            f"(got a {parts.scheme or 'scheme-less'} value); unset it to keep the SQLite files in the data home"
        )
    if not parts.path.strip("/"):
        raise BackendConfigError(f"{DATABASE_URL_ENV} must name a database: postgresql://USER@HOST:PORT/DATABASE")
    return raw


def describe_database(url: str) -> str:
    """scheme://host:port/database: enough to recognise the server, never the password."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or 'localhost'}{port}{parts.path}"


# --------------------------------------------------------------------------------------------
# PostgreSQL: one pool per URL per process


_pools: dict[str, ConnectionPool[Any]] = {}
_prepared: set[str] = set()
_pools_lock = threading.Lock()


def _pool_size(environ: Mapping[str, str]) -> int:
    raw = environ.get(POOL_SIZE_ENV, "").strip()
    if not raw:
        return DEFAULT_POOL_SIZE
    if not raw.isdigit() or int(raw) < 1:
        raise BackendConfigError(f"{POOL_SIZE_ENV} must be a positive integer, got {raw!r}")
    return int(raw)


def _probe(url: str) -> None:
    """Connect once, so an unreachable server or a refused login is reported now, in one clear line."""
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S):
            pass
    except psycopg.Error as problem:
        reason = str(problem).strip().splitlines()[-1] if str(problem).strip() else type(problem).__name__
        raise BackendUnavailableError(
            f"The PostgreSQL server named by {DATABASE_URL_ENV} ({describe_database(url)}) cannot be used: {reason}"
        ) from None


def _pool(url: str, environ: Mapping[str, str]) -> ConnectionPool[Any]:
    with _pools_lock:
        existing = _pools.get(url)
        if existing is not None and not existing.closed:
            return existing
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool

        _probe(url)
        pool: ConnectionPool[Any] = ConnectionPool(
            url,
            min_size=1,
            max_size=_pool_size(environ),
            # What PostgresSaver and PostgresStore expect of every connection.
            kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row, "connect_timeout": CONNECT_TIMEOUT_S},
            name="edge-align",
            open=False,
        )
        pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        if not _pools:
            atexit.register(close_backends)
        _pools[url] = pool
        return pool


def _set_up_once(url: str, *parts: Any) -> None:
    """Create or migrate the tables, once per process and never two processes at a time."""
    key = f"{url}|{'|'.join(type(p).__name__ for p in parts)}"
    import psycopg

    with _pools_lock:
        if key in _prepared:
            return
        # The lock lives on its own connection: set-up itself borrows from the pool, which may
        # hold a single connection.
        with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as lock:
            lock.execute("SELECT pg_advisory_lock(%s)", (_SETUP_LOCK_KEY,))
            for part in parts:
                part.setup()
            # Closing the connection releases the lock, also when set-up failed.
        _prepared.add(key)


def open_postgres_saver(url: str, environ: Mapping[str, str] | None = None) -> BaseCheckpointSaver[Any]:
    from langgraph.checkpoint.postgres import PostgresSaver

    pool = _pool(url, os.environ if environ is None else environ)
    saver = PostgresSaver(pool)
    _set_up_once(url, saver)
    return saver


def open_postgres_store(url: str, environ: Mapping[str, str] | None = None) -> BaseStore:
    from langgraph.store.postgres import PostgresStore

    pool = _pool(url, os.environ if environ is None else environ)
    store = PostgresStore(pool)
    _set_up_once(url, store)
    return store


def close_backends() -> None:
    """Close every PostgreSQL pool this process opened (registered to run at exit)."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
        _prepared.clear()
    for pool in pools:
        pool.close()


# --------------------------------------------------------------------------------------------
# The two entry points the runner uses


def open_checkpointer(home: Path, environ: Mapping[str, str] | None = None) -> BaseCheckpointSaver[Any]:
    """PostgresSaver when EDGE_ALIGN_DATABASE_URL is set, else the SQLite file in the data home."""
    url = database_url(environ)
    if url is None:
        return open_sqlite_saver(checkpoints_path(home))
    return open_postgres_saver(url, environ)


def open_store(home: Path, environ: Mapping[str, str] | None = None) -> BaseStore:
    """PostgresStore when EDGE_ALIGN_DATABASE_URL is set, else the SQLite store in the data home."""
    url = database_url(environ)
    if url is None:
        return open_sqlite_store(profiles_path(home))
    return open_postgres_store(url, environ)
