"""The SQLite checkpointer that lets a conversation survive a crash or a restart."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from langgraph.checkpoint.sqlite import SqliteSaver


def open_sqlite_saver(path: Path) -> SqliteSaver:
    """A saver on ``path`` in WAL mode, so a killed process never leaves a torn database behind.

    One connection is shared by every thread of the process (``check_same_thread=False``); the
    saver serialises its own writes, and the busy timeout absorbs another process's brief lock.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(str(path), check_same_thread=False, timeout=30.0)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA busy_timeout=30000")
    saver = SqliteSaver(connection)
    saver.setup()
    return saver
