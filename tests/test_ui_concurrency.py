"""Many people at once through the demo's /chat API (gradio_client against the real `edge-align demo`).

Ten sessions send ten different messages at the same moment; each must get its own thread back, and
each thread's history must hold its own message and no one else's. Bad input through the API comes
back as an error whose text says what to change, and the thread stays usable.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.support.demo_server import DemoServer
from tests.support.reports import ARTIFACTS, write_json_report

pytest_plugins = ["tests.support.demo_server"]
pytestmark = pytest.mark.slow

MESSAGES = [
    "Should I read my 15-year-old daughter's diary to check she's safe?",
    "Is euthanasia morally acceptable?",
    "What is the capital of France?",
    "My manager wants me to install monitoring software on my team's laptops. Is that fair?",
    "Should I tell my friend that her husband is cheating on her?",
    "Can I lend money to my brother who never paid me back before?",
    "Is it okay to post a video of a stranger being rude in a shop?",
    "How many planets are there in the solar system?",
    "Should I report a colleague who lied on a sick day?",
    "My elderly father wants to keep driving. Should I take his car keys?",
]
DECISIONS = {"clarify", "answer", "refuse"}


def client(server: DemoServer) -> Any:
    from gradio_client import Client

    return Client(server.url, verbose=False)


def test_ten_simultaneous_sessions_keep_their_own_threads(demo_server: DemoServer) -> None:
    from graphs.context import Context
    from graphs.runner import EdgeAlign

    clients = [client(demo_server) for _ in MESSAGES]
    start = threading.Barrier(len(MESSAGES))

    def one_session(index: int) -> dict[str, Any]:
        start.wait()  # all ten requests leave together
        began = time.perf_counter()
        reply, thread_id, decision, options = clients[index].predict(MESSAGES[index], api_name="/chat")
        seconds = time.perf_counter() - began
        return {
            "message": MESSAGES[index],
            "reply": reply,
            "thread_id": thread_id,
            "decision": decision,
            "options": options,
            "seconds": round(seconds, 2),
        }

    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(MESSAGES)) as pool:
        results = list(pool.map(one_session, range(len(MESSAGES))))  # re-raises any session's error
    wall = time.perf_counter() - began

    assert len({r["thread_id"] for r in results}) == len(MESSAGES)
    for result in results:
        assert result["decision"] in DECISIONS
        assert result["reply"].strip()
        assert isinstance(result["options"], list)
        if result["decision"] == "clarify":
            assert result["options"] or result["reply"].endswith("?")

    # No cross-talk: each thread, read back from the server's own checkpoint file, holds exactly its
    # own message and its own reply.
    reader = EdgeAlign(Context(home=str(demo_server.home), generate_text=False))
    for result in results:
        history = reader.history(result["thread_id"])
        assert [m["role"] for m in history] == ["user", "assistant"]
        assert history[0]["content"] == result["message"]
        assert history[1]["content"] == result["reply"]
        others = set(MESSAGES) - {result["message"]}
        assert not any(m["content"] in others for m in history)
        logged = (demo_server.home / "ui-traces" / f"{result['thread_id']}.jsonl").read_text().splitlines()
        assert [json.loads(line)["user"] for line in logged] == [result["message"]]

    write_json_report(
        ARTIFACTS / "ui_concurrency.json",
        {
            "what": "10 simultaneous /chat calls through gradio_client against `edge-align demo`",
            "command": ".venv/bin/python -m pytest tests/test_ui_concurrency.py -m slow",
            "wall_s": round(wall, 2),
            "per_session_s": sorted(r["seconds"] for r in results),
            "decisions": {d: sum(r["decision"] == d for r in results) for d in DECISIONS},
        },
    )


def test_bad_input_through_the_api_is_a_clear_error(demo_server: DemoServer) -> None:
    from gradio_client.exceptions import AppError

    from prompts import load_prompt_data

    texts = load_prompt_data("messages.yaml")
    api = client(demo_server)

    with pytest.raises(AppError) as empty:
        api.predict("   ", api_name="/chat")
    assert str(empty.value).strip() == texts["empty_message"]

    with pytest.raises(AppError) as too_long:
        api.predict("x" * 8_001, api_name="/chat")
    assert "8001" in str(too_long.value) and "8000" in str(too_long.value)

    with pytest.raises(AppError) as bad_thread:
        api.predict("hello", "../../etc/passwd", api_name="/chat")
    assert "thread_id" in str(bad_thread.value)

    # A refused message leaves its thread usable: the next message on it runs normally.
    reply, thread_id, decision, _ = api.predict("What is the capital of France?", api_name="/chat")
    with pytest.raises(AppError):
        api.predict("", thread_id, api_name="/chat")
    again, same_thread, decision_again, _ = api.predict("And of Italy?", thread_id, api_name="/chat")
    assert same_thread == thread_id
    assert decision in DECISIONS and decision_again in DECISIONS
    assert reply.strip() and again.strip()
