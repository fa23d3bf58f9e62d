"""Questions about what a vague task leaves out, from IN3's annotated agent tasks.

IN3 ("Tell Me More!", Apache-2.0) annotates each vague task with the details it is missing, how
important each is, a question asking for it and answer options. For a new vague request, the
nearest IN3 task (cosine of MiniLM embeddings) lends its most important missing detail's question
and options, when it is close enough to be about the same kind of task; otherwise the caller falls
back to the ClariQ bank or the generic question. Read from the data directory at run time, never
committed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.datasets import DatasetMissingError, dataset_dir
from agent.encoder import Encoder

# A borrowed question must come from a task of the same kind: below this cosine the nearest IN3 task
# is about something else. Chosen by reading the nearest tasks of the clarify-labelled CoCoNot
# requests (`python -m agent.training.measure_task_questions` prints the share that gets a question
# and examples on either side of the floor).
SIMILARITY_FLOOR = 0.55
DEFAULT_CACHE_DIR = Path("/tmp/edge-align-cache")


class TaskQuestionsMissingError(DatasetMissingError):
    """IN3's training file is not in the data directory."""


@dataclass(frozen=True)
class TaskQuestion:
    question: str
    options: tuple[str, ...]
    detail: str  # what is missing, in IN3's words
    task: str  # the IN3 task it was borrowed from
    similarity: float


@dataclass(frozen=True)
class _Entry:
    task: str
    question: str
    options: tuple[str, ...]
    detail: str


def _entries(path: Path) -> list[_Entry]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        details = [d for d in item.get("missing_details") or [] if d.get("inquiry")]
        if not item.get("vague") or not details:
            continue
        best = max(details, key=lambda d: int(str(d.get("importance", "0")) or 0))
        options = tuple(str(o) for o in best.get("options") or [] if str(o).strip())[:4]
        out.append(_Entry(item["task"], str(best["inquiry"]).strip(), options, str(best.get("description", ""))))
    return out


class TaskQuestionBank:
    def __init__(self, entries: Sequence[_Entry], embeddings: np.ndarray, floor: float = SIMILARITY_FLOOR) -> None:
        self.entries = list(entries)
        self.embeddings = np.asarray(embeddings, dtype=np.float32)
        self.floor = floor

    @classmethod
    def load(
        cls,
        encoder: Encoder,
        data_dir: str | os.PathLike[str] | None = None,
        cache_dir: Path = DEFAULT_CACHE_DIR,
    ) -> TaskQuestionBank:
        try:
            path = dataset_dir("in3", data_dir) / "train.jsonl"
        except DatasetMissingError as missing:
            raise TaskQuestionsMissingError(str(missing)) from None
        if not path.is_file():
            raise TaskQuestionsMissingError(f"IN3 tasks not found: looked for {path}")
        entries = _entries(path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        cache = cache_dir / f"in3-tasks-{getattr(encoder, 'name', type(encoder).__name__)}-{digest}.npy"
        if cache.is_file():
            embeddings = np.load(cache)
        else:
            embeddings = encoder.encode([e.task for e in entries])
            cache_dir.mkdir(parents=True, exist_ok=True)
            np.save(cache, embeddings)
        return cls(entries, embeddings)

    def nearest(self, embedding: np.ndarray) -> TaskQuestion | None:
        """The question of the closest vague task, or None when no task is close enough."""
        if not len(self.entries):
            return None
        sims = self.embeddings @ np.asarray(embedding, dtype=np.float32).reshape(-1)
        best = int(np.argmax(sims))
        if float(sims[best]) < self.floor:
            return None
        e = self.entries[best]
        return TaskQuestion(e.question, e.options, e.detail, e.task, float(sims[best]))
