"""Prompt batch size of the embedded server: memory against prompt-evaluation time.

    .venv/bin/python benchmarks/llm_batch.py [--model qwen2.5-coder-0.5b] [--runs 3] [--batches 512,128,64]

llama-cpp-python keeps a float32 logits row per batch slot twice (llama.cpp's output buffer and its
own scores array); with the Qwen models' 151,936-token vocabulary a 512-token batch costs about
600 MB. For each batch size this starts the model's own server, words the same ~300-token prompt
``--runs`` times (interleaved round by round, a different opening each run) and reports the first
token, decoding speed and the server's peak RSS (VmHWM), with the load average.

``--logits-all both`` runs every batch size twice, with llama_cpp.server's per-token logits kept
(its own default) and not kept (the embedded server's), to measure what that store costs;
``--mmap both`` likewise with the model file mmap'd (llama_cpp.server's default) and read into
memory (the embedded server's).
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

from _common import emit, packaged_model, private_home, timed_stream
from llm_threads import FILLER


def vm_hwm_mb(pid: int | None) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a packaged model name (default: the table's default)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batches", default="512,128,64")
    parser.add_argument("--logits-all", choices=["false", "true", "both"], default="false",
                        help="keep logits for every token (llama_cpp.server's default), not, or compare both")
    parser.add_argument("--mmap", choices=["false", "true", "both"], default="false",
                        help="mmap the model file (llama_cpp.server's default), read it into memory, or compare both")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    home = private_home()

    from langchain_core.messages import HumanMessage, SystemMessage

    from agent.llm import PLACEHOLDER_API_KEY, LLMSettings, make_chat_model
    from agent.llm_server import EmbeddedLlamaServer
    from prompts import load_prompt

    model = packaged_model(args.model)
    system = load_prompt("system.md")
    servers = {}
    samples: dict[str, dict[str, list[float]]] = {}
    load_before = os.getloadavg()
    try:
        choice = {"false": [False], "true": [True], "both": [True, False]}
        variants = [(int(b), logits_all, mmap) for b in args.batches.split(",")
                    for logits_all in choice[args.logits_all] for mmap in choice[args.mmap]]  # fmt: skip
        for batch, logits_all, mmap in variants:
            key = " ".join([str(batch), *(["logits_all"] if logits_all else []), *(["mmap"] if mmap else [])])
            server = EmbeddedLlamaServer(home / "logs", model=model, n_batch=batch, logits_all=logits_all,
                                         use_mmap=mmap, progress=False).start()  # fmt: skip
            server.warm_up(system)
            chat = make_chat_model(LLMSettings(base_url=server.base_url, api_key=PLACEHOLDER_API_KEY,
                                               model=server.model_name, timeout_s=600, max_tokens=64,
                                               max_retries=0))  # fmt: skip
            servers[key] = (server, chat)
            samples[key] = {"first_token_s": [], "decode_tokens_per_s": []}
        for run in range(args.runs):
            for key, (_, chat) in servers.items():
                prompt = [SystemMessage(system),
                          HumanMessage(f"Week {run}, plan {key}. {FILLER * 2} Which day should I start the report?")]
                first_token_s, rate = timed_stream(chat, prompt)
                samples[key]["first_token_s"].append(first_token_s)
                if rate is not None:
                    samples[key]["decode_tokens_per_s"].append(rate)
        peaks = {key: round(vm_hwm_mb(server.pid), 1) for key, (server, _) in servers.items()}
    finally:
        for server, _ in servers.values():
            server.stop()
    results = {
        "model": model.name,
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "batches": {
            key: {
                "first_token_median_s": statistics.median(values["first_token_s"]),
                "decode_tokens_per_s_median": statistics.median(values["decode_tokens_per_s"] or [0.0]),
                "server_peak_rss_mb": peaks[key],
                **values,
            }
            for key, values in samples.items()
        },
    }
    emit("llm_batch", results, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
