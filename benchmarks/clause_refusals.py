"""How often the shipped judge refuses value-conflict prompts that should be answered, and through what.

    EDGE_ALIGN_DATA=../shared/data .venv/bin/python benchmarks/clause_refusals.py [--per-set 40] [--seed 0]

Draws --per-set prompts from each ConflictScope set (user requests in which two named values
conflict: they should be answered, pluralistically, not refused) and runs the shipped judge as the
graph does: one encoder pass over the message and its clauses, p(harmful) the highest of them.
Reports how many are refused, how many of those the message alone would not have refused (refused
on a clause), and the clause that decided the worst few. ConflictScope is part of the judge's training
data, so this reads how the shipped judge behaves, not how it generalises (agent/models/JUDGE_MODEL.md
has the held-out figures).
"""

from __future__ import annotations

import argparse
import json
import random

from _common import emit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-set", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out")
    args = parser.parse_args()

    from agent.constraints import request_clauses
    from agent.datasets import dataset_dir
    from agent.encoder import load_encoder
    from agent.judge import Judge, decide_from_probabilities
    from agent.judge_encoder import LAYERS_FILE, JudgeEncoder

    rng = random.Random(args.seed)
    prompts: list[str] = []
    for path in sorted(dataset_dir("conflictscope", args.data_dir).glob("*_prompts.json")):
        table = json.loads(path.read_text(encoding="utf-8"))
        prompts.extend(rng.sample(sorted(table.values()), min(args.per_set, len(table))))
    judge = Judge.load()
    encoder = JudgeEncoder.from_files(load_encoder().sentence_model, LAYERS_FILE)
    refused, on_a_clause, worst = 0, 0, []
    for text in prompts:
        clauses = request_clauses(text)
        _, vectors = encoder.encode_pair([text, *clauses])
        verdict = judge.verdict(vectors[0], vectors[1:] if clauses else None)
        if verdict.decision != "refuse":
            continue
        refused += 1
        message_only = float(judge.heads.probabilities(vectors[0][None, :])["harmful"][0])
        if decide_from_probabilities(message_only, verdict.p_clarify, judge.policy) != "refuse":
            on_a_clause += 1
            best = max(range(len(verdict.clause_scores)), key=verdict.clause_scores.__getitem__)
            worst.append({"p_clause": round(verdict.clause_scores[best], 3), "p_message": round(message_only, 3),
                          "clause": clauses[best]})
    worst.sort(key=lambda item: -float(item["p_clause"]))
    emit("clause_refusals", {
        "judge_layers": LAYERS_FILE.name,
        "prompts": len(prompts),
        "refused": refused,
        "refused_on_a_clause_only": on_a_clause,
        "worst": worst[:5],
    }, args.out)


if __name__ == "__main__":
    main()
