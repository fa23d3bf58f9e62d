"""Transcript format v1: one JSON record per event, appended atomically, so a crash never tears a line.

Events: user_message, clarification_asked, clarification_answered, answer, refusal. Each record
carries the decision trace, a fingerprint of the configuration (never a secret), a timestamp and
the format version. The JSON Schema ships beside this module (schemas/transcript-v1.json).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any

FORMAT = "edge-align-transcript/1"
SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "transcript-v1.json"
MAX_TRANSCRIPT_BYTES = 100 * 1024 * 1024
MAX_LINE_BYTES = 4 * 1024 * 1024


class TranscriptEvent(StrEnum):
    USER_MESSAGE = "user_message"
    CLARIFICATION_ASKED = "clarification_asked"
    CLARIFICATION_ANSWERED = "clarification_answered"
    ANSWER = "answer"
    REFUSAL = "refusal"


class TranscriptError(ValueError):
    """A transcript that does not follow the format; the message names the file and the lines."""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class TranscriptWriter:
    """Appends records to one JSONL file per conversation; one write() per line, then fsync."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def path_for(self, conversation_id: str) -> Path:
        safe = "".join(c for c in conversation_id if c.isalnum() or c in "-_") or "conversation"
        return self.directory / f"{safe}.jsonl"

    def append(self, record: dict[str, Any]) -> Path:
        path = self.path_for(str(record["conversation_id"]))
        line = (json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
        with self._lock:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        return path


def make_record(
    event: TranscriptEvent,
    conversation_id: str,
    turn: int,
    text: str,
    config: dict[str, Any],
    trace: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "format": FORMAT,
        "event": str(event),
        "conversation_id": conversation_id,
        "turn": turn,
        "timestamp": now(),
        "text": text,
        "config": config,
    }
    if trace is not None:
        record["trace"] = trace
    record.update(extra)
    return record


@lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema)


def read_transcript(path: Path) -> list[dict[str, Any]]:
    """All records of a transcript, validated; TranscriptError lists every bad line (up to 20)."""
    if not path.is_file():
        raise TranscriptError(f"{path}: no such file")
    if path.stat().st_size > MAX_TRANSCRIPT_BYTES:
        raise TranscriptError(f"{path}: larger than {MAX_TRANSCRIPT_BYTES // (1024 * 1024)} MB")
    records, errors = [], []
    for number, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        if not raw.strip():
            continue
        problem = None
        if len(raw) > MAX_LINE_BYTES:
            problem = f"line longer than {MAX_LINE_BYTES} bytes"
        else:
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as failure:
                problem = f"not valid UTF-8 (byte {failure.start})"
            except RecursionError:
                problem = "JSON nested too deeply"
            except json.JSONDecodeError as failure:
                problem = f"not JSON ({failure.msg} at column {failure.colno})"
            else:
                issues = sorted(_validator().iter_errors(record), key=lambda e: list(e.path))
                if issues:
                    first = issues[0]
                    where = "/".join(str(p) for p in first.path) or "record"
                    problem = f"{where}: {first.message[:200]}"
                else:
                    records.append(record)
        if problem:
            errors.append(f"{path}:{number}: {problem}")
            if len(errors) >= 20:
                break
    if errors:
        raise TranscriptError("\n".join(errors))
    if not records:
        raise TranscriptError(f"{path}: no records")
    return records


def conversations(records: list[dict[str, Any]]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Records grouped by conversation, in file order."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        grouped.setdefault(record["conversation_id"], []).append(record)
    yield from grouped.items()
