"""How many threads the serving encoder's analysis pass should use on a shared 2-core machine.

    .venv/bin/python benchmarks/encoder_threads.py [--rounds 40] [--threads 1 2]

For each thread count, one analysis pass (the judge encoder's ``encode_pair`` over one request) is
timed on the benchmark turns, first on otherwise idle cores, then while a competing process keeps
both cores busy the way the embedded llama.cpp server does while it decodes. Reported: median and
p95 per setting, and the ratio of busy to idle medians. Each setting runs in its own process.
(Measured with torch until issue 17; the serving encoder is now the ONNX export, agent/onnx_encoder.py.)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time

from _common import ROOT, TURN_MESSAGES, emit, summary


def _busy(stop_after_s: float) -> None:
    """Keep one core busy (two of these stand in for a 2-thread decoder)."""
    deadline = time.monotonic() + stop_after_s
    x = 0
    while time.monotonic() < deadline:
        x = (x * 1103515245 + 12345) % 2147483648


def _measure(threads: int, rounds: int) -> dict[str, object]:
    """Run in a child process: time encode_pair per request at a fixed thread count."""
    from agent.onnx_encoder import OnnxPairEncoder

    judge_encoder = OnnxPairEncoder.load(threads=threads)
    assert judge_encoder.has_judge_layers, "the shipped judge reads the tuned encoder"
    for text in TURN_MESSAGES:  # warm-up
        judge_encoder.encode_pair([text])
    samples = []
    for _ in range(rounds):
        for text in TURN_MESSAGES:
            started = time.perf_counter()
            judge_encoder.encode_pair([text])
            samples.append((time.perf_counter() - started) * 1000)
    return summary(samples)


def _child(threads: int, rounds: int, busy: bool) -> dict[str, object]:
    code = (
        "import json, sys; sys.path.insert(0, 'benchmarks'); import encoder_threads as b; "
        f"print('RESULT', json.dumps(b._measure({threads}, {rounds})))"
    )
    competitors = []
    if busy:
        competitors = [multiprocessing.Process(target=_busy, args=(600.0,)) for _ in range(2)]
        for process in competitors:
            process.start()
    try:
        load_before = os.getloadavg()[0]
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=900
        )
    finally:
        for process in competitors:
            process.terminate()
            process.join()
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    result: dict[str, object] = json.loads(line.removeprefix("RESULT "))
    result["load_average_before"] = round(load_before, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=40, help="passes per request per setting")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out")
    args = parser.parse_args()
    results: dict[str, object] = {"requests": len(TURN_MESSAGES), "rounds": args.rounds}
    for threads in args.threads:
        for busy in (False, True):
            label = f"threads_{threads}_{'busy' if busy else 'idle'}"
            print(f"measuring {label}…", file=sys.stderr, flush=True)
            results[label] = _child(threads, args.rounds, busy)
        idle, busy_result = results[f"threads_{threads}_idle"], results[f"threads_{threads}_busy"]
        assert isinstance(idle, dict) and isinstance(busy_result, dict)
        results[f"threads_{threads}_busy_over_idle"] = round(busy_result["median_ms"] / idle["median_ms"], 2)
    emit("encoder_threads", results, args.out)


if __name__ == "__main__":
    main()
