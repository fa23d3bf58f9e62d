"""Would int8 weights speed up the analysis pass enough to keep, and how far do they move the embeddings?

    .venv/bin/python benchmarks/encoder_int8.py [--rounds 15]

Times the judge encoder's ``encode_pair`` (one analysis pass: a benchmark turn's message and its
clauses) on one torch thread, as turns run, with the shipped fp32 weights and with torch's dynamic
int8 quantisation of every linear layer (packaged MiniLM and the judge's tuned layers). Reports median
and p95 of each, their ratio, and the lowest cosine between the fp32 and int8 embedding of any text,
for the packaged embedding (norm retrieval, values) and the judge's.
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings
from typing import Any

import numpy as np
from _common import TURN_MESSAGES, emit, summary


def timed(encoder: Any, batches: list[list[str]], rounds: int) -> list[float]:
    for batch in batches:  # warm-up
        encoder.encode_pair(batch)
    samples = []
    for _ in range(rounds):
        for batch in batches:
            started = time.perf_counter()
            encoder.encode_pair(batch)
            samples.append((time.perf_counter() - started) * 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out")
    args = parser.parse_args()

    import torch

    from agent.constraints import request_clauses
    from agent.encoder import load_encoder
    from agent.judge_encoder import LAYERS_FILE, JudgeEncoder

    torch.set_num_threads(1)
    packaged = load_encoder().sentence_model
    fp32 = JudgeEncoder.from_files(packaged, LAYERS_FILE)
    batches = [[message, *request_clauses(message)] for message in TURN_MESSAGES]

    quantised_model = copy.deepcopy(packaged)
    with warnings.catch_warnings():  # torch.ao.quantization is deprecated in favour of torchao
        warnings.simplefilter("ignore")
        quantise = torch.ao.quantization.quantize_dynamic
        # In place: sentence-transformers' module does not take a new model by assignment.
        quantise(quantised_model[0].auto_model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
        int8 = JudgeEncoder(quantised_model, quantise(copy.deepcopy(fp32.tuned), {torch.nn.Linear}, dtype=torch.qint8))

    fp32_ms = summary(timed(fp32, batches, args.rounds))
    int8_ms = summary(timed(int8, batches, args.rounds))
    lowest = {"packaged": 1.0, "judge": 1.0}
    for batch in batches:
        (f_packaged, f_judge), (q_packaged, q_judge) = fp32.encode_pair(batch), int8.encode_pair(batch)
        lowest["packaged"] = min(lowest["packaged"], float(np.sum(f_packaged * q_packaged, axis=1).min()))
        lowest["judge"] = min(lowest["judge"], float(np.sum(f_judge * q_judge, axis=1).min()))
    emit("encoder_int8", {
        "torch_threads": 1,
        "fp32": fp32_ms,
        "int8": int8_ms,
        "int8_over_fp32_median": round(int8_ms["median_ms"] / fp32_ms["median_ms"], 3),
        "lowest_cosine_fp32_vs_int8": {k: round(v, 4) for k, v in lowest.items()},
    }, args.out)


if __name__ == "__main__":
    main()
