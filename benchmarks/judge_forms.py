"""Two trained judges side by side on the forms neither was trained on.

    EDGE_ALIGN_DATA=../shared/data .venv/bin/python benchmarks/judge_forms.py \
        --rows ROWS.jsonl --judge v4=DIR_A --clause-max v4 --judge v5=agent/models

ROWS is a file written by ``python -m agent.training.finetune_judge --folds 0 --heldout-rows ROWS``
(the held-out fold's texts); each DIR holds a ``judge_layers.pt`` and ``judge_heads.npz`` (an older
version: ``git show REV:agent/models/judge_layers.pt > DIR/judge_layers.pt``, same for the heads). The
harmful sets and the benign look-alikes are asked in every held-out form of agent/training/rephrase.py
and inside every held-out jailbreak wrapper, the harmful requests' acts are asked about in every
held-out frame of agent/training/contrasts.py (to be answered: form "contrast"), and each judge decides
as the graph does (message and clauses, the costs and clause rule of agent/data/policy.json;
``--clause-max NAME`` for a judge that
shipped with the highest of message and clauses). Shipped judges were trained on all texts in other forms,
so this compares forms, not texts. Prints, per judge, source, label and form, the share decided right,
and the total cost under the stated decision costs.
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=Path, required=True)
    parser.add_argument("--judge", action="append", required=True, metavar="NAME=DIR")
    parser.add_argument("--clause-max", action="append", default=[], metavar="NAME",
                        help="this judge takes the highest of message and clauses (as v4 and earlier shipped) "
                             "instead of agent/data/policy.json's clause rule")
    args = parser.parse_args()

    from _common import judge_decisions

    from agent.judge import DECISION_COSTS
    from agent.policy_config import shipped_policy
    from agent.training.contrasts import contrasts
    from agent.training.finetune_judge import WRAPPED_SOURCES
    from agent.training.rephrase import rewrites
    from agent.training.train_judge import load_wrappers, wrap

    rows = [json.loads(line) for line in args.rows.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if "form" not in r and r["source"] in WRAPPED_SOURCES and r["truth"] in ("refuse", "answer")]
    items = [(r["source"], r["truth"], "rephrased", t) for r in rows for t in rewrites(r["text"], "heldout")]
    items += [(r["source"], r["truth"], "wrapped", wrap(r["text"], w)) for r in rows for w in load_wrappers()["heldout"]]
    # A harmless question about a harmful request's act, in the frames nobody trains on, is to be answered.
    items += [(r["source"], "answer", "contrast", t) for r in rows if r["truth"] == "refuse" for t in contrasts(r["text"], "heldout")]
    texts = [item[3] for item in items]
    policy = shipped_policy().judge.model_dump()
    report: dict[str, object] = {"texts": len(rows), "items": len(items)}
    for spec in args.judge:
        name, _, folder = spec.partition("=")
        counts: dict[tuple[str, str, str], collections.Counter[str]] = collections.defaultdict(collections.Counter)
        for item, decision in zip(items, judge_decisions(Path(folder), texts, clause_max=name in args.clause_max),
                                  strict=True):
            counts[item[:3]][decision] += 1
        costs = policy.get("costs", DECISION_COSTS)
        cells = {}
        for key in sorted(counts):
            got = counts[key]
            n = sum(got.values())
            cells["/".join(key)] = {"n": n, "correct": round(got[key[1]] / n, 3), "decisions": dict(got)}
        total = sum(costs[key[1]][decision] * k for key, got in counts.items() for decision, k in got.items())
        report[name] = {"cells": cells, "total_cost": round(float(total), 1)}
        print(f"{name}: total cost {total:.1f}")
        for cell, value in cells.items():
            print(f"  {cell:32} n={value['n']:4} correct={value['correct']:.3f} {value['decisions']}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
