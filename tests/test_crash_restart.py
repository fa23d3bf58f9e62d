"""Kill the process running a conversation with SIGKILL, restart, and check nothing the user said is lost.

A driver process (this module run as ``python -m tests.test_crash_restart``) runs one turn through
EdgeAlign.stream and prints each step as it starts; the test kills it at a chosen point:

* during analysis (the "analysing values" step has started),
* while the thread is paused on a clarifying question,
* while a clarification answer is being processed,
* during answer generation (the model sits behind the fault proxy in delay mode, so the kill lands
  while the answer is being written).

After the kill, a fresh EdgeAlign on the same data home (a restart) must find the thread at its last
checkpoint: the accepted message is in its history and in the transcript, the transcript is valid
JSONL, a paused question is still pending, an unfinished turn finishes with ``resume()``, and the
checkpoint database is in WAL mode and passes SQLite's integrity check.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.reports import RELIABILITY, write_json_report

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DIARY = "Should I read my 15-year-old daughter's diary to check she's safe?"
EUTHANASIA = "Is euthanasia morally acceptable?"
COOKING = "What is a good way to start learning to cook?"
STEP_PREFIX = "STEP "
START_TIMEOUT_S = 300.0

_kills: list[dict[str, Any]] = []


# ------------------------------------------------------------------------------------ driver


def drive(home: str, thread: str, message: str, llm_url: str, budget: int) -> None:
    """Run one turn and print its progress line by line; then idle until killed."""
    from graphs.context import Context
    from graphs.runner import EdgeAlign

    context = Context(
        home=home,
        llm_base_url=llm_url or None,
        generate_text=bool(llm_url),
        clarification_budget=budget,
    )
    agent = EdgeAlign(context)
    print("READY", flush=True)
    for kind, payload in agent.stream(message, thread):
        if kind == "step":
            print(f"{STEP_PREFIX}{payload}", flush=True)
        elif kind == "result":
            print(f"RESULT {payload.decision}", flush=True)
    while True:  # a finished turn: wait, as a server would, for the next one (or a kill)
        time.sleep(1)


# ------------------------------------------------------------------------------------- tests


class Driver:
    def __init__(self, home: Path, thread: str, message: str, llm_url: str = "", budget: int = 2) -> None:
        env = {
            **os.environ,
            "EDGE_ALIGN_HOME": str(home),
            "EDGE_ALIGN_LLM_TIMEOUT": "120",
            "PYTHONUNBUFFERED": "1",
        }
        self.log = home / f"driver-{thread}.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.test_crash_restart", str(home), thread, message, llm_url, str(budget)],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.log.open("wb"),
            text=True,
        )
        self.lines: list[str] = []

    def wait_for(self, predicate: Any, timeout_s: float = START_TIMEOUT_S) -> str:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise AssertionError(f"driver exited ({self.process.poll()}) after {self.lines}:\n{tail}")
            line = line.rstrip("\n")
            self.lines.append(line)
            if predicate(line):
                return line
        raise AssertionError(f"driver did not reach the kill point in time: {self.lines}")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        assert self.process.returncode == -signal.SIGKILL


@pytest.fixture(scope="module")
def crash_home(test_home: Path) -> Iterator[Path]:
    """The session's data home: its norm index is built once, here, before any driver opens it."""
    from graphs.resources import get_resources

    get_resources(str(test_home))
    yield test_home
    write_json_report(
        RELIABILITY / "crash_restart.json",
        {
            "what": "SIGKILL of a process in the middle of a conversation, then a restart on the same data home",
            "command": ".venv/bin/python -m pytest tests/test_crash_restart.py -m slow",
            "kill_points": _kills,
            "kills": len(_kills),
            "accepted_messages_lost": sum(r["messages_lost"] for r in _kills),
            "turns_lost": sum(r["turns_lost"] for r in _kills),
        },
    )


def restarted(home: Path) -> Any:
    from graphs.context import Context
    from graphs.runner import EdgeAlign

    return EdgeAlign(Context(home=str(home), generate_text=False))


def assert_storage_sound(home: Path, agent: Any, thread: str) -> list[dict[str, Any]]:
    from memory.transcripts import read_transcript

    with sqlite3.connect(home / "checkpoints.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    return read_transcript(agent.transcripts.path_for(thread))  # raises on a torn or invalid line


def record(point: str, thread: str, killed_at: str, user_messages: list[str], agent: Any, resumed: bool) -> None:
    history = [m["content"] for m in agent.history(thread) if m["role"] == "user"]
    _kills.append(
        {
            "kill_point": point,
            "killed_after": killed_at,
            "accepted_messages": len(user_messages),
            "messages_lost": sum(1 for m in user_messages if m not in history),
            "turns_lost": 0
            if agent.pending_question(thread) is not None or not agent.graph.get_state(agent._config(thread)).next
            else 1,
            "resumed_from_checkpoint": resumed,
        }
    )


@pytest.mark.slow
def test_killed_during_analysis_keeps_the_message_and_resumes(crash_home: Path) -> None:
    driver = Driver(crash_home, "kill-analysis", EUTHANASIA)
    killed_at = driver.wait_for(lambda line: line.startswith(STEP_PREFIX) and "values" in line)
    driver.kill()

    agent = restarted(crash_home)
    records = assert_storage_sound(crash_home, agent, "kill-analysis")
    assert [r["event"] for r in records] == ["user_message"]
    assert records[0]["text"] == EUTHANASIA
    assert agent.history("kill-analysis") == [{"role": "user", "content": EUTHANASIA}]
    assert agent.graph.get_state(agent._config("kill-analysis")).next  # a turn is unfinished

    result = agent.resume("kill-analysis")
    assert result is not None and result.decision in {"answer", "clarify", "refuse"}
    assert agent.resume("kill-analysis") is None  # nothing left to finish
    assert agent.history("kill-analysis")[0] == {"role": "user", "content": EUTHANASIA}
    assert len(assert_storage_sound(crash_home, agent, "kill-analysis")) == 2
    record("during analysis", "kill-analysis", killed_at, [EUTHANASIA], agent, resumed=True)


@pytest.mark.slow
def test_killed_while_paused_on_a_question_keeps_the_question(crash_home: Path) -> None:
    driver = Driver(crash_home, "kill-paused", DIARY)
    killed_at = driver.wait_for(lambda line: line.startswith("RESULT"))
    assert killed_at == "RESULT clarify"
    driver.kill()

    agent = restarted(crash_home)
    records = assert_storage_sound(crash_home, agent, "kill-paused")
    assert [r["event"] for r in records] == ["user_message", "clarification_asked"]
    question = agent.pending_question("kill-paused")
    assert question is not None and question == records[1]["question"]
    assert agent.resume("kill-paused") is None  # waiting for the user, not unfinished
    record("paused on a clarification", "kill-paused", killed_at, [DIARY], agent, resumed=False)

    # The answer given after the restart resumes the paused turn where it stopped.
    answer = question["options"][0]
    result = agent.ask(answer, thread_id="kill-paused")
    assert result.decision in {"answer", "clarify"}
    users = [m["content"] for m in agent.history("kill-paused") if m["role"] == "user"]
    assert users == [DIARY, answer]


@pytest.mark.slow
def test_killed_while_an_answer_to_a_question_is_processed(crash_home: Path) -> None:
    agent = restarted(crash_home)
    first = agent.ask(DIARY, thread_id="kill-resume")
    assert first.decision == "clarify" and first.question is not None
    answer = first.question["options"][0]

    driver = Driver(crash_home, "kill-resume", answer)
    killed_at = driver.wait_for(lambda line: line.startswith(STEP_PREFIX) and "noting your answer" in line)
    driver.kill()

    agent = restarted(crash_home)
    records = assert_storage_sound(crash_home, agent, "kill-resume")
    assert [r["event"] for r in records][-1] == "clarification_answered"
    assert records[-1]["text"] == answer
    state = agent.graph.get_state(agent._config("kill-resume"))
    resumed = False
    if agent.pending_question("kill-resume") is not None:
        # Killed before the answer was checkpointed: the question still waits; the transcript has
        # the answer, so the turn is re-run with it.
        result = agent.ask(answer, thread_id="kill-resume")
    elif state.next:
        result = agent.resume("kill-resume")
        resumed = True
    else:  # the kill landed after the turn had finished
        result = agent._result("kill-resume")
    assert result is not None and result.decision in {"answer", "clarify"}
    users = [m["content"] for m in agent.history("kill-resume") if m["role"] == "user"]
    assert users == [DIARY, answer]
    record("processing a clarification answer", "kill-resume", killed_at, [DIARY, answer], agent, resumed)


@pytest.mark.slow
def test_killed_during_answer_generation_resumes_at_the_answer(crash_home: Path) -> None:
    from agent.llm_server import embedded_server
    from tests.support.fault_proxy import FaultMode, FaultProxy

    server = embedded_server()
    with FaultProxy(server.base_url) as proxy:
        proxy.set_mode(FaultMode.DELAY, delay_s=120)
        driver = Driver(crash_home, "kill-answer", COOKING, llm_url=proxy.base_url, budget=0)
        killed_at = driver.wait_for(lambda line: line.startswith(STEP_PREFIX) and "writing the answer" in line)
        deadline = time.monotonic() + 60
        while proxy.requests_seen == 0 and time.monotonic() < deadline:
            time.sleep(0.2)  # the request is on its way to the model: the kill lands mid-generation
        assert proxy.requests_seen >= 1
        driver.kill()

        from graphs.context import Context
        from graphs.runner import EdgeAlign

        proxy.set_mode(FaultMode.PASS)
        agent = EdgeAlign(Context(home=str(crash_home), llm_base_url=proxy.base_url, clarification_budget=0))
        records = assert_storage_sound(crash_home, agent, "kill-answer")
        assert [r["event"] for r in records] == ["user_message"]
        assert agent.history("kill-answer") == [{"role": "user", "content": COOKING}]
        assert agent.graph.get_state(agent._config("kill-answer")).next == ("respond",)

        result = agent.resume("kill-answer")  # only the answer is written again; analysis is not re-run
        assert result is not None and result.decision == "answer"
        assert result.llm_error is None and result.reply.strip()
        assert [m["role"] for m in agent.history("kill-answer")] == ["user", "assistant"]
        assert [r["event"] for r in assert_storage_sound(crash_home, agent, "kill-answer")] == [
            "user_message",
            "answer",
        ]
        record("during answer generation", "kill-answer", killed_at, [COOKING], agent, resumed=True)


if __name__ == "__main__":
    home_arg, thread_arg, message_arg, url_arg, budget_arg = sys.argv[1:6]
    drive(home_arg, thread_arg, message_arg, url_arg, int(budget_arg))
