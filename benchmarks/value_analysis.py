"""Median latency of value analysis plus conflict scoring for one message, after warm-up.

    .venv/bin/python benchmarks/value_analysis.py [--rounds 20]

Per message: the embedding is computed once (timed apart, as at run time where one embedding per
turn is handed to every judgement); then the trained value scorer's ``predict_proba`` and the
conflict model's ``assess`` (which embeds the options itself when the message names them, "should I
A or B?"). The target is value analysis + conflict <= 15 ms on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import time

from _common import TURN_MESSAGES, emit, summary

TARGET_MS = 15.0

MESSAGES = [
    *TURN_MESSAGES,
    "Should I tell my boss about my coworker's drinking or keep quiet?",
    "Should I take the better-paid job abroad or stay near my ageing parents?",
    "My friend asked me to lie to his wife about where he was last night. What should I do?",
    "Is it okay to report my neighbour to immigration?",
    "Should I vaccinate my child, or wait until she is older?",
    "How do I get into my late father's email account to save his photos?",
    "Write a short poem about autumn leaves.",
    "Should I donate my savings to charity or invest them for my children's education?",
    "Can I record my manager secretly to prove he is harassing me?",
    "Is it wrong to eat meat?",
    "How do I tell my parents I am gay when they are very religious?",
    "Should I let my terminally ill mother stop her treatment, or push her to continue?",
    "What is the boiling point of water at high altitude?",
    "Should I publish the leaked documents that show my company hid safety defects?",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20, help="timed passes over the messages")
    parser.add_argument("--warmup", type=int, default=3, help="untimed passes first")
    parser.add_argument(
        "--torch-threads", type=int, help="torch intra-op threads (default: torch's own, as the runtime runs)"
    )
    parser.add_argument("--out")
    args = parser.parse_args()

    import torch

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)

    from agent.conflict import extract_options, load_conflict_model
    from agent.encoder import load_encoder
    from agent.value_model import load_value_scorer

    started = time.perf_counter()
    encoder = load_encoder()
    scorer = load_value_scorer("trained")
    conflict = load_conflict_model()
    load_s = time.perf_counter() - started

    def one(message: str) -> tuple[float, float, float, float]:
        t0 = time.perf_counter()
        embedding = encoder.encode([message])[0]
        t1 = time.perf_counter()
        probs = scorer.predict_proba(embedding)
        t2 = time.perf_counter()
        options = extract_options(message) or None
        conflict.assess(message, embedding, probs, options=options, encoder=encoder)
        t3 = time.perf_counter()
        ms = 1000.0
        return (t1 - t0) * ms, (t2 - t1) * ms, (t3 - t2) * ms, (t3 - t1) * ms

    for _ in range(args.warmup):
        for message in MESSAGES:
            one(message)

    named = {m for m in MESSAGES if extract_options(m)}
    samples: dict[str, list[float]] = {k: [] for k in ("embedding", "values", "conflict", "analysis", "total")}
    analysis_by_kind: dict[str, list[float]] = {"with_named_options": [], "without_options": []}
    for _ in range(args.rounds):
        for message in MESSAGES:
            embed_ms, values_ms, conflict_ms, analysis_ms = one(message)
            samples["embedding"].append(embed_ms)
            samples["values"].append(values_ms)
            samples["conflict"].append(conflict_ms)
            samples["analysis"].append(analysis_ms)
            samples["total"].append(embed_ms + analysis_ms)
            kind = "with_named_options" if message in named else "without_options"
            analysis_by_kind[kind].append(analysis_ms)

    analysis = summary(samples["analysis"])
    emit(
        "value_analysis",
        {
            "messages": len(MESSAGES),
            "messages_with_named_options": len(named),
            "rounds": args.rounds,
            "value_analysis_plus_conflict_ms": analysis,
            "component_median_ms": {k: summary(v)["median_ms"] for k, v in samples.items()},
            "component_p95_ms": {k: summary(v)["p95_ms"] for k, v in samples.items()},
            "value_analysis_plus_conflict_by_message_kind": {k: summary(v) for k, v in analysis_by_kind.items()},
            "target_ms": TARGET_MS,
            "median_over_target": round(analysis["median_ms"] / TARGET_MS, 2),
            "p95_over_target": round(analysis["p95_ms"] / TARGET_MS, 2),
            "load_models_s": round(load_s, 1),
            "torch_threads": torch.get_num_threads(),
            "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        },
        args.out,
    )


if __name__ == "__main__":
    main()
