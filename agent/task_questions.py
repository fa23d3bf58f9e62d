"""What to ask about a vague task: the question IN3 gives for the nearest vague task's most important gap.

IN3 (Apache-2.0, read in place from the data directory, never committed) lists 1,012 vague agent tasks
("Recommend a good laptop", "Find a healthy recipe for tonight's dinner"), each with the details it
leaves out, their importance and the question to ask with its options ("What will you primarily use
the laptop for?" Gaming / Business / General use). A request close to one of those tasks asks that
task's most important question, options included; a request that is close to none (below the
similarity floor in agent/data/policy.json, chosen by ``python -m agent.training.tune_task_questions``)
is left to ClariQ's question bank or the generic question.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agent.datasets import DatasetMissingError, dataset_dir
from agent.embedding_cache import FixedTextCache
from agent.encoder import EMBEDDING_DIM, Encoder

IN3_FILE = "cases.jsonl"
NEIGHBOURS = 5  # tasks tried, nearest first, for one whose question names nothing the request does not
_NAME = re.compile(r"(?<![.?!]\s)(?<!^)\b[A-Z][a-zA-Z]+")
# "your child", "your new car": the one or two words after "your" (small words are no one's situation).
_YOUR = re.compile(r"\byour\s+([a-z]+)(?:\s+([a-z]+))?", re.IGNORECASE)
_SMALL = frozenset(["a", "about", "an", "and", "are", "at", "be", "by", "for", "from", "in", "into", "is", "of", "on", "or", "own", "the",
                    "to", "with"])


class TaskQuestionsMissingError(DatasetMissingError):
    """IN3 is not in the data directory."""


@dataclass(frozen=True)
class TaskQuestion:
    task: str  # the IN3 task it was written for
    question: str
    options: tuple[str, ...]
    similarity: float  # cosine between the request and that task


@dataclass(frozen=True)
class VagueTask:
    text: str
    question: str
    options: tuple[str, ...]
    questions: tuple[str, ...]  # every missing detail's question, most important first (for measuring)


def load_vague_tasks(data_dir: str | os.PathLike[str] | None = None) -> list[VagueTask]:
    """IN3's vague tasks that list their missing details, each with its most important question."""
    try:
        path = dataset_dir("in3", data_dir) / IN3_FILE
    except DatasetMissingError as exc:
        raise TaskQuestionsMissingError(f"IN3 task questions unavailable: {exc}") from exc
    tasks = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        case = json.loads(line)
        details = case.get("meta", {}).get("missing_details") or []
        details = [d for d in details if str(d.get("inquiry", "")).strip()]
        if not case.get("labels", {}).get("clarify") or not details:
            continue
        # Stable sort: among equally important details IN3's own order (its first is the main gap) wins.
        details.sort(key=lambda d: -int(d.get("importance") or 0))
        first = details[0]
        tasks.append(VagueTask(
            text=case["text"].strip(),
            question=str(first["inquiry"]).strip(),
            options=tuple(o.strip() for o in first.get("options") or [] if str(o).strip()),
            questions=tuple(str(d["inquiry"]).strip() for d in details),
        ))
    return tasks


def _words(text: str) -> set[str]:
    return {w.lower() for w in re.findall(r"[A-Za-z]+", text)}


def presupposed(task: VagueTask) -> set[str]:
    """What the task's question takes from the task's own situation: a word after "your" that the task
    itself says. "How old is your child?" was written for "My child is curious about the solar system";
    asked of "Tell me about the sun." it invents a child. "What is your budget?" takes nothing: the task
    never mentions a budget, so it asks what any such request leaves out."""
    own = _words(task.text)
    after_your = {w.lower() for pair in _YOUR.findall(task.question) for w in pair if w}
    return (after_your - _SMALL) & own


class TaskQuestions:
    """Nearest-task lookup over IN3's vague tasks (embeddings computed once per installation)."""

    def __init__(self, tasks: Sequence[VagueTask], embeddings: np.ndarray) -> None:
        if embeddings.shape != (len(tasks), EMBEDDING_DIM):
            raise ValueError(f"expected ({len(tasks)}, {EMBEDDING_DIM}) task embeddings, got {embeddings.shape}")
        self.tasks = list(tasks)
        self.embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)

    @classmethod
    def load(
        cls,
        data_dir: str | os.PathLike[str] | None = None,
        encoder: Encoder | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> TaskQuestions:
        tasks = load_vague_tasks(data_dir)
        return cls(tasks, FixedTextCache(encoder, cache_dir).encode([t.text for t in tasks], label="embedding IN3's tasks"))

    def nearest(self, embedding: np.ndarray, request: str, exclude: int | None = None) -> TaskQuestion | None:
        """The question of the closest task whose question names nothing ``request`` does not.

        A task's question can name its own subject ("How long do you plan to stay in Paris?"), which
        asked of "Plan a trip to Rome" would ask about the wrong city: such a task is passed over for
        the next nearest (of NEIGHBOURS). ``exclude``: a task index to leave out (for measuring).
        """
        similarities = self.embeddings @ np.asarray(embedding, dtype=np.float32).reshape(-1)
        if exclude is not None:
            similarities[exclude] = -np.inf
        said = _words(request)
        for index in np.argsort(-similarities)[:NEIGHBOURS]:
            task = self.tasks[int(index)]
            named = {w.lower() for w in _NAME.findall(task.question)}
            if named <= said and not (presupposed(task) - said):
                return TaskQuestion(task.text, task.question, task.options, float(similarities[index]))
        return None

    def question_for(self, embedding: np.ndarray, request: str, floor: float) -> TaskQuestion | None:
        """The nearest fitting task's question when that task is at least ``floor`` close, else None."""
        found = self.nearest(embedding, request)
        return found if found is not None and found.similarity >= floor else None
