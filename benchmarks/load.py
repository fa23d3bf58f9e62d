"""Load on the demo: a bounded number of conversations through /chat, several at a time.

    .venv/bin/python benchmarks/load.py [--conversations 12] [--concurrency 4] [--turns 2]

Starts `edge-align demo` on a free 127.0.0.1 port with its own data home (or $EDGE_ALIGN_HOME),
with the embedded language model, then runs the conversations through gradio_client. A conversation
answers its clarifying questions with the first option, or asks a follow-up, until it has had
--turns turns. Reports throughput (turns per second of wall time), p50 and p95 turn latency, the
error count and the peak resident memory of the demo's process tree (the demo and the model server
it started), as JSON on stdout and in artifacts/bench/load.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import emit, private_home

MESSAGES = [
    "Should I read my 15-year-old daughter's diary to check she's safe?",
    "Is euthanasia morally acceptable?",
    "What is a good way to start learning to cook?",
    "My manager wants me to install monitoring software on my team's laptops. Is that fair?",
    "Should I tell my friend that her husband is cheating on her?",
    "Can I lend money to my brother who never paid me back before?",
    "Is it okay to post a video of a stranger being rude in a shop?",
    "My elderly father wants to keep driving. Should I take his car keys?",
]
FOLLOW_UP = "Thanks. What would you do first?"


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The parent pid is the 2nd field after the ")" that closes the command name.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def tree_rss_mb(root: int) -> float:
    """Resident memory of a process and all its descendants, from /proc (Linux)."""
    total_kb = 0
    pending = [root]
    while pending:
        pid = pending.pop()
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
        pending.extend(_children(pid))
    return total_kb / 1024


class PeakMemory(threading.Thread):
    def __init__(self, pid: int, every_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pid, self.every_s = pid, every_s
        self.peak_mb = 0.0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.peak_mb = max(self.peak_mb, tree_rss_mb(self.pid))
            self.stopping.wait(self.every_s)


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def conversation(url: str, index: int, turns: int) -> tuple[list[float], list[str], dict[str, int]]:
    from gradio_client import Client

    client = Client(url, verbose=False)
    latencies: list[float] = []
    errors: list[str] = []
    decisions: dict[str, int] = {}
    message, thread = MESSAGES[index % len(MESSAGES)], ""
    for _ in range(turns):
        began = time.perf_counter()
        try:
            _reply, thread, decision, options = client.predict(message, thread, api_name="/chat")
        except Exception as problem:  # counted, and the conversation goes on
            errors.append(f"{type(problem).__name__}: {str(problem)[:200]}")
            continue
        finally:
            latencies.append(time.perf_counter() - began)
        decisions[decision] = decisions.get(decision, 0) + 1
        message = options[0] if decision == "clarify" and options else FOLLOW_UP
    return latencies, errors, decisions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=12)
    parser.add_argument("--concurrency", type=int, default=4, help="conversations in flight at once")
    parser.add_argument("--turns", type=int, default=2, help="turns per conversation")
    parser.add_argument("--out")
    args = parser.parse_args()
    home = private_home()
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

    from tests.support.demo_server import DemoServer

    server = DemoServer(home)
    started = time.perf_counter()
    server.start()
    startup_s = time.perf_counter() - started
    assert server._process is not None
    memory = PeakMemory(server._process.pid)
    memory.start()
    try:
        began = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
            outcomes = list(pool.map(lambda i: conversation(server.url, i, args.turns), range(args.conversations)))
        wall = time.perf_counter() - began
    finally:
        memory.stopping.set()
        memory.join()
        server.stop()

    latencies = sorted(t for lat, _, _ in outcomes for t in lat)
    errors = [e for _, errs, _ in outcomes for e in errs]
    decisions: dict[str, int] = {}
    for _, _, counted in outcomes:
        for decision, count in counted.items():
            decisions[decision] = decisions.get(decision, 0) + count
    emit(
        "load",
        {
            "command": f".venv/bin/python benchmarks/load.py --conversations {args.conversations} "
            f"--concurrency {args.concurrency} --turns {args.turns}",
            "what": "conversations through the demo's /chat API (gradio_client), embedded SmolLM2 writing answers",
            "host": "127.0.0.1",
            "cpu_cores": os.cpu_count(),
            "demo_startup_s": round(startup_s, 1),
            "conversations": args.conversations,
            "concurrency": args.concurrency,
            "turns": len(latencies),
            "wall_s": round(wall, 2),
            "throughput_turns_per_s": round(len(latencies) / wall, 3),
            "latency_p50_s": round(statistics.median(latencies), 2),
            "latency_p95_s": round(percentile(latencies, 0.95), 2),
            "latency_max_s": round(latencies[-1], 2),
            "errors": len(errors),
            "error_examples": errors[:5],
            "decisions": decisions,
            "peak_rss_mb": round(memory.peak_mb, 1),
        },
        args.out,
    )


if __name__ == "__main__":
    main()
