"""The LangGraph turn graph: typed state and context, nodes, wiring and a runner for applications.

``from graphs import builder, graph`` gives the uncompiled builder and the compiled graph.
"""

from graphs.context import Context
from graphs.graph import build_graph, builder, compile_graph, graph
from graphs.state import InputState, State

__all__ = ["Context", "InputState", "State", "build_graph", "builder", "compile_graph", "graph"]
