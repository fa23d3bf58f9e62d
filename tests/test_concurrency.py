"""Twenty conversations at once: through one shared EdgeAlign, and through the demo's /chat API.

Python API: one EdgeAlign on a real SQLite checkpointer in a temporary folder, twenty threads, two
turns each. The scripted model writes back the request it was given, so a reply that carries another
conversation's words would show cross-talk in the prompt as well as in the stored history.

Demo: twenty gradio_client sessions against the running `edge-align demo` at the same moment.

Both: each thread's history holds only its own messages, and nothing reports "database is locked".
Figures go to artifacts/reliability/concurrency.json.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from tests.support.demo_server import DemoServer
from tests.support.reports import RELIABILITY, write_json_report

pytest_plugins = ["tests.support.demo_server"]

CONVERSATIONS = 20
TOPICS = [
    "lend money to my brother",
    "read my teenager's messages",
    "report a colleague who lied",
    "take my father's car keys",
    "post a video of a rude stranger",
]
_figures: dict[str, Any] = {}


def message(index: int) -> str:
    return f"Conversation {index:02d}: should I {TOPICS[index % len(TOPICS)]}?"


TAG = re.compile(r"Conversation (\d\d)")


@pytest.fixture(scope="module", autouse=True)
def write_report() -> Iterator[None]:
    yield
    write_json_report(RELIABILITY / "concurrency.json", _figures, merge=True)


class EchoChatModel(GenericFakeChatModel):
    """Replies with the request it finds in its prompt, so each reply says whose prompt it was."""

    def _generate(self, messages: Any, *args: Any, **kwargs: Any) -> ChatResult:
        prompt = str(messages[-1].content)
        tags = sorted(set(TAG.findall(prompt)))
        reply = AIMessage(f"Answer for conversation(s) {', '.join(tags)}.", response_metadata={"finish_reason": "stop"})
        return ChatResult(generations=[ChatGeneration(message=reply)])


def test_twenty_threads_through_one_edgealign(tmp_path: Path) -> None:
    from graphs.context import Context
    from graphs.runner import EdgeAlign
    from memory.checkpoints import open_sqlite_saver

    saver = open_sqlite_saver(tmp_path / "checkpoints.sqlite")
    agent = EdgeAlign(
        Context(clarification_budget=1),
        checkpointer=saver,
        chat_model=EchoChatModel(messages=iter([])),
        record=False,
    )
    start = threading.Barrier(CONVERSATIONS)
    errors: list[str] = []

    def conversation(index: int) -> dict[str, Any]:
        thread = f"api-{index:02d}"
        start.wait()
        began = time.perf_counter()
        try:
            first = agent.ask(message(index), thread_id=thread)
            second = agent.ask(
                (first.question or {}).get("options", ["Tell me more."])[0]
                if first.decision == "clarify"
                else f"Conversation {index:02d}: thanks, and what else?",
                thread_id=thread,
            )
        except Exception as problem:  # collected: every failure is reported, not just the first
            errors.append(f"{thread}: {type(problem).__name__}: {problem}")
            raise
        return {"thread": thread, "index": index, "seconds": time.perf_counter() - began, "last": second}

    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=CONVERSATIONS) as pool:
        results = list(pool.map(conversation, range(CONVERSATIONS)))
    wall = time.perf_counter() - began

    assert not errors
    assert not any("database is locked" in e for e in errors)
    for result in results:
        own = f"{result['index']:02d}"
        history = agent.history(result["thread"])
        assert len(history) == 4
        assert history[0]["content"] == message(result["index"])
        assert set(TAG.findall(" ".join(m["content"] for m in history))) <= {own}
        for reply in (m["content"] for m in history if m["content"].startswith("Answer for")):
            assert reply.startswith(f"Answer for conversation(s) {own}.")
    _figures["python_api"] = {
        "what": f"{CONVERSATIONS} concurrent conversations x 2 turns, one EdgeAlign, SQLite checkpointer",
        "command": ".venv/bin/python -m pytest tests/test_concurrency.py -k edgealign",
        "conversations": CONVERSATIONS,
        "turns": 2 * CONVERSATIONS,
        "wall_s": round(wall, 2),
        "turns_per_s": round(2 * CONVERSATIONS / wall, 2),
        "errors": len(errors),
        "database_locked": 0,
        "cross_talk": 0,
    }


@pytest.mark.slow
def test_twenty_gradio_clients_against_the_demo(demo_server: DemoServer) -> None:
    from gradio_client import Client

    from graphs.context import Context
    from graphs.runner import EdgeAlign

    clients = [Client(demo_server.url, verbose=False) for _ in range(CONVERSATIONS)]
    start = threading.Barrier(CONVERSATIONS)

    def session(index: int) -> dict[str, Any]:
        start.wait()
        began = time.perf_counter()
        reply, thread_id, decision, _options = clients[index].predict(message(index), api_name="/chat")
        return {
            "index": index,
            "thread": thread_id,
            "reply": reply,
            "decision": decision,
            "seconds": time.perf_counter() - began,
        }

    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=CONVERSATIONS) as pool:
        results = list(pool.map(session, range(CONVERSATIONS)))
    wall = time.perf_counter() - began

    assert len({r["thread"] for r in results}) == CONVERSATIONS
    reader = EdgeAlign(Context(home=str(demo_server.home), generate_text=False), record=False)
    for result in results:
        history = reader.history(result["thread"])
        assert [m["role"] for m in history] == ["user", "assistant"]
        assert history[0]["content"] == message(result["index"])
        assert history[1]["content"] == result["reply"]
        assert set(TAG.findall(" ".join(m["content"] for m in history))) == {f"{result['index']:02d}"}
    log = demo_server.log_path.read_text(errors="replace")
    assert "database is locked" not in log
    seconds = sorted(r["seconds"] for r in results)
    _figures["demo_api"] = {
        "what": f"{CONVERSATIONS} simultaneous /chat calls through gradio_client against `edge-align demo`",
        "command": ".venv/bin/python -m pytest tests/test_concurrency.py -m slow",
        "conversations": CONVERSATIONS,
        "wall_s": round(wall, 2),
        "p50_s": round(seconds[len(seconds) // 2], 2),
        "max_s": round(seconds[-1], 2),
        "decisions": {d: sum(r["decision"] == d for r in results) for d in ("answer", "clarify", "refuse")},
        "errors": 0,
        "database_locked": 0,
        "cross_talk": 0,
    }
