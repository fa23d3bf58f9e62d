"""With a base URL and no model name, requests name the model the endpoint lists first (a real server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from agent.embedded_models import selected_model
from agent.llm_server import EmbeddedLlamaServer
from graphs.context import Context
from tests.support.fault_proxy import FaultMode, FaultProxy


def test_an_unset_model_is_left_for_the_endpoint_to_name() -> None:
    context = Context.from_env({"EDGE_ALIGN_LLM_BASE_URL": "http://127.0.0.1:9/v1"})
    assert context.llm_model == ""
    assert context.fingerprint()["llm_model"] == "(the endpoint's first listed model)"
    named = Context.from_env({"EDGE_ALIGN_LLM_BASE_URL": "http://127.0.0.1:9/v1", "EDGE_ALIGN_LLM_MODEL": "m"})
    assert named.llm_model == "m"


@pytest.mark.slow
def test_a_turn_names_the_endpoints_first_listed_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from graphs.runner import EdgeAlign

    # A server whose model id is neither the old default's nor any packaged alias, so the request
    # can only name it by asking the endpoint.
    model = selected_model().model_copy(update={"alias": "listed-by-the-endpoint"})
    with EmbeddedLlamaServer(tmp_path / "logs", model=model, progress=False) as server, FaultProxy(server.base_url) as proxy:
        proxy.set_mode(FaultMode.PASS)
        monkeypatch.setenv("EDGE_ALIGN_LLM_BASE_URL", proxy.base_url)
        monkeypatch.delenv("EDGE_ALIGN_LLM_MODEL", raising=False)
        agent = EdgeAlign(Context.from_env(), checkpointer=InMemorySaver(), record=False)  # the session home: resources are shared
        result = agent.ask("What is the capital of France?")
        assert result.decision == "answer" and result.llm_error is None and result.reply
        asked = [(method, path) for method, path, _ in proxy.requests]
        assert ("GET", "/v1/models") in asked, asked
        completions = [json.loads(body) for _, path, body in proxy.requests if path.endswith("/chat/completions")]
        assert completions, asked
        # The name the server reports, not the embedded default's (the bug: "smollm2-135m-instruct").
        assert {c["model"] for c in completions} == {"listed-by-the-endpoint"}
