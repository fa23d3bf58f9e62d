"""Score the agent's decisions on labelled cases by running the real graph's decision path.

A case is one JSON line: {"id": str, "text": str, "labels": {...}} where labels may hold
"values" (category names), "conflict" (bool), "clarify" (bool), "clarification_need" (1-4) and
"decision" ("answer" | "clarify" | "refuse"). Unknown label keys are ignored. The text is analysed
exactly as a user message; no reply text is generated, so thousands of cases take minutes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent.metrics import binary_metrics, multiclass_metrics, multilabel_f1
from agent.values import VALUE_NAMES
from graphs.context import Context
from graphs.runner import EdgeAlign, TurnResult

MAX_CASE_FILE_BYTES = 200 * 1024 * 1024


class CaseFileError(ValueError):
    """A case file that cannot be read; the message names the file and the line."""


class CaseLabels(BaseModel):
    model_config = ConfigDict(extra="ignore")

    values: list[str] | None = None
    conflict: bool | None = None
    clarify: bool | None = None
    clarification_need: int | None = Field(default=None, ge=1, le=4)
    decision: str | None = None

    @field_validator("values")
    @classmethod
    def known_values(cls, names: list[str] | None) -> list[str] | None:
        unknown = sorted(set(names or []) - set(VALUE_NAMES))
        if unknown:
            raise ValueError(f"unknown value categories {unknown}")
        return names

    @field_validator("decision")
    @classmethod
    def known_decision(cls, decision: str | None) -> str | None:
        if decision is not None and decision not in {"answer", "clarify", "refuse"}:
            raise ValueError("decision must be answer, clarify or refuse")
        return decision


class EvalCase(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    text: str = Field(min_length=1)
    labels: CaseLabels = Field(default_factory=CaseLabels)


def read_cases(path: Path) -> list[EvalCase]:
    """Every case of a JSONL file, or a CaseFileError listing the bad lines (file:line: problem)."""
    if not path.is_file():
        raise CaseFileError(f"{path}: no such file")
    if path.stat().st_size > MAX_CASE_FILE_BYTES:
        raise CaseFileError(f"{path}: larger than {MAX_CASE_FILE_BYTES // (1024 * 1024)} MB")
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError as problem:
        raise CaseFileError(f"{path}: not valid UTF-8 (byte {problem.start})") from None
    cases, errors = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            cases.append(EvalCase.model_validate_json(line))
        except ValidationError as problem:
            first = problem.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "line"
            errors.append(f"{path}:{number}: {where}: {first['msg']}")
        except RecursionError:
            errors.append(f"{path}:{number}: JSON nested too deeply")
        if len(errors) >= 20:
            break
    if errors:
        raise CaseFileError("\n".join(errors))
    if not cases:
        raise CaseFileError(f"{path}: no cases")
    return cases


@dataclass
class Prediction:
    case: EvalCase
    result: TurnResult

    def to_json(self) -> dict[str, Any]:
        r = self.result
        return {
            "id": self.case.id,
            "text": self.case.text,
            "labels": self.case.labels.model_dump(exclude_none=True),
            "decision": r.decision,
            "active_values": r.active_values,
            "values": r.values,
            "conflict": {k: r.conflict.get(k) for k in ("score", "detected", "pairs")},
            "uncertainty": r.uncertainty,
            "need_level": r.clarification.get("need_level"),
            "reason": r.policy.get("reason"),
            "norms": [n["id"] for n in r.norms],
        }


def predict(
    cases: Iterable[EvalCase],
    context: Context | None = None,
    progress: Callable[[int], object] | None = None,
) -> list[Prediction]:
    """The decision of the real graph for each case, each on its own fresh thread, no text generated."""
    ctx = replace(context or Context.from_env(), generate_text=False)
    predictions = []
    agent = EdgeAlign(ctx, checkpointer=InMemorySaver())
    for index, case in enumerate(cases):
        if index and index % 500 == 0:  # keep memory flat on long runs
            agent = EdgeAlign(ctx, checkpointer=InMemorySaver())
        predictions.append(Prediction(case, agent.ask(case.text, thread_id=f"eval-{index}")))
        if progress:
            progress(1)
    return predictions


def score(predictions: list[Prediction]) -> dict[str, Any]:
    """Metrics for every task some case is labelled for; the others are absent."""
    report: dict[str, Any] = {}
    valued = [p for p in predictions if p.case.labels.values is not None]
    if valued:
        truth = np.array([[name in (p.case.labels.values or []) for name in VALUE_NAMES] for p in valued], dtype=int)
        chosen = np.array([[name in p.result.active_values for name in VALUE_NAMES] for p in valued], dtype=int)
        report["values"] = multilabel_f1(truth, chosen, VALUE_NAMES)
    conflicted = [p for p in predictions if p.case.labels.conflict is not None]
    if conflicted:
        report["conflict"] = binary_metrics(
            [bool(p.case.labels.conflict) for p in conflicted],
            [bool(p.result.conflict.get("detected")) for p in conflicted],
            [float(p.result.conflict.get("score", 0.0)) for p in conflicted],
        )
    clarified = [p for p in predictions if p.case.labels.clarify is not None]
    if clarified:
        report["clarify"] = binary_metrics(
            [bool(p.case.labels.clarify) for p in clarified],
            [p.result.decision == "clarify" for p in clarified],
            [float(p.result.uncertainty.get("clarification_need", 0.0)) for p in clarified],
        )
    needed = [p for p in predictions if p.case.labels.clarification_need is not None]
    if needed:
        report["clarification_need"] = multiclass_metrics(
            [p.case.labels.clarification_need for p in needed],
            [int(p.result.clarification.get("need_level") or 1) for p in needed],
            [1, 2, 3, 4],
        )
    decided = [p for p in predictions if p.case.labels.decision is not None]
    if decided:
        report["decision"] = multiclass_metrics(
            [p.case.labels.decision for p in decided],
            [p.result.decision for p in decided],
            ["answer", "clarify", "refuse"],
        )
    return report


def write_predictions(predictions: list[Prediction], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for prediction in predictions:
            handle.write(json.dumps(prediction.to_json(), ensure_ascii=False) + "\n")


ADAPTERS = ("valueeval", "conflictscope", "clariq")


def adapter_cases(
    name: str, split: str | None = None, data_dir: str | None = None, limit: int | None = None
) -> list[EvalCase]:
    """Labelled cases built from a dataset in the data directory (read in place, never copied)."""
    import csv

    from agent.datasets import dataset_dir

    cases: list[EvalCase] = []
    if name == "valueeval":
        folder = dataset_dir("touche23_valueeval", data_dir)
        part = split or "validation"
        if part not in ("training", "validation"):
            raise CaseFileError("valueeval splits: training, validation")
        with (folder / f"arguments-{part}.tsv").open(encoding="utf-8") as handle:
            premises = {row["Argument ID"]: row["Premise"] for row in csv.DictReader(handle, delimiter="\t")}
        with (folder / f"labels-{part}.tsv").open(encoding="utf-8") as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                values = [v for v in VALUE_NAMES if row[v] == "1"]
                cases.append(
                    EvalCase(id=row["Argument ID"], text=premises[row["Argument ID"]], labels=CaseLabels(values=values))
                )
    elif name == "conflictscope":
        folder = dataset_dir("conflictscope", data_dir)
        sets = [split] if split else ["HHH", "modelspec", "personalprotective"]
        for value_set in sets:
            prompts = json.loads((folder / f"{value_set}_prompts.json").read_text(encoding="utf-8"))
            for scenario, text in prompts.items():
                cases.append(EvalCase(id=f"{value_set}:{scenario}", text=text, labels=CaseLabels(conflict=True)))
    elif name == "clariq":
        folder = dataset_dir("clariq", data_dir)
        part = split or "dev"
        if part not in ("train", "dev"):
            raise CaseFileError("clariq splits: train, dev")
        seen: set[str] = set()
        with (folder / f"{part}.tsv").open(encoding="utf-8") as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                if row["topic_id"] in seen:
                    continue
                seen.add(row["topic_id"])
                need = int(row["clarification_need"])
                cases.append(
                    EvalCase(
                        id=f"clariq-{row['topic_id']}",
                        text=row["initial_request"],
                        labels=CaseLabels(clarification_need=need, clarify=need >= CLARIQ_CLARIFY_FROM),
                    )
                )
    else:
        raise CaseFileError(f"unknown dataset adapter {name!r}; choose from {', '.join(ADAPTERS)}")
    return cases[:limit] if limit else cases


# ClariQ's need levels: 1 = no clarification needed ... 4 = clarification necessary. Levels 3 and 4
# are counted as "should ask" for the binary clarify task (the levels of ClariQ's own guidelines
# where the request cannot be served well without one).
CLARIQ_CLARIFY_FROM = 3
