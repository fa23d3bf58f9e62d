"""Peak memory of the demo as a user runs it: `edge-align demo` plus its embedded model server.

    .venv/bin/python benchmarks/demo_memory.py [--model NAME] [--turns 3]

Starts the real demo on a free loopback port with a fresh data home, waits for it, sends ``--turns``
questions through its /chat API (gradio_client), then reads the peak resident set (VmHWM) of the
demo process and of the model server it started, and their sum (an upper bound of the joint peak).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from _common import ROOT, emit, private_home

QUESTIONS = [
    "What is the capital of France?",
    "How do I remove a red wine stain from a cotton shirt?",
    "Is it okay to lie to protect someone's feelings?",
]


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(child) for child in text]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="EDGE_ALIGN_EMBEDDED_MODEL for the demo (default: the table's default)")
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    home = private_home()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "EDGE_ALIGN_HOME": str(home), "PYTHONUNBUFFERED": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    if args.model:
        env["EDGE_ALIGN_EMBEDDED_MODEL"] = args.model
    log = open(home / "demo.log", "w")  # noqa: SIM115  (closed below)
    demo = subprocess.Popen([sys.executable, "-m", "ui.cli", "demo", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip
    started = time.monotonic()
    try:
        while "Edge Align demo ready" not in (home / "demo.log").read_text(errors="replace"):
            if demo.poll() is not None or time.monotonic() - started > 600:
                raise SystemExit(f"the demo did not start:\n{(home / 'demo.log').read_text()[-3000:]}")
            time.sleep(0.5)
        ready_s = time.monotonic() - started
        from gradio_client import Client

        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        turns = []
        for question in (QUESTIONS * args.turns)[: args.turns]:
            began = time.monotonic()
            reply, _, decision, _ = client.predict(question, "", api_name="/chat")
            turns.append({"question": question, "decision": decision, "seconds": round(time.monotonic() - began, 1),
                          "reply": reply[:300]})  # fmt: skip
        servers = [pid for pid in children(demo.pid) if b"agent.llama_child" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        demo_mb = vm_hwm_mb(demo.pid)
        server_mb = sum(vm_hwm_mb(pid) for pid in servers)
        results = {
            "model": args.model or "(default)",
            "ready_s": round(ready_s, 1),
            "turns": turns,
            "demo_peak_rss_mb": round(demo_mb, 1),
            "model_server_peak_rss_mb": round(server_mb, 1),
            "sum_of_peaks_mb": round(demo_mb + server_mb, 1),
            "load_average": [round(x, 2) for x in os.getloadavg()],
        }
    finally:
        demo.terminate()
        demo.wait(timeout=60)
        log.close()
    emit("demo_memory", results, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
