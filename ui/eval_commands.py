"""`edge-align eval`: score the agent's decisions on labelled cases, from a file or a named dataset."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "eval",
        help="score decisions on labelled cases",
        description="Run the decision path on labelled cases and print metrics per task. "
        "Give a case file (--file CASES.jsonl) or a dataset adapter: valueeval, conflictscope, clariq.",
    )
    parser.add_argument("dataset", nargs="?", help="valueeval | conflictscope | clariq")
    parser.add_argument(
        "--file", help="JSONL cases: {id, text, labels: {values|conflict|clarify|clarification_need|decision}}"
    )
    parser.add_argument("--split", help="dataset split (valueeval: training|validation; clariq: train|dev)")
    parser.add_argument("--limit", type=int, help="only the first N cases")
    parser.add_argument("--json", action="store_true", help="print {task: {metric: value}}")
    parser.add_argument(
        "--out",
        help="PREDICTIONS.jsonl (charts are written next to it) or a directory (predictions, charts and report.md)",
    )
    parser.set_defaults(handler=run)

    simulate = sub.add_parser(
        "simulate",
        help="play simulated users from a dataset against the agent",
        description="clariq: each (topic, facet) of a ClariQ split is a conversation; when the agent asks, the "
        "simulated user answers with ClariQ's recorded answer to the most similar recorded question.",
    )
    simulate.add_argument("dataset", choices=["clariq"])
    simulate.add_argument("--split", default="dev", choices=["train", "dev"])
    simulate.add_argument("--limit", type=int, help="only the first N conversations")
    simulate.add_argument("--json", action="store_true")
    simulate.set_defaults(handler=run_simulation)


def run_simulation(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from graphs.context import Context
    from graphs.simulation import clariq_conversations, simulate

    conversations = clariq_conversations(args.split)
    if args.limit:
        conversations = conversations[: args.limit]
    with tqdm(total=len(conversations), desc="simulating ClariQ users", unit="conv", file=sys.stderr) as bar:
        report = simulate(conversations, Context.from_env(), progress=bar.update)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        relevance = report["question_relevance"]
        print(
            f"{report['conversations']} conversations: {report['reached_answer']:.3f} reached an answer, "
            f"{report['mean_questions']:.2f} questions on average; question relevance "
            f"{relevance['mean_best_similarity']} (mean best similarity to a recorded question)"
        )
    return 0


def _cases(args: argparse.Namespace) -> tuple[str, list[Any]]:
    from graphs.evaluation import adapter_cases, read_cases
    from ui.cli import UsageError

    if bool(args.file) == bool(args.dataset):
        raise UsageError("give either --file CASES.jsonl or a dataset name (valueeval, conflictscope, clariq)")
    if args.file:
        cases = read_cases(Path(args.file))
        return Path(args.file).stem, cases[: args.limit] if args.limit else cases
    return args.dataset, adapter_cases(args.dataset, args.split, limit=args.limit)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from graphs.context import Context
    from graphs.evaluation import predict, score
    from graphs.resources import get_resources

    name, cases = _cases(args)
    context = Context.from_env()
    get_resources(context.home)
    with tqdm(total=len(cases), desc=f"evaluating {name}", unit="case", file=sys.stderr) as bar:
        predictions = predict(cases, context, progress=bar.update)
    metrics = score(predictions)
    if name == "valueeval":
        metrics["values_zero_shot"] = _zero_shot_baseline(cases, context.home)
    if args.out:
        _write_outputs(Path(args.out), name, predictions, metrics)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        for task, values in metrics.items():
            flat = ", ".join(
                f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                for k, v in values.items()
                if not isinstance(v, dict | list)
            )
            print(f"{task}: {flat}")
    return 0


def _zero_shot_baseline(cases: list[Any], home: str | None) -> dict[str, Any]:
    """The Foundation's zero-shot scorer on the same premises, for comparison with the trained model."""
    import numpy as np

    from agent.metrics import multilabel_f1
    from agent.value_model import active_values
    from agent.values import VALUE_NAMES
    from graphs.resources import get_resources

    res = get_resources(home)
    scorer = res.value_scorers["zero-shot"]
    embeddings = res.encoder.encode([c.text for c in cases])
    probs = scorer.predict_proba(embeddings)
    chosen = np.array([[v in active_values(row, scorer) for v in VALUE_NAMES] for row in probs], dtype=int)
    truth = np.array([[v in (c.labels.values or []) for v in VALUE_NAMES] for c in cases], dtype=int)
    return multilabel_f1(truth, chosen, VALUE_NAMES)


def _write_outputs(out: Path, name: str, predictions: list[Any], metrics: dict[str, Any]) -> None:
    from agent.metrics import reliability
    from graphs.evaluation import write_predictions
    from ui.reports import confusion_png, per_value_f1_png, reliability_png, write_report

    if out.suffix == ".jsonl":
        write_predictions(predictions, out)
        if "values" in metrics:
            per_value_f1_png(metrics["values"]["f1"], out.with_suffix(".value_f1.png"))
        return
    out.mkdir(parents=True, exist_ok=True)
    write_predictions(predictions, out / "predictions.jsonl")
    figures: dict[str, Path] = {}
    if "values" in metrics:
        figures["F1 per value"] = per_value_f1_png(metrics["values"]["f1"], out / "value_f1.png")
    for task in ("decision", "clarification_need"):
        if task in metrics:
            figures[f"Confusion: {task}"] = confusion_png(
                metrics[task]["confusion"], metrics[task]["labels"], out / f"confusion_{task}.png", task
            )
    for task, label_of, score_of in (
        ("clarify", lambda p: p.case.labels.clarify, lambda p: p.result.uncertainty.get("clarification_need", 0.0)),
        ("conflict", lambda p: p.case.labels.conflict, lambda p: p.result.conflict.get("score", 0.0)),
    ):
        labelled = [p for p in predictions if label_of(p) is not None]
        if labelled and len({bool(label_of(p)) for p in labelled}) == 2:
            calib = reliability([bool(label_of(p)) for p in labelled], [float(score_of(p)) for p in labelled])
            metrics[task]["ece"] = calib["ece"]
            figures[f"Reliability: {task}"] = reliability_png(
                calib["bins"], calib["ece"], out / f"reliability_{task}.png", task
            )
    write_report(out, f"Evaluation: {name}", metrics, figures, _worst(predictions))


def _worst(predictions: list[Any], count: int = 20) -> list[dict[str, Any]]:
    """The cases the agent got most wrong: wrong decisions and conflicts first, then value misses."""

    def miss(p: Any) -> float:
        labels = p.case.labels
        wrong = 0.0
        if labels.decision is not None and labels.decision != p.result.decision:
            wrong += 2
        if labels.conflict is not None:
            wrong += abs(float(labels.conflict) - float(p.result.conflict.get("score", 0.0)))
        if labels.clarify is not None:
            wrong += abs(float(labels.clarify) - float(p.result.uncertainty.get("clarification_need", 0.0)))
        if labels.values is not None:
            wrong += len(set(labels.values) ^ set(p.result.active_values)) / 5
        return wrong

    ranked = sorted(predictions, key=miss, reverse=True)[:count]
    return [p.to_json() for p in ranked if miss(p) > 0]
