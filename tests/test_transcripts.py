"""Transcript format v1: atomic appends, schema validation with line numbers, no secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memory.transcripts import (
    FORMAT,
    TranscriptError,
    TranscriptEvent,
    TranscriptWriter,
    make_record,
    read_transcript,
)

CONFIG = {"llm_model": "smollm2", "llm_endpoint": "embedded", "pack_versions": {"p": "1.0.0"}}
TRACE = {
    "values": {"Tradition": 0.2},
    "conflict": {"score": 0.1, "detected": False, "pairs": []},
    "norms": [{"id": "n1", "community": "parents", "pack_id": "p", "pack_version": "1.0.0"}],
    "uncertainty": {"clarification_need": 0.3},
    "constraints": {"matches": []},
    "timings_ms": {"decide": 1.0},
}


def test_records_round_trip_and_validate(tmp_path: Path) -> None:
    writer = TranscriptWriter(tmp_path)
    path = writer.append(make_record(TranscriptEvent.USER_MESSAGE, "c1", 1, "hello", CONFIG, TRACE))
    writer.append(make_record(TranscriptEvent.ANSWER, "c1", 1, "hi", CONFIG, TRACE, decision="answer"))
    records = read_transcript(path)
    assert [r["event"] for r in records] == ["user_message", "answer"]
    assert all(r["format"] == FORMAT and r["timestamp"] for r in records)


def test_errors_name_the_line_and_the_field(tmp_path: Path) -> None:
    good = make_record(TranscriptEvent.USER_MESSAGE, "c1", 1, "hello", CONFIG, TRACE)
    bad_event = dict(good, event="shout")
    missing = {k: v for k, v in good.items() if k != "config"}
    path = tmp_path / "t.jsonl"
    path.write_text(
        "\n".join([json.dumps(good), "{not json", json.dumps(bad_event), json.dumps(missing)]) + "\n", encoding="utf-8"
    )
    with pytest.raises(TranscriptError) as caught:
        read_transcript(path)
    message = str(caught.value)
    assert f"{path}:2: not JSON" in message
    assert f"{path}:3: event" in message
    assert f"{path}:4: record: 'config' is a required property" in message


def test_invalid_utf8_and_deep_nesting_are_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"text": "\xff\xfe"}\n' + b"[" * 100000 + b"]" * 100000 + b"\n")
    with pytest.raises(TranscriptError) as caught:
        read_transcript(path)
    assert ":1: not valid UTF-8" in str(caught.value)
    assert ":2: " in str(caught.value)
