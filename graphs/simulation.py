"""Simulated users: play ClariQ's multi-facet requests through the real graph.

Each (topic, facet) pair of a ClariQ split is one conversation: the simulated user opens with the
topic's request and wants the facet. When the agent asks, the user gives ClariQ's recorded answer
to the recorded question (for that facet) most similar to the agent's question. The relevance of a
question is that similarity: how close it is to a question a person actually asked for this facet.
"""

from __future__ import annotations

import csv
import statistics
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from langgraph.checkpoint.memory import InMemorySaver

from agent.datasets import dataset_dir
from graphs.context import Context
from graphs.resources import get_resources
from graphs.runner import EdgeAlign

MAX_TURNS = 5


@dataclass
class FacetConversation:
    topic_id: str
    facet_id: str
    request: str
    questions: list[str]
    answers: list[str]


def clariq_conversations(split: str = "dev", data_dir: str | None = None) -> list[FacetConversation]:
    folder = dataset_dir("clariq", data_dir)
    if split not in ("train", "dev"):
        raise ValueError("clariq splits: train, dev")
    grouped: dict[tuple[str, str], FacetConversation] = {}
    with (folder / f"{split}.tsv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            if not row.get("question") or not row.get("answer"):
                continue
            key = (row["topic_id"], row["facet_id"])
            conversation = grouped.setdefault(
                key, FacetConversation(row["topic_id"], row["facet_id"], row["initial_request"], [], [])
            )
            conversation.questions.append(row["question"])
            conversation.answers.append(row["answer"])
    return list(grouped.values())


def simulate(
    conversations: list[FacetConversation],
    context: Context | None = None,
    progress: Callable[[int], object] | None = None,
) -> dict[str, Any]:
    ctx = replace(context or Context.from_env(), generate_text=False)
    encoder = get_resources(ctx.home).encoder
    agent = EdgeAlign(ctx, checkpointer=InMemorySaver(), record=False)
    reached, asked_counts, relevances = 0, [], []
    for index, conversation in enumerate(conversations):
        recorded = encoder.encode(conversation.questions)
        thread = f"sim-{index}"
        result = agent.ask(conversation.request, thread_id=thread)
        asked = 0
        while result.decision == "clarify" and result.question and asked < MAX_TURNS:
            asked += 1
            similarity = recorded @ encoder.encode([result.question["question"]])[0]
            best = int(np.argmax(similarity))
            relevances.append(float(similarity[best]))
            result = agent.ask(conversation.answers[best], thread_id=thread)
        reached += result.decision == "answer"
        asked_counts.append(asked)
        if progress:
            progress(1)
    n = len(conversations)
    return {
        "conversations": n,
        "reached_answer": reached / n if n else None,
        "mean_questions": statistics.mean(asked_counts) if asked_counts else None,
        "asked_at_least_once": sum(1 for a in asked_counts if a) / n if n else None,
        "question_relevance": {
            "mean_best_similarity": statistics.mean(relevances) if relevances else None,
            "share_at_least_0.7": sum(1 for r in relevances if r >= 0.7) / len(relevances) if relevances else None,
            "questions": len(relevances),
        },
    }
