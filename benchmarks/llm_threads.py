"""Decode threads and OpenMP's wait policy for the embedded server, measured on this machine.

    .venv/bin/python benchmarks/llm_threads.py [--model qwen2.5-coder-0.5b] [--runs 3]

For each setting (1 or 2 threads; OMP_WAIT_POLICY=PASSIVE, or OpenMP's default spin-then-sleep)
it starts the model's own server and words the same ~300-token prompt ``--runs`` times (a different
opening each run, so no run reuses another's evaluated prompt beyond the system prompt), timing the
first token (prompt evaluation) and decoding (64 tokens). Settings are interleaved round by round
so machine load hits all alike; the load average is recorded. agent.llm_server's defaults (one
thread fewer than the cores, PASSIVE) come from these numbers.
"""

from __future__ import annotations

import argparse
import os
import statistics

from _common import emit, packaged_model, private_home, timed_stream

SETTINGS = [(1, "PASSIVE"), (2, "PASSIVE"), (1, ""), (2, "")]  # "": OpenMP's default policy
FILLER = (
    "I am planning my week. On Monday I have two meetings and a dentist appointment; on Tuesday I "
    "want to go running before work and cook for friends in the evening; on Wednesday my sister "
    "visits and we may go to the museum; on Thursday there is a deadline for a report I have not "
    "started; on Friday I would like to rest. I also need to buy groceries, call my landlord about "
    "the heating, and renew my library books. "
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a packaged model name (default: the table's default)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    home = private_home()

    from langchain_core.messages import HumanMessage, SystemMessage

    from agent.llm import PLACEHOLDER_API_KEY, LLMSettings, make_chat_model
    from agent.llm_server import EmbeddedLlamaServer
    from prompts import load_prompt

    model = packaged_model(args.model)
    system = SystemMessage(load_prompt("system.md"))
    servers = {}
    samples: dict[str, dict[str, list[float]]] = {}
    load_before = os.getloadavg()
    try:
        for threads, policy in SETTINGS:
            key = f"{threads} thread(s), OMP_WAIT_POLICY={policy or 'default'}"
            os.environ["OMP_WAIT_POLICY"] = policy  # read by agent.llm_server.server_env at start
            server = EmbeddedLlamaServer(home / "logs", model=model, n_threads=threads, progress=False).start()
            server.warm_up(system.content if isinstance(system.content, str) else "")
            chat = make_chat_model(LLMSettings(base_url=server.base_url, api_key=PLACEHOLDER_API_KEY,
                                               model=server.model_name, timeout_s=600, max_tokens=64,
                                               max_retries=0))  # fmt: skip
            servers[key] = (server, chat)
            samples[key] = {"first_token_s": [], "decode_tokens_per_s": []}
        for run in range(args.runs):
            for key, (_, chat) in servers.items():
                prompt = [system, HumanMessage(f"Week {run} of {key}. {FILLER * 2} Which day should I start the report?")]
                first_token_s, rate = timed_stream(chat, prompt)
                samples[key]["first_token_s"].append(first_token_s)
                if rate is not None:
                    samples[key]["decode_tokens_per_s"].append(rate)
    finally:
        for server, _ in servers.values():
            server.stop()
    results = {
        "model": model.name,
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "cores": os.cpu_count(),
        "settings": {
            key: {
                "first_token_median_s": statistics.median(values["first_token_s"]),
                "decode_tokens_per_s_median": statistics.median(values["decode_tokens_per_s"] or [0.0]),
                **values,
            }
            for key, values in samples.items()
        },
    }
    emit("llm_threads", results, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
