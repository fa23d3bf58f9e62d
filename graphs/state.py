"""The typed state of a conversation thread. Everything in it is JSON-friendly, so it checkpoints as is."""

from __future__ import annotations

import operator
from typing import Annotated, Any, NotRequired, TypedDict

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages


def merge_dicts(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    """Reducer: later keys win, earlier ones stay (timings, known context)."""
    return {**(left or {}), **(right or {})}


class InputState(TypedDict):
    """What a caller sends: the new user message (and optionally who the user is)."""

    messages: Annotated[list[AnyMessage], add_messages]
    user_id: NotRequired[str | None]


class Clarification(TypedDict):
    about: str
    question: str
    options: list[str]
    answer: str
    # The hard constraints whose demand for context raised the question (empty: asked for another reason).
    for_constraints: NotRequired[list[str]]


class State(InputState):
    """The whole thread. Per-request fields are reset when a new request begins."""

    request: NotRequired[str]
    clarifications: NotRequired[list[Clarification]]
    known_context: NotRequired[Annotated[dict[str, str], merge_dicts]]  # survives across requests
    asked_about: NotRequired[Annotated[list[str], operator.add]]  # slots ever asked in this thread
    answer_now: NotRequired[bool]
    analysis_text: NotRequired[str]
    embedding: NotRequired[list[float]]  # of the request read with this turn's answers
    clause_embeddings: NotRequired[list[list[float]]]  # of the request's clauses (none for one clause)
    judge: NotRequired[dict[str, Any]]  # the judge's verdict on this pass (agent.judge.Verdict)
    values: NotRequired[dict[str, float]]
    active_values: NotRequired[list[str]]
    conflict: NotRequired[dict[str, Any]]
    clarification: NotRequired[dict[str, Any]]  # probability, ClariQ-style need level, signals
    domain: NotRequired[dict[str, Any]]
    norms: NotRequired[list[dict[str, Any]]]
    normative: NotRequired[dict[str, Any]]
    constraints: NotRequired[dict[str, Any]]
    uncertainty: NotRequired[dict[str, float]]
    decision: NotRequired[str]
    policy: NotRequired[dict[str, Any]]
    pending_question: NotRequired[dict[str, Any] | None]
    reply: NotRequired[str]
    reply_plan: NotRequired[dict[str, Any] | None]  # what the answer says (agent.reply_plan), with its shown reason
    llm_error: NotRequired[str | None]
    timings_ms: NotRequired[Annotated[dict[str, float], merge_dicts]]
