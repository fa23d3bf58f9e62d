"""Median latency of the decision path (everything but text generation) and of a whole turn.

    .venv/bin/python benchmarks/turn_latency.py [--rounds 20] [--whole-rounds 5]

The decision path runs the real graph on a real SQLite checkpointer with text generation off;
the whole turn adds the embedded SmolLM2 server writing the answer. Warm-up turns are excluded.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from _common import TURN_MESSAGES as MESSAGES
from _common import emit, private_home, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20, help="decision-path turns per message")
    parser.add_argument("--whole-rounds", type=int, default=3, help="whole turns per message")
    parser.add_argument("--out")
    args = parser.parse_args()
    private_home()

    from graphs.context import Context
    from graphs.resources import get_resources
    from graphs.runner import EdgeAlign, new_thread_id

    started = time.perf_counter()
    get_resources()
    startup_s = time.perf_counter() - started

    # Budget 0: every message runs to an answer, so both measurements cover the same path.
    decision_ctx = Context.from_env(generate_text=False, clarification_budget=0)
    agent = EdgeAlign(decision_ctx)
    for message in MESSAGES:  # warm-up
        agent.ask(message, thread_id=new_thread_id())
    decision: list[float] = []
    per_step: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for message in MESSAGES:
            t0 = time.perf_counter()
            result = agent.ask(message, thread_id=new_thread_id())
            decision.append((time.perf_counter() - t0) * 1000)
            for step, ms in result.timings_ms.items():
                per_step.setdefault(step, []).append(ms)

    results = {
        "decision_path": summary(decision),
        "decision_path_steps_median_ms": {k: summary(v)["median_ms"] for k, v in per_step.items()},
        "resources_startup_s": round(startup_s, 1),
    }
    if args.whole_rounds < 1:  # --whole-rounds 0: the decision path alone, no LLM server
        emit("turn_latency", results, args.out)
        return
    whole_agent = EdgeAlign(replace(decision_ctx, generate_text=True))
    t0 = time.perf_counter()
    whole_agent.ask(MESSAGES[0], thread_id=new_thread_id())  # starts the embedded LLM server
    llm_startup_s = time.perf_counter() - t0
    whole = []
    for _ in range(args.whole_rounds):
        for message in MESSAGES:
            t0 = time.perf_counter()
            whole_agent.ask(message, thread_id=new_thread_id())
            whole.append((time.perf_counter() - t0) * 1000)

    emit(
        "turn_latency",
        {
            **results,
            "whole_turn": summary(whole),
            "whole_over_decision_median_ratio": round(summary(whole)["median_ms"] / summary(decision)["median_ms"], 1),
            "llm_first_turn_incl_server_start_s": round(llm_startup_s, 1),
        },
        args.out,
    )


if __name__ == "__main__":
    main()
