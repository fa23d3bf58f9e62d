"""The turn graph: detect value conflict -> retrieve norms -> check constraints -> clarify or answer."""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph

from graphs.context import Context
from graphs.nodes import (
    begin_turn,
    check_constraints,
    clarify,
    decide_response,
    detect_conflict,
    refuse,
    respond,
    retrieve_norms,
    route_decision,
)
from graphs.state import InputState, State


def build_graph() -> StateGraph[State, Context, InputState, State]:
    """The uncompiled graph, for callers who compile it with their own checkpointer or nest it."""
    builder = StateGraph(State, input_schema=InputState, context_schema=Context)
    builder.add_node("begin_turn", begin_turn)
    builder.add_node("detect_conflict", detect_conflict)
    builder.add_node("retrieve_norms", retrieve_norms)
    builder.add_node("check_constraints", check_constraints)
    builder.add_node("decide", decide_response)
    builder.add_node("clarify", clarify)
    builder.add_node("respond", respond)
    builder.add_node("refuse", refuse)
    builder.add_edge(START, "begin_turn")
    builder.add_edge("begin_turn", "detect_conflict")
    builder.add_edge("detect_conflict", "retrieve_norms")
    builder.add_edge("retrieve_norms", "check_constraints")
    builder.add_edge("check_constraints", "decide")
    builder.add_conditional_edges(
        "decide", route_decision, {"clarify": "clarify", "respond": "respond", "refuse": "refuse"}
    )
    builder.add_edge("clarify", "detect_conflict")
    builder.add_edge("respond", END)
    builder.add_edge("refuse", END)
    return builder


builder = build_graph()
# Compiled without a checkpointer: `langgraph dev` and LangGraph Platform supply their own;
# applications compile `builder` with theirs (see graphs.runner for the SQLite default).
graph = builder.compile()
graph.name = "edge-align"


def compile_graph(checkpointer: Any = None, store: Any = None) -> Any:
    return builder.compile(checkpointer=checkpointer, store=store, name="edge-align")
