"""Choose the policy's thresholds on the dev split of labelled decisions, and report the test split.

    .venv/bin/python -m graphs.tune_policy [--cases tests/data/decision_cases.jsonl]

Each setting of the grid runs the real graph's decision path on every dev case; the setting with
the best dev decision accuracy (ties: the higher thresholds, i.e. fewer questions) is reported with
its test accuracy. Nothing here runs at turn time: the chosen values are the Context defaults.
"""

from __future__ import annotations

import argparse
import itertools
import json
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
    args = parser.parse_args()
    dev, test = load_split(Path(args.cases), "dev"), load_split(Path(args.cases), "test")
    base = Context.from_env()
    results: list[tuple[float, tuple[float, ...], dict[str, Any]]] = []
    for values in itertools.product(*GRID.values()):
        setting = dict(zip(GRID, values, strict=True))
        metrics = score(predict(dev, Context.validated(**{**vars(base), **setting})))
        results.append((metrics["decision"]["accuracy"], values, setting))
        print(f"{setting}: dev decision accuracy {metrics['decision']['accuracy']:.3f}", flush=True)
    best_accuracy, _, best = max(results, key=lambda r: (r[0], r[1]))
    test_metrics = score(predict(test, Context.validated(**{**vars(base), **best})))
    print(json.dumps({"chosen": best, "dev_accuracy": best_accuracy, "test": test_metrics["decision"]}, indent=2))


if __name__ == "__main__":
    main()
