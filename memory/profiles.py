"""What a user has told the agent about their situation, remembered across threads.

Kept behind LangGraph's store interface (``BaseStore``), so the SQLite store used by default
can be swapped for PostgresStore or any other without touching the graph.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path

from langgraph.store.base import BaseStore
from langgraph.store.sqlite import SqliteStore

NAMESPACE = ("edge-align", "user-context")
_KEY = "facts"


def load_user_context(store: BaseStore, user_id: str) -> dict[str, str]:
    item = store.get((*NAMESPACE, user_id), _KEY)
    return dict(item.value) if item else {}


def remember_user_context(store: BaseStore, user_id: str, facts: Mapping[str, str]) -> dict[str, str]:
    """Merge newly learned facts into the user's remembered context; later answers win."""
    merged = {**load_user_context(store, user_id), **{k: v for k, v in facts.items() if v != "unknown"}}
    store.put((*NAMESPACE, user_id), _KEY, merged)
    return merged


def open_sqlite_store(path: Path) -> SqliteStore:
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(str(path), check_same_thread=False, timeout=30.0, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA busy_timeout=30000")
    store = SqliteStore(connection)
    store.setup()
    return store
