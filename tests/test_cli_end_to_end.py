"""The `edge-align` command end to end, in separate processes, on the real stack.

Real SQLite checkpointer (a clarification asked in one process is answered in the next), real
Chroma index on disk, the real embedded llama.cpp server over HTTP, transcripts and replay.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

DIARY = "Should I read my 15-year-old daughter's diary to check she's safe?"
SECRET = "sk-test-SECRET-9f8e7d6c"
pytestmark = pytest.mark.slow


def run_cli(home: Path, *args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "EDGE_ALIGN_HOME": str(home), "EDGE_ALIGN_LLM_API_KEY": SECRET, "OPENAI_API_KEY": SECRET}
    environment.update(env or {})
    done = subprocess.run(
        [sys.executable, "-m", "ui.cli", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=400,
        cwd=Path(__file__).resolve().parents[1],
    )
    if check and done.returncode != 0:
        raise AssertionError(f"edge-align {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done


def ask_json(home: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    done = run_cli(home, "ask", *args, "--json", env=env)
    assert SECRET not in done.stdout + done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli-home")


@pytest.fixture(scope="module")
def diary_conversation(home: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    first = ask_json(home, DIARY, "--thread", "diary")
    assert first["decision"] == "clarify", first["policy"]
    option = first["question"]["options"][0]
    second = ask_json(home, option, "--thread", "diary")  # a second process resumes the paused thread
    while second["decision"] == "clarify":
        second = ask_json(home, second["question"]["options"][0], "--thread", "diary")
    return first, second


def test_ask_json_has_the_contract_fields(diary_conversation: tuple[dict[str, Any], dict[str, Any]]) -> None:
    first, _ = diary_conversation
    assert {"thread_id", "decision", "reply", "values", "conflict", "norms", "uncertainty", "constraints", "timings_ms"} <= set(first)
    assert first["thread_id"] == "diary"
    assert len(first["values"]) == 20 and all(0.0 <= v <= 1.0 for v in first["values"].values())
    assert {"score", "detected", "pairs"} <= set(first["conflict"])
    assert all({"id", "text", "community", "domain", "score"} <= set(n) for n in first["norms"])
    assert 0.0 <= first["uncertainty"]["clarification_need"] <= 1.0
    assert set(first["question"]) == {"question", "options", "about"}
    assert first["reply"] == first["question"]["question"]


def test_answer_after_clarification_is_written_by_the_embedded_model(
    diary_conversation: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    _, answer = diary_conversation
    assert answer["decision"] == "answer"
    assert answer["llm_error"] is None
    assert len(answer["reply"]) > 40
    assert answer["known_context"].get("age") == "minor"


def test_factual_question_is_answered_directly(home: Path) -> None:
    result = ask_json(home, "What is the capital of France?")
    assert result["decision"] == "answer"
    assert result["llm_error"] is None and result["reply"]


def test_endpoint_down_gives_a_clear_reply_and_keeps_the_thread(home: Path) -> None:
    down = {"EDGE_ALIGN_LLM_BASE_URL": "http://127.0.0.1:9", "EDGE_ALIGN_LLM_TIMEOUT": "3"}
    result = ask_json(home, "What is the capital of France?", "--thread", "down", env=down)
    assert result["decision"] == "answer"
    assert result["llm_error"] == "unreachable"
    assert "could not" in result["reply"].lower()
    again = ask_json(home, "What is the capital of Italy?", "--thread", "down")
    assert again["llm_error"] is None and again["reply"]


def test_transcripts_are_valid_secret_free_and_replay_without_differences(
    home: Path, diary_conversation: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    transcript = home / "transcripts" / "diary.jsonl"
    assert transcript.is_file()
    text = transcript.read_text(encoding="utf-8")
    assert SECRET not in text
    assert run_cli(home, "transcript", "validate", str(transcript)).returncode == 0
    events = [json.loads(line)["event"] for line in text.splitlines()]
    assert events[:2] == ["user_message", "clarification_asked"]
    assert events[-1] == "answer"

    same = run_cli(home, "replay", str(transcript), "--strict", "--json")
    summary = json.loads(same.stdout)
    assert summary["decision_differences"] == 0 and summary["diverged"] == 0
    assert summary["turns_with_differences"] == 0

    changed = run_cli(
        home, "replay", str(transcript), "--strict", "--json", env={"EDGE_ALIGN_CLARIFICATION_BUDGET": "0"}, check=False
    )
    assert changed.returncode == 3
    assert json.loads(changed.stdout)["decision_differences"] >= 1
