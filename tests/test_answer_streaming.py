"""The respond node's tokens reach callers as they are generated (real graph, real embedded server)."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessageChunk, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from agent.llm_server import EmbeddedLlamaServer
from graphs.context import Context

pytest_plugins = ["tests.support.llm_server"]


@pytest.mark.slow
def test_the_graph_message_stream_and_the_runner_yield_the_answer_token_by_token(
    embedded_llm: EmbeddedLlamaServer,
) -> None:
    from graphs.runner import EdgeAlign

    agent = EdgeAlign(Context.from_env(), checkpointer=InMemorySaver(), record=False)  # the session home: resources are shared
    config: Any = {"configurable": {"thread_id": "graph-stream"}}
    from_respond = [
        chunk.content
        for chunk, metadata in agent.graph.stream(
            {"messages": [HumanMessage("What is the capital of France?")]}, config,
            context=agent.context, stream_mode="messages",
        )
        if metadata.get("langgraph_node") == "respond" and isinstance(chunk, AIMessageChunk) and chunk.content
    ]
    assert len(from_respond) >= 3, from_respond
    reply = agent.graph.get_state(config).values["reply"]
    # The stream carries the model's raw wording; the stored reply is the plan's rendering of it
    # (echoed prompt markup and placeholders dropped), so some streamed sentence must be in it.
    assert _a_streamed_sentence_is_in(from_respond, reply), (from_respond, reply)

    events = list(agent.stream("What is the capital of Italy?", "runner-stream"))
    tokens = [payload for kind, payload in events if kind == "token"]
    kinds = [kind for kind, _ in events]
    assert len(tokens) >= 3 and kinds[-1] == "result"
    assert kinds.index("token") < kinds.index("result")
    assert _a_streamed_sentence_is_in(tokens, events[-1][1].reply), (tokens, events[-1][1].reply)


def _a_streamed_sentence_is_in(pieces: list[Any], reply: str) -> bool:
    import re

    from prompts import strip_echoed_markup

    streamed = strip_echoed_markup("".join(str(p) for p in pieces))
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", streamed) if len(s.split()) >= 3]
    return any(s in reply for s in sentences)
