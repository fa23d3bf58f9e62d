"""Endpoint faults through the whole turn graph: a fault proxy in front of the real embedded llama.cpp server.

For each fault the turn still ends: the reply says the wording failed (``llm_error`` names why), the
decision stands, the thread is not left half-way, and the next turn on the same thread succeeds once
the fault is gone. A passing 429 is absorbed by a retry; a refused connection fails in bounded time.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from graphs.context import Context
from graphs.runner import EdgeAlign, TurnResult
from prompts import load_prompt_data
from tests.support.fault_proxy import FaultMode, FaultProxy
from tests.support.reports import reliability_report

pytest_plugins = ["tests.support.llm_server"]
pytestmark = pytest.mark.slow

TIMEOUT_S = 5.0
# The recovery turn waits for real decoding on a shared 2-core machine, which can take longer than
# the deliberately short fault timeout.
RECOVERY_TIMEOUT_S = "120"
MAX_RETRIES = 1
REQUEST = "What is a good way to start learning to cook?"
FOLLOW_UP = "And what should I cook first?"
FAILED_PREFIX = load_prompt_data("messages.yaml")["llm_failed"].split("$")[0]  # "I could not write ... ("

_results: list[dict[str, Any]] = []


@pytest.fixture(autouse=True)
def short_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_ALIGN_LLM_TIMEOUT", str(TIMEOUT_S))
    monkeypatch.setenv("EDGE_ALIGN_LLM_MAX_RETRIES", str(MAX_RETRIES))
    monkeypatch.setenv("EDGE_ALIGN_LLM_MAX_TOKENS", "24")


write_report = reliability_report(
    "endpoint_faults",
    what="LLM endpoint faults injected through a proxy in front of the embedded llama.cpp server, "
    "through the full turn graph",
    command=".venv/bin/python -m pytest tests/test_endpoint_faults.py -m slow",
    figures=lambda: {
        "timeout_s": TIMEOUT_S,
        "max_retries": MAX_RETRIES,
        "faults": _results,
        "injected": len(_results),
        "survived": sum(1 for r in _results if r["survived"]),
    },
)


def agent_through(proxy: FaultProxy) -> EdgeAlign:
    # Budget 0: every turn goes to the answer node, which is the one that calls the model. The model is
    # named, so the faults hit the chat call itself, not the one-off question of which model it serves.
    from agent.embedded_models import selected_model

    return EdgeAlign(Context(llm_base_url=proxy.base_url, llm_model=selected_model().alias, clarification_budget=0))


def assert_clear_failure(result: TurnResult, kind: str) -> None:
    assert result.decision == "answer"
    assert result.llm_error == kind, result.reply
    # Read back from the checkpoint as a plain string (an enum there is an unregistered type).
    assert type(result.llm_error) is str
    assert result.reply.startswith(FAILED_PREFIX), result.reply
    assert "Traceback" not in result.reply


def assert_thread_settled(agent: EdgeAlign, thread: str, turns: int) -> None:
    """No half-run turn: nothing pending, every user message followed by a reply."""
    snapshot = agent.graph.get_state(agent._config(thread))
    assert not snapshot.next
    assert agent.pending_question(thread) is None
    roles = [m["role"] for m in agent.history(thread)]
    assert roles == ["user", "assistant"] * turns


def fault_then_recovery(
    proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch, thread: str, mode: FaultMode, kind: str, **fault: Any
) -> tuple[TurnResult, float]:
    agent = agent_through(proxy)
    proxy.set_mode(mode, **fault)
    started = time.monotonic()
    failed = agent.ask(REQUEST, thread_id=thread)
    elapsed = time.monotonic() - started
    faulted = proxy.faults_served  # read before the switch back resets it
    assert_clear_failure(failed, kind)
    assert_thread_settled(agent, thread, 1)

    proxy.set_mode(FaultMode.PASS)
    monkeypatch.setenv("EDGE_ALIGN_LLM_TIMEOUT", RECOVERY_TIMEOUT_S)
    recovered = agent.ask(FOLLOW_UP, thread_id=thread)
    assert recovered.llm_error is None, recovered.reply
    assert recovered.reply.strip() and not recovered.reply.startswith(FAILED_PREFIX)
    assert_thread_settled(agent, thread, 2)
    _results.append(
        {
            "fault": str(mode),
            "llm_error": failed.llm_error,
            "failed_turn_s": round(elapsed, 2),
            "requests_faulted": faulted,
            "next_turn_ok": True,
            "survived": True,
        }
    )
    return failed, elapsed


def test_refused_connections_end_the_turn_quickly_and_are_not_retried_forever(
    fault_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, elapsed = fault_then_recovery(fault_proxy, monkeypatch, "fault-refuse", FaultMode.REFUSE, "unreachable")
    assert elapsed < 15.0  # bounded: the client's retries with backoff, then the message


def test_a_delay_past_the_timeout_ends_in_a_timeout_message(
    fault_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, elapsed = fault_then_recovery(
        fault_proxy, monkeypatch, "fault-delay", FaultMode.DELAY, "timeout", delay_s=TIMEOUT_S * 3
    )
    # One try plus MAX_RETRIES retries, each cut at the timeout, plus the client's short backoff.
    assert elapsed < TIMEOUT_S * (MAX_RETRIES + 1) + 6.0


def test_http_500_is_retried_then_reported(fault_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    failed, _ = fault_then_recovery(fault_proxy, monkeypatch, "fault-500", FaultMode.HTTP_500, "server_error")
    assert "500" in failed.reply


def test_a_lasting_429_is_reported_as_rate_limiting(fault_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    failed, _ = fault_then_recovery(fault_proxy, monkeypatch, "fault-429", FaultMode.HTTP_429, "rate_limited")
    assert "rate limit" in failed.reply


def test_a_429_that_clears_after_one_request_is_retried_and_succeeds(
    fault_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = agent_through(fault_proxy)
    fault_proxy.set_mode(FaultMode.HTTP_429, times=1)
    monkeypatch.setenv("EDGE_ALIGN_LLM_TIMEOUT", RECOVERY_TIMEOUT_S)
    result = agent.ask(REQUEST, thread_id="fault-429-once")
    assert result.llm_error is None, result.reply
    assert result.reply.strip()
    assert fault_proxy.faults_served == 1
    assert fault_proxy.requests_seen >= 2  # the refused request and its retry
    assert_thread_settled(agent, "fault-429-once", 1)
    _results.append(
        {
            "fault": "http_429 once",
            "llm_error": None,
            "requests_faulted": 1,
            "next_turn_ok": True,
            "survived": True,
        }
    )


def test_a_stream_cut_halfway_is_reported_as_cut_off(fault_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    failed, _ = fault_then_recovery(
        fault_proxy, monkeypatch, "fault-cut", FaultMode.CUT_STREAM, "bad_response", cut_after_events=3
    )
    assert "cut off" in failed.reply


def test_malformed_json_is_reported_as_unreadable(fault_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    fault_then_recovery(fault_proxy, monkeypatch, "fault-json", FaultMode.MALFORMED_JSON, "bad_response")


def test_streaming_turns_fail_the_same_clear_way(fault_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    """The UI's path (EdgeAlign.stream) ends with its result, not an exception."""
    agent = agent_through(fault_proxy)
    fault_proxy.set_mode(FaultMode.HTTP_500)
    events = list(agent.stream(REQUEST, "fault-stream"))
    kind, result = events[-1]
    assert kind == "result"
    assert_clear_failure(result, "server_error")
    fault_proxy.set_mode(FaultMode.PASS)
    monkeypatch.setenv("EDGE_ALIGN_LLM_TIMEOUT", RECOVERY_TIMEOUT_S)
    events = list(agent.stream(FOLLOW_UP, "fault-stream"))
    assert any(kind == "token" for kind, _ in events)
    assert events[-1][1].llm_error is None
    assert_thread_settled(agent, "fault-stream", 2)
