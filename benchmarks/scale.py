"""Embedded backends vs server backends, side by side; then conversations over two app processes.

    .venv/bin/python benchmarks/scale.py [--rounds 5] [--whole-rounds 2] [--conversations 8] [--concurrency 4]

Embedded: SQLite checkpoints and user memory in the data home, Chroma on disk in the process.
Server: PostgreSQL (a private cluster with default durability settings) and a Chroma server,
both started here on loopback ports and stopped at the end (tests/support/servers.py).

1. Decision path (text generation off) and whole turn (the embedded SmolLM2 writes the answer),
   the two backends alternating turn by turn on the same messages, medians after warm-up.
2. Throughput: two `--worker` app processes on the server backends; each conversation's turns
   alternate between the two processes (the clarification asked by one is answered by the other),
   ``--concurrency`` conversations in flight at once. Decision path only, so the number is the
   engines' and the judgement's, not the language model's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

from _common import ROOT, emit, private_home, summary
from _common import TURN_MESSAGES as MESSAGES

CONVERSATION_OPENER = "Should I read my 15-year-old daughter's diary to check she's safe?"
FALLBACK_ANSWER = "I just want to keep her safe."
SERVER_ENV = ("EDGE_ALIGN_CHROMA_URL", "EDGE_ALIGN_DATABASE_URL")


def _answer_for(question: dict[str, Any] | None) -> str:
    options = (question or {}).get("options") or []
    return str(options[0]) if options else FALLBACK_ANSWER


# --------------------------------------------------------------------------------------------
# Worker: one app process answering turns sent as JSON lines on stdin


def worker() -> None:
    """Serve turns concurrently; replies go out as JSON lines tagged with the request id."""
    from graphs.context import Context
    from graphs.runner import EdgeAlign

    agent = EdgeAlign(Context.from_env(generate_text=False), record=False)
    out_lock = threading.Lock()

    def reply(payload: dict[str, Any]) -> None:
        with out_lock:
            sys.stdout.write(json.dumps(payload) + "\n")
            sys.stdout.flush()

    def handle(request: dict[str, Any]) -> None:
        started = time.perf_counter()
        try:
            result = agent.ask(request["message"], thread_id=request["thread"])
            reply({
                "id": request["id"], "decision": result.decision, "question": result.question,
                "ms": (time.perf_counter() - started) * 1000, "pid": os.getpid(),
            })  # fmt: skip
        except Exception as problem:  # reported to the parent, which fails loudly
            reply({"id": request["id"], "error": f"{type(problem).__name__}: {problem}"})

    reply({"ready": True, "pid": os.getpid()})
    with ThreadPoolExecutor(max_workers=4) as pool:
        for line in sys.stdin:
            if line.strip():
                pool.submit(handle, json.loads(line))


class WorkerProcess:
    """The parent's handle on one worker: send a turn, get a Future of its reply."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker"],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True,
        )  # fmt: skip
        self._pending: dict[int, Future[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._next_id = 0
        self.ready = threading.Event()
        self._reader = threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str] | None) -> None:
        assert stream is not None
        for line in stream:
            payload = json.loads(line)
            if payload.get("ready"):
                self.ready.set()
                continue
            with self._lock:
                future = self._pending.pop(payload["id"])
            future.set_result(payload)

    def ask(self, message: str, thread: str) -> Future[dict[str, Any]]:
        future: Future[dict[str, Any]] = Future()
        with self._lock:
            self._next_id += 1
            request_id = self._next_id
            self._pending[request_id] = future
        assert self.process.stdin is not None
        with self._lock:
            self.process.stdin.write(json.dumps({"id": request_id, "message": message, "thread": thread}) + "\n")
            self.process.stdin.flush()
        return future

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self._log.close()


def throughput(env: dict[str, str], conversations: int, concurrency: int, log_dir: Path) -> dict[str, Any]:
    workers = [WorkerProcess(env, log_dir / f"worker-{i}.log") for i in range(2)]
    try:
        started = time.perf_counter()
        for w in workers:
            if not w.ready.wait(timeout=600):
                raise TimeoutError(f"a worker did not start; see {log_dir}")
        startup_s = time.perf_counter() - started
        turn_ms: list[float] = []
        turns_by_pid: dict[int, int] = {}
        crossed = 0
        lock = threading.Lock()

        def conversation(index: int) -> int:
            nonlocal crossed
            thread = f"bench-{os.getpid()}-{index}"
            message, hop, last_pid = CONVERSATION_OPENER, index % 2, None
            for _ in range(4):  # opener plus at most the clarification budget's questions
                reply = workers[hop].ask(message, thread).result(timeout=600)
                if "error" in reply:
                    raise RuntimeError(reply["error"])
                with lock:
                    turn_ms.append(reply["ms"])
                    turns_by_pid[reply["pid"]] = turns_by_pid.get(reply["pid"], 0) + 1
                    crossed += int(last_pid is not None and last_pid != reply["pid"])
                if reply["decision"] != "clarify":
                    return 1
                message, hop, last_pid = _answer_for(reply["question"]), 1 - hop, reply["pid"]
            raise RuntimeError(f"conversation {thread} never reached an answer")

        warm = [workers[i].ask(CONVERSATION_OPENER, f"warm-{i}-{os.getpid()}") for i in range(2)]
        for future in warm:
            future.result(timeout=600)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            done = sum(pool.map(conversation, range(conversations)))
        elapsed = time.perf_counter() - t0
        return {
            "app_processes": 2,
            "conversations": done,
            "concurrency": concurrency,
            "turns": len(turn_ms),
            "turns_resumed_by_the_other_process": crossed,
            "turns_per_process": sorted(turns_by_pid.values()),
            "elapsed_s": round(elapsed, 2),
            "conversations_per_s": round(done / elapsed, 3),
            "turns_per_s": round(len(turn_ms) / elapsed, 3),
            "turn_latency_under_load": summary(turn_ms),
            "worker_startup_s": round(startup_s, 1),
        }
    finally:
        for w in workers:
            w.close()


# --------------------------------------------------------------------------------------------
# Side-by-side latency


def _set_env(values: dict[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _agent_on(home: Path, server_env: dict[str, str] | None, generate_text: bool) -> Any:
    """An EdgeAlign whose backends are picked by the environment, as an app process would pick them."""
    from graphs.context import Context
    from graphs.runner import EdgeAlign

    _set_env(dict(server_env) if server_env else dict.fromkeys(SERVER_ENV))
    try:
        # Budget 0: every message runs to an answer, so both backends cover the same path.
        context = Context.from_env(home=str(home), generate_text=generate_text, clarification_budget=0)
        return EdgeAlign(context, record=False)
    finally:
        _set_env(dict.fromkeys(SERVER_ENV))


def side_by_side(agents: dict[str, Any], rounds: int, warmup: int) -> dict[str, dict[str, Any]]:
    from graphs.runner import new_thread_id

    wall: dict[str, list[float]] = {name: [] for name in agents}
    nodes: dict[str, list[float]] = {name: [] for name in agents}
    steps: dict[str, dict[str, list[float]]] = {name: {} for name in agents}
    for round_index in range(warmup + rounds):
        for message in MESSAGES:
            for name, agent in agents.items():  # alternating, so load on the machine hits both alike
                t0 = time.perf_counter()
                result = agent.ask(message, thread_id=new_thread_id())
                elapsed = (time.perf_counter() - t0) * 1000
                if round_index < warmup:
                    continue
                wall[name].append(elapsed)
                nodes[name].append(result.decision_path_ms())
                for step, ms in result.timings_ms.items():
                    steps[name].setdefault(step, []).append(ms)
    return {
        name: {
            "turn_wall": summary(wall[name]),
            "nodes_sum": summary(nodes[name]),
            "steps_median_ms": {k: summary(v)["median_ms"] for k, v in steps[name].items()},
        }
        for name in agents
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="decision-path rounds over the messages")
    parser.add_argument("--whole-rounds", type=int, default=2, help="whole-turn rounds over the messages")
    parser.add_argument("--warmup", type=int, default=1, help="rounds run first and not counted")
    parser.add_argument("--conversations", type=int, default=8, help="conversations for the throughput run (max 64)")
    parser.add_argument("--concurrency", type=int, default=4, help="conversations in flight at once (max 16)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.worker:
        worker()
        return
    conversations = max(1, min(args.conversations, 64))
    concurrency = max(1, min(args.concurrency, 16))
    base = private_home()

    from tests.support.servers import ChromaServer, PostgresCluster

    with PostgresCluster() as postgres, ChromaServer() as chroma:
        server_env = {"EDGE_ALIGN_CHROMA_URL": chroma.url, "EDGE_ALIGN_DATABASE_URL": postgres.create_database("bench")}
        homes = {"embedded": base / "embedded", "server": base / "server"}
        loaded: dict[str, Callable[[bool], Any]] = {
            "embedded": lambda text: _agent_on(homes["embedded"], None, text),
            "server": lambda text: _agent_on(homes["server"], server_env, text),
        }
        decision_agents = {name: make(False) for name, make in loaded.items()}
        decision = side_by_side(decision_agents, args.rounds, args.warmup)
        whole_agents = {name: make(True) for name, make in loaded.items()}
        whole = side_by_side(whole_agents, args.whole_rounds, args.warmup)
        env = {**os.environ, **server_env, "EDGE_ALIGN_HOME": str(base / "workers"), "EDGE_ALIGN_RECORD": "0"}
        log_dir = base / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        concurrent = throughput(env, conversations, concurrency, log_dir)

    emit(
        "scale",
        {
            "setup": {
                "embedded": "SQLite (WAL) checkpoints and store in the data home; Chroma PersistentClient in process",
                "server": "PostgreSQL 15 private cluster (default durability) + `chroma run` server, loopback",
                "cores": os.cpu_count(),
                "messages": len(MESSAGES),
                "warmup_rounds": args.warmup,
            },
            "decision_path": decision,
            "whole_turn": whole,
            "decision_path_median_server_minus_embedded_ms": round(
                decision["server"]["turn_wall"]["median_ms"] - decision["embedded"]["turn_wall"]["median_ms"], 2
            ),
            "throughput_two_processes": concurrent,
        },
        args.out,
    )


if __name__ == "__main__":
    main()
