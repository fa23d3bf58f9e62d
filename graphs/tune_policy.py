"""Choose the policy's thresholds on the dev split of labelled decisions, and report the test split.

    .venv/bin/python -m graphs.tune_policy [--cases tests/data/decision_cases.jsonl]

Each setting of the grid runs the real graph's decision path on every dev case; the setting with
the best dev decision accuracy (ties: the higher thresholds, i.e. fewer questions) is reported with
its test accuracy. Nothing here runs at turn time. With ``--write`` the chosen values replace
``question_value`` and ``disagreement`` in agent/data/policy.json (the Context defaults), with the
split and rule behind them; the judge's own cut points there come from agent.training.train_judge.
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from graphs.context import Context
from graphs.evaluation import EvalCase, predict, score

GRID = {
    "question_value_threshold": (0.05, 0.1, 0.15, 0.2, 0.25, 0.3),
    "disagreement_threshold": (0.3, 0.4, 0.5, 0.6),
}


def load_split(path: Path, split: str) -> list[EvalCase]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [EvalCase.model_validate(row) for row in rows if row.get("split") == split]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=str(Path(__file__).resolve().parents[1] / "tests/data/decision_cases.jsonl"))
    parser.add_argument("--write", action="store_true", help="write the chosen values into agent/data/policy.json")
    args = parser.parse_args()
    dev, test = load_split(Path(args.cases), "dev"), load_split(Path(args.cases), "test")
    base = Context.from_env()
    results: list[tuple[float, tuple[float, ...], dict[str, Any]]] = []
    for values in itertools.product(*GRID.values()):
        setting: dict[str, Any] = dict(zip(GRID, values, strict=True))
        metrics = score(predict(dev, replace(base, **setting)))
        results.append((metrics["decision"]["accuracy"], values, setting))
        print(f"{setting}: dev decision accuracy {metrics['decision']['accuracy']:.3f}", flush=True)
    best_accuracy, _, best = max(results, key=lambda r: (r[0], r[1]))
    test_metrics = score(predict(test, replace(base, **best)))
    print(json.dumps({"chosen": best, "dev_accuracy": best_accuracy, "test": test_metrics["decision"]}, indent=2))
    if args.write:
        from agent.policy_config import update_policy_file

        chosen_on = f"dev split of {Path(args.cases).name} (hand-written; only questions about the user's situation depend on it)"
        rule = "best dev decision accuracy over the grid {}, ties to the higher value (fewer questions)"
        update_policy_file(
            {
                "question_value": {
                    "value": best["question_value_threshold"],
                    "written_by": "python -m graphs.tune_policy --write",
                    "chosen_on": chosen_on,
                    "rule": rule.format(GRID["question_value_threshold"]),
                },
                "disagreement": {
                    "value": best["disagreement_threshold"],
                    "written_by": "python -m graphs.tune_policy --write",
                    "chosen_on": chosen_on,
                    "rule": rule.format(GRID["disagreement_threshold"]),
                },
            }
        )


if __name__ == "__main__":
    main()
