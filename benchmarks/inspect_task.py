"""An Inspect task over Edge Align's labelled case files, with `edge-align serve` as the model.

Each line of a case file (the ``edge-align eval --file`` format: ``{"id", "text", "labels":
{"decision": "answer" | "clarify" | "refuse", ...}}``) with a decision label becomes one sample; the
model is the endpoint, reached through Inspect's own OpenAI-compatible provider; the scorer reads the
decision the endpoint reports in its ``edge_align`` extension field, which Inspect keeps in the
logged model call. Evaluators get Inspect's logs and viewer (``inspect view``).

The one command (it starts the server, and Inspect's own virtual environment if missing)::

    .venv/bin/python benchmarks/inspect_eval.py --file tests/data/decision_cases.jsonl

Against a server that is already running (EDGE_ALIGN_API_KEY is read by both sides)::

    EDGE_ALIGN_BASE_URL=http://127.0.0.1:8000/v1 EDGE_ALIGN_API_KEY=... \\
      inspect eval benchmarks/inspect_task.py --model openai-api/edge-align/edge-align -T file=cases.jsonl

This file runs inside Inspect's environment, not the project's: it imports nothing from Edge Align.
"""

from __future__ import annotations

from typing import Any

from inspect_ai import Task, task
from inspect_ai.dataset import Sample, json_dataset
from inspect_ai.log import transcript
from inspect_ai.scorer import CORRECT, INCORRECT, Score, Target, accuracy, scorer, stderr
from inspect_ai.solver import TaskState, generate

DECISIONS = ("answer", "clarify", "refuse")


def case_to_sample(record: dict[str, Any]) -> list[Sample]:
    """A case with a decision label as a sample; other cases have nothing to score here."""
    decision = (record.get("labels") or {}).get("decision")
    if decision not in DECISIONS:
        return []
    return [
        Sample(
            id=str(record["id"]),
            input=str(record["text"]),
            target=decision,
            metadata={"split": record.get("split"), "labels": record.get("labels")},
        )
    ]


def reported_decision() -> dict[str, Any] | None:
    """The ``edge_align`` field of the newest model response in this sample's transcript."""
    for event in reversed(transcript().events):
        call = getattr(event, "call", None)
        if getattr(event, "event", None) == "model" and call is not None and isinstance(call.response, dict):
            extension = call.response.get("edge_align")
            if isinstance(extension, dict):
                return extension
    return None


@scorer(metrics=[accuracy(), stderr()])
def decision_matches() -> Any:
    async def score(state: TaskState, target: Target) -> Score:
        extension = reported_decision()
        if extension is None:
            return Score(value=INCORRECT, answer=None, explanation="the response carried no edge_align field")
        decision = extension.get("decision")
        return Score(
            value=CORRECT if decision == target.text else INCORRECT,
            answer=decision,
            explanation=f"expected {target.text}, the endpoint decided {decision}",
            metadata={"thread_id": extension.get("thread_id"), "question": extension.get("question")},
        )

    return score


@task
def edge_align_decisions(file: str = "tests/data/decision_cases.jsonl") -> Task:
    return Task(
        dataset=json_dataset(file, sample_fields=case_to_sample),
        solver=generate(),
        scorer=decision_matches(),
    )
