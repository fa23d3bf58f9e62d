"""Fit how a message's clauses weigh in its harmful probability, on one held-out fold; report on another.

    python -m agent.training.finetune_judge --folds 0,1 --epochs 2 --heldout-rows ROWS.jsonl
    python -m agent.training.tune_clause_harm --rows ROWS.jsonl [--fit-fold 0] [--report-fold 1] \\
        [--figure docs/figures/clause_harm.png] [--write]

The graph scores a message with several clauses (or one that addresses someone) on the message and
on each clause. The first rule took the highest of them: a jailbreak's wrapper text dilutes the whole
message, not the ask inside it. But one sentence of a long harmless request then refuses all of it:
out of fold the tuned judge refused 0.17-0.23 of ConflictScope's prompts on a clause ("I need a very
detailed step-by-step plan for throwing a surprise 40th birthday party ...") and almost none on the
message. This fits a logistic rule, p = sigmoid(a*logit(p_message) + b*logit(max p_clause) + c), on
the fit fold's held-out requests that have two or more clauses: their originals and their held-out
forms (inside jailbreak wrappers nobody trained on, asked in held-out wordings). A message with one
clause (the request without the name it addresses, "DAN, ...") keeps the higher of the two: it is
the same request. How many clauses a message has is not an input: with log(1 + clauses) as a third
one, the fit on fold 0 cost more on fold 0 itself (1,838.5 against 1,770.5) and made long harmless
requests more harmful for being long. Each (source, form) weighs the same and its two classes half
each, so no source's style or size carries the label. The report fold is never fitted on: it gives,
per source and form, how often the decision is right under the max rule, the message alone and the
fitted rule, and the total cost of the decisions under the stated costs (agent/judge.py).
``--write`` stores the rule in agent/data/policy.json (``clause_harm``) only when it costs less than
the max rule on the report fold.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent.judge import DECISION_COSTS, ClauseRule, decide_from_probabilities, decision_thresholds
from agent.training.finetune_judge import read_heldout_rows

RULES = ("max", "message", "fitted")


def load_rows(path: Path) -> list[dict[str, Any]]:
    rows = read_heldout_rows(path)
    missing = [r for r in rows if "p_harmful_message" not in r]
    if missing:
        raise SystemExit(f"{path}: rows without p_harmful_message (written by an older finetune_judge); run it again")
    return rows


def group_of(row: dict[str, Any]) -> str:
    return f"{row['source']}/{row.get('form', 'original')}"


def features(rows: Sequence[dict[str, Any]]) -> np.ndarray:
    return np.array([ClauseRule.features(r["p_harmful_message"], r["p_harmful_clauses"]) for r in rows], dtype=float)


def balanced_weights(rows: Sequence[dict[str, Any]], labels: np.ndarray) -> np.ndarray:
    """Every (source, form) group the same mass, split evenly between its classes."""
    count: dict[tuple[str, int], int] = defaultdict(int)
    for r, y in zip(rows, labels, strict=True):
        count[(group_of(r), int(y))] += 1
    classes: dict[str, int] = defaultdict(int)
    for group, _ in count:
        classes[group] += 1
    w = np.array([1.0 / classes[group_of(r)] / count[(group_of(r), int(y))] for r, y in zip(rows, labels, strict=True)])
    return w * len(w) / w.sum()


def fit_rule(rows: Sequence[dict[str, Any]]) -> ClauseRule:
    from sklearn.linear_model import LogisticRegression

    with_clauses = [r for r in rows if len(r["p_harmful_clauses"]) >= 2]  # a lone clause counts in full
    y = np.array([int(r["truth"] == "refuse") for r in with_clauses])
    model = LogisticRegression(C=1.0, max_iter=1000)
    model.fit(features(with_clauses), y, sample_weight=balanced_weights(with_clauses, y))
    a, b = (float(v) for v in model.coef_[0])
    return ClauseRule(round(a, 4), round(b, 4), round(float(model.intercept_[0]), 4))


def p_harmful(row: dict[str, Any], rule: str, fitted: ClauseRule) -> float:
    message, clauses = row["p_harmful_message"], row["p_harmful_clauses"]
    if rule == "message" or not clauses:
        return float(message)
    if rule == "max":
        return float(max(message, *clauses))
    return fitted.combine(message, clauses)


def report(rows: Sequence[dict[str, Any]], fitted: ClauseRule) -> dict[str, Any]:
    thresholds = decision_thresholds(DECISION_COSTS)
    cells: dict[str, dict[str, Any]] = {}
    totals = dict.fromkeys(RULES, 0.0)
    for r in rows:
        cell = cells.setdefault(group_of(r), {"n": 0, "with_clauses": 0, **{f"{k}_correct": 0 for k in RULES}})
        cell["n"] += 1
        cell["with_clauses"] += bool(r["p_harmful_clauses"])
        for rule in RULES:
            decision = decide_from_probabilities(p_harmful(r, rule, fitted), r["p_clarify"], thresholds)
            cell[f"{rule}_correct"] += decision == r["truth"]
            totals[rule] += DECISION_COSTS[r["truth"]][decision]
    for cell in cells.values():
        for rule in RULES:
            cell[f"{rule}_correct"] = round(cell[f"{rule}_correct"] / cell["n"], 3)
    return {"cells": dict(sorted(cells.items())), "total_cost": {k: round(v, 1) for k, v in totals.items()}}


def figure(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = {k: v for k, v in result["report"]["cells"].items() if v["with_clauses"]}
    names = list(cells)
    fig, ax = plt.subplots(figsize=(max(8, 0.6 * len(names)), 4.5))
    width = 0.27
    for k, rule in enumerate(RULES):
        ax.bar([i + (k - 1) * width for i in range(len(names))], [cells[n][f"{rule}_correct"] for n in names], width,
               label=f"{rule} (total cost {result['report']['total_cost'][rule]:.0f})")
    ax.set_xticks(range(len(names)), [f"{n}\n(n={cells[n]['n']})" for n in names], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("decided right")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"Harm from clauses: report fold {result['report_fold']} (fitted on fold {result['fit_fold']})", pad=28)
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(RULES), frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=Path, required=True, help="held-out rows of finetune_judge --heldout-rows")
    parser.add_argument("--fit-fold", type=int, default=0)
    parser.add_argument("--report-fold", type=int, default=1)
    parser.add_argument("--figure", type=Path, default=None)
    parser.add_argument("--write", action="store_true", help="store the rule in agent/data/policy.json if it costs less")
    args = parser.parse_args(argv)
    if args.fit_fold == args.report_fold:
        parser.error("--fit-fold and --report-fold must differ: never report on what was fitted")
    rows = load_rows(args.rows)
    fit_rows = [r for r in rows if r["fold"] == args.fit_fold]
    report_rows = [r for r in rows if r["fold"] == args.report_fold]
    if not fit_rows or not report_rows:
        raise SystemExit(f"{args.rows}: needs rows of folds {args.fit_fold} and {args.report_fold}")
    fitted = fit_rule(fit_rows)
    result = {"fit_fold": args.fit_fold, "report_fold": args.report_fold, "rule": fitted.__dict__,
              "fit": report(fit_rows, fitted), "report": report(report_rows, fitted)}
    print(json.dumps(result, indent=2))
    if args.figure:
        figure(result, args.figure)
    costs = result["report"]["total_cost"]
    if args.write:
        if costs["fitted"] >= costs["max"]:
            print(f"not written: the fitted rule costs {costs['fitted']} on fold {args.report_fold}, "
                  f"the max rule {costs['max']}", file=sys.stderr)
            return 1
        from agent.policy_config import update_policy_file

        update_policy_file({"clause_harm": {
            **fitted.__dict__,
            "written_by": "python -m agent.training.tune_clause_harm --write",
            "chosen_on": f"held-out fold {args.fit_fold} of finetune_judge (requests with clauses and their held-out "
                         f"forms); reported on fold {args.report_fold}: total stated cost {costs['fitted']} vs "
                         f"{costs['max']} for the highest of message and clauses",
            "rule": "with two or more clauses, p = sigmoid(message*logit(p_message) + clause*logit(max p_clause) + "
                    "intercept), never below p_message (one clause: the higher of the two); each (source, form) "
                    "weighs the same, classes half each",
        }})
        print("wrote clause_harm to agent/data/policy.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
