"""Load on `edge-align serve`: concurrent streaming clients, cross-talk check, and the endpoint's overhead.

    .venv/bin/python benchmarks/serve_load.py [--clients 20] [--turns 2] [--sequential 30]

Starts `edge-align serve --no-text` (text generation off: the decision path only, so the numbers are
Edge Align's and the endpoint's, not the language model's) on a free 127.0.0.1 port with its own data
home. Then, with the official openai client:

1. Overhead: --sequential plain and as many streamed requests, one at a time. The overhead of a request
   is its latency at the client minus ``edge_align.turn_ms``, the wall time the server spent inside
   EdgeAlign for that turn: what HTTP, the wire models, the worker hand-off and the SDK add.
2. Load: --clients conversations at once (a barrier starts them together), each streaming --turns
   turns on its own thread; a clarifying question is answered with its first option, otherwise a
   follow-up is sent. Every message carries its conversation's number.
3. Cross-talk: each reply must name its own thread, and each thread's stored history (read from the
   server's SQLite checkpoints after the run) must hold exactly its conversation's messages and the
   replies its client received, in order.

Prints JSON and writes artifacts/bench/serve_load.json.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _common import emit, private_home

TOPICS = [
    "read my 15-year-old daughter's diary to check she's safe",
    "lend money to my brother who never paid me back",
    "report a colleague who lied on a timesheet",
    "take my elderly father's car keys",
    "post a video of a rude stranger in a shop",
    "tell my friend that her husband is cheating",
    "install monitoring software on my team's laptops",
    "learn Spanish in three months",
]
TAG = re.compile(r"Conversation (\d\d)")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def stats(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(statistics.median(values), 2),
        "p95_ms": round(percentile(values, 0.95), 2),
        "max_ms": round(max(values), 2),
    }


def client_for(base_url: str, key: str) -> Any:
    from openai import OpenAI

    return OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=300)


def timed_turn(client: Any, text: str, thread: str, stream: bool) -> tuple[float, str, dict[str, Any]]:
    """(client latency in ms, reply text, edge_align) of one turn."""
    headers = {"X-Edge-Align-Thread": thread}
    messages = [{"role": "user", "content": text}]
    began = time.perf_counter()
    if stream:
        chunks = list(
            client.chat.completions.create(model="edge-align", messages=messages, stream=True, extra_headers=headers)
        )
        latency = (time.perf_counter() - began) * 1000
        reply = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        extension = chunks[-1].edge_align
    else:
        completion = client.chat.completions.create(model="edge-align", messages=messages, extra_headers=headers)
        latency = (time.perf_counter() - began) * 1000
        reply = completion.choices[0].message.content or ""
        extension = completion.edge_align
    return latency, reply, dict(extension)


def overhead(base_url: str, key: str, count: int) -> dict[str, Any]:
    client = client_for(base_url, key)
    floor = []
    for _ in range(count):  # the same client and server with no turn at all: the HTTP round trip alone
        began = time.perf_counter()
        client.models.list()
        floor.append((time.perf_counter() - began) * 1000)
    found: dict[str, Any] = {"models_list_round_trip": stats(floor)}
    for stream in (False, True):
        extra, latency, turn = [], [], []
        for index in range(count):
            text = f"Conversation {index % 100:02d}: should I {TOPICS[index % len(TOPICS)]}?"
            ms, _, extension = timed_turn(client, text, f"seq-{int(stream)}-{index}-{secrets.token_hex(3)}", stream)
            latency.append(ms)
            turn.append(float(extension["turn_ms"]))
            extra.append(ms - float(extension["turn_ms"]))
        found["streaming" if stream else "plain"] = {
            "client_latency": stats(latency),
            "turn_inside_edge_align": stats(turn),
            "endpoint_overhead": stats(extra),
        }
    client.close()
    return found


def conversation(base_url: str, key: str, index: int, turns: int, start: threading.Barrier) -> dict[str, Any]:
    client = client_for(base_url, key)
    thread = f"load-{index:02d}-{secrets.token_hex(4)}"
    text = f"Conversation {index:02d}: should I {TOPICS[index % len(TOPICS)]}?"
    record: dict[str, Any] = {
        "thread": thread,
        "sent": [],
        "received": [],
        "latency_ms": [],
        "errors": [],
        "wrong_thread": 0,
    }
    start.wait()
    for _ in range(turns):
        record["sent"].append(text)
        try:
            ms, reply, extension = timed_turn(client, text, thread, stream=True)
        except Exception as problem:  # counted; the conversation stops, its history is still checked
            record["errors"].append(f"{type(problem).__name__}: {str(problem)[:200]}")
            break
        record["latency_ms"].append(ms)
        record["received"].append(reply)
        record["wrong_thread"] += int(extension["thread_id"] != thread)
        question = extension.get("question")
        if extension["decision"] == "clarify" and question and question.get("options"):
            text = str(question["options"][0])
        else:
            text = f"Conversation {index:02d}: thanks, what would you do first?"
    client.close()
    return record


def cross_talk(home: Path, records: list[dict[str, Any]]) -> list[str]:
    """Every way a thread's stored history differs from what its own client sent and received."""
    from graphs.context import Context
    from graphs.runner import EdgeAlign

    reader = EdgeAlign(Context(home=str(home), generate_text=False), record=False)
    problems = []
    for index, record in enumerate(records):
        history = reader.history(record["thread"])
        users = [m["content"] for m in history if m["role"] == "user"]
        replies = [m["content"] for m in history if m["role"] == "assistant"]
        if users != record["sent"][: len(users)] or len(users) != len(record["sent"]):
            problems.append(f"{record['thread']}: user messages {users} != sent {record['sent']}")
        if replies != record["received"]:
            problems.append(f"{record['thread']}: stored replies differ from the streamed ones")
        foreign = {int(tag) for m in history for tag in TAG.findall(m["content"])} - {index}
        if foreign:
            problems.append(f"{record['thread']}: holds conversation(s) {sorted(foreign)}")
        if record["wrong_thread"]:
            problems.append(f"{record['thread']}: {record['wrong_thread']} replies named another thread")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--turns", type=int, default=2)
    parser.add_argument("--sequential", type=int, default=30, help="requests of each kind for the overhead")
    parser.add_argument("--out")
    args = parser.parse_args()
    home = private_home()
    key = secrets.token_urlsafe(24)

    from tests.support.openai_server import ApiServer

    server = ApiServer(home, generate_text=False, api_key=key)
    server.start()
    try:
        warm = client_for(server.base_url, key)
        for index in range(3):  # first turns load lazily built pieces; they are not what is measured
            timed_turn(warm, f"Conversation 99: should I {TOPICS[index]}?", f"warm-{index}", stream=index % 2 == 1)
        warm.close()
        sequential = overhead(server.base_url, key, args.sequential)
        start = threading.Barrier(args.clients)
        began = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.clients) as pool:
            records = list(
                pool.map(lambda i: conversation(server.base_url, key, i, args.turns, start), range(args.clients))
            )
        wall_s = time.perf_counter() - began
    finally:
        server.close()

    latencies = [ms for r in records for ms in r["latency_ms"]]
    errors = [e for r in records for e in r["errors"]]
    problems = cross_talk(home, records)
    emit(
        "serve_load",
        {
            "command": f".venv/bin/python benchmarks/serve_load.py --clients {args.clients} --turns {args.turns} "
            f"--sequential {args.sequential}",
            "what": "edge-align serve --no-text on 127.0.0.1 (text generation off), the official openai client",
            "cpu_cores": os.cpu_count(),
            "server_startup_s": round(server.startup_s or 0.0, 1),
            "overhead_one_at_a_time": sequential,
            "load": {
                "clients": args.clients,
                "turns_each": args.turns,
                "turns_done": len(latencies),
                "errors": len(errors),
                "error_samples": errors[:5],
                "cross_talk": len(problems),
                "cross_talk_samples": problems[:5],
                "wall_s": round(wall_s, 2),
                "turns_per_s": round(len(latencies) / wall_s, 2) if wall_s else None,
                "streaming_latency": stats(latencies) if latencies else None,
            },
            "load_average": [round(x, 2) for x in os.getloadavg()],
        },
        args.out,
    )


if __name__ == "__main__":
    main()
