"""A parent process for the server-lifecycle tests: it answers one question, reports, then waits.

    python -m tests.support.llm_parent graph    # one turn through the real graph (the reported bug)
    python -m tests.support.llm_parent worker   # the server started and used from a worker thread

Prints one JSON line (the server's pid, whether it is running, the reply) and then sleeps until a
signal ends it, so the test can end it the way it wants and watch the server.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def through_the_graph() -> dict[str, object]:
    from langgraph.checkpoint.memory import InMemorySaver

    from agent.llm_server import shared_server_if_started
    from graphs import Context
    from graphs.runner import EdgeAlign

    agent = EdgeAlign(Context.from_env(), checkpointer=InMemorySaver(), record=False)
    result = agent.ask("What is the capital of France?")
    server = shared_server_if_started()
    return {"decision": result.decision, "reply": result.reply, "pid": server.pid if server else None}


def from_a_worker_thread() -> dict[str, object]:
    from langchain_core.messages import HumanMessage

    from agent.llm import LLMSettings, generate, make_chat_model
    from agent.llm_server import embedded_server

    def work() -> tuple[int | None, str]:
        server = embedded_server()
        return server.pid, generate(make_chat_model(LLMSettings(max_tokens=16)), [HumanMessage("Say hello.")])

    with ThreadPoolExecutor(max_workers=1) as pool:  # the worker thread ends when the pool shuts down
        pid, reply = pool.submit(work).result()
    time.sleep(1.0)  # had the server been tied to the worker thread, it would be gone by now
    return {"decision": "answer", "reply": reply, "pid": pid}


def main() -> None:
    from agent.llm_server import shared_server_if_started

    # A process started in the background by a shell without job control inherits SIGINT ignored;
    # a program run from a terminal has Python's handler, which is the case under test.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    report = through_the_graph() if sys.argv[1] == "graph" else from_a_worker_thread()
    server = shared_server_if_started()
    report["running"] = bool(server and server.is_running)
    print(json.dumps(report), flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
