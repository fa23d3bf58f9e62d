"""The LLM backend: settings, key hygiene, the real embedded server, and failures injected over HTTP."""

from __future__ import annotations

import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage
from pydantic import SecretStr

from agent.embedded_models import selected_model
from agent.llm import (
    EmbeddedServerError,
    LLMConfigError,
    LLMFailure,
    LLMSettings,
    LLMUnavailableError,
    generate,
    make_chat_model,
    resolve_settings,
    stream,
)
from agent.llm_server import EmbeddedLlamaServer, default_llm_threads, embedded_server
from tests.support.fault_proxy import FaultMode, FaultProxy

pytest_plugins = ["tests.support.llm_server"]

EMBEDDED_MODEL_NAME = selected_model().alias

SECRET = "sk-test-SECRET123"
MESSAGES = [
    SystemMessage("You are a concise assistant."),
    HumanMessage("Say one friendly sentence about tea."),
]


def closed_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def assert_secret_absent(*texts: Any) -> None:
    for text in texts:
        assert SECRET not in str(text)


# ---------------------------------------------------------------------------------- settings


def test_no_configuration_means_the_embedded_model() -> None:
    settings = LLMSettings.from_env({})
    assert settings.is_embedded
    assert settings.api_key is None
    assert (settings.timeout_s, settings.max_retries, settings.max_tokens) == (30.0, 2, 256)
    assert settings.fingerprint()["endpoint"] == "embedded"
    assert settings.fingerprint()["model"] == EMBEDDED_MODEL_NAME


def test_settings_are_read_from_the_environment() -> None:
    settings = LLMSettings.from_env(
        {
            "EDGE_ALIGN_LLM_BASE_URL": "http://localhost:11434/v1/",
            "EDGE_ALIGN_LLM_API_KEY": SECRET,
            "EDGE_ALIGN_LLM_MODEL": "llama3.2:1b",
            "EDGE_ALIGN_LLM_TIMEOUT": "12.5",
            "EDGE_ALIGN_LLM_MAX_TOKENS": "64",
            "EDGE_ALIGN_LLM_MAX_RETRIES": "0",
        }
    )
    assert settings.base_url == "http://localhost:11434/v1"
    assert settings.api_key == SECRET
    assert settings.model == "llama3.2:1b"
    assert (settings.timeout_s, settings.max_tokens, settings.max_retries) == (12.5, 64, 0)
    assert not settings.is_embedded


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("EDGE_ALIGN_LLM_TIMEOUT", "soon"),
        ("EDGE_ALIGN_LLM_TIMEOUT", "-1"),
        ("EDGE_ALIGN_LLM_TIMEOUT", "nan"),
        ("EDGE_ALIGN_LLM_MAX_TOKENS", "2.5"),
        ("EDGE_ALIGN_LLM_MAX_TOKENS", "0"),
        ("EDGE_ALIGN_LLM_MAX_RETRIES", "many"),
        ("EDGE_ALIGN_LLM_BASE_URL", "localhost:8080"),
        ("EDGE_ALIGN_LLM_BASE_URL", "ftp://example.org/v1"),
        ("EDGE_ALIGN_LLM_BASE_URL", "http://"),
        ("EDGE_ALIGN_LLM_BASE_URL", "http://example.org:99999/v1"),
    ],
)
def test_invalid_values_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(LLMConfigError, match=variable):
        LLMSettings.from_env({variable: value})


def test_openai_key_is_only_borrowed_for_openai_itself() -> None:
    elsewhere = LLMSettings.from_env(
        {"EDGE_ALIGN_LLM_BASE_URL": "http://vllm.internal:8000/v1", "OPENAI_API_KEY": SECRET}
    )
    assert elsewhere.api_key is None
    openai = LLMSettings.from_env(
        {
            "EDGE_ALIGN_LLM_BASE_URL": "https://api.openai.com/v1",
            "EDGE_ALIGN_LLM_MODEL": "gpt-4o-mini",
            "OPENAI_API_KEY": SECRET,
        }
    )
    assert openai.api_key == SECRET


def test_openai_needs_a_key_and_a_model() -> None:
    with pytest.raises(LLMConfigError, match="EDGE_ALIGN_LLM_API_KEY"):
        LLMSettings.from_env({"EDGE_ALIGN_LLM_BASE_URL": "https://api.openai.com/v1", "EDGE_ALIGN_LLM_MODEL": "x"})
    with pytest.raises(LLMConfigError, match="EDGE_ALIGN_LLM_MODEL"):
        LLMSettings.from_env({"EDGE_ALIGN_LLM_BASE_URL": "https://api.openai.com/v1", "OPENAI_API_KEY": SECRET})


def test_decode_threads_use_every_core_with_passive_waiting_unless_configured() -> None:
    cores = len(os.sched_getaffinity(0))
    assert default_llm_threads({"EDGE_ALIGN_LLM_THREADS": "3"}) == 3
    assert default_llm_threads({}) == cores  # the server is started with OMP_WAIT_POLICY=PASSIVE
    assert default_llm_threads({"OMP_WAIT_POLICY": "ACTIVE"}) == max(1, cores - 1)  # spinning: leave one free
    with pytest.raises(LLMConfigError, match="EDGE_ALIGN_LLM_THREADS"):
        default_llm_threads({"EDGE_ALIGN_LLM_THREADS": "all"})


def test_the_key_never_appears_in_repr_fingerprint_or_config_errors() -> None:
    settings = LLMSettings(
        base_url=f"https://user:{SECRET}@llm.example.org:8443/v1?key={SECRET}", api_key=SECRET, model="m"
    )
    assert settings.fingerprint()["endpoint"] == "https://llm.example.org:8443"
    assert "api_key" not in settings.fingerprint()
    with pytest.raises(LLMConfigError) as bad_url:
        LLMSettings.from_env({"EDGE_ALIGN_LLM_BASE_URL": f"ftp://u:{SECRET}@host/v1"})
    assert_secret_absent(repr(settings), str(settings), settings.fingerprint(), bad_url.value)


def test_a_closed_port_fails_fast_as_unreachable() -> None:
    settings = LLMSettings(
        base_url=f"http://127.0.0.1:{closed_port()}/v1", api_key=SECRET, model="m", timeout_s=5, max_retries=2
    )
    chat_model = make_chat_model(settings)  # the first call imports langchain-openai: not timed
    started = time.monotonic()
    with pytest.raises(LLMUnavailableError) as failure:
        generate(chat_model, MESSAGES)
    elapsed = time.monotonic() - started
    assert failure.value.kind is LLMFailure.UNREACHABLE
    assert elapsed < 5.0, f"took {elapsed:.1f} s"
    assert "127.0.0.1" in failure.value.user_message
    assert_secret_absent(failure.value, failure.value.user_message, failure.value.detail, repr(failure.value))


def test_chat_models_are_cached_per_settings() -> None:
    settings = LLMSettings(base_url="http://127.0.0.1:9/v1", api_key="k", model="m")
    assert make_chat_model(settings) is make_chat_model(
        LLMSettings(base_url="http://127.0.0.1:9/v1", api_key="k", model="m")
    )
    assert make_chat_model(settings) is not make_chat_model(
        LLMSettings(base_url="http://127.0.0.1:9/v1", api_key="k", model="n")
    )


def test_the_openai_key_from_the_environment_is_not_sent_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    chat_model = make_chat_model(LLMSettings(base_url="http://127.0.0.1:9/v1", model="m"))
    key = chat_model.openai_api_key
    assert isinstance(key, SecretStr)
    assert key.get_secret_value() == "not-needed"


# ---------------------------------------------------------------------------- embedded server


@pytest.mark.slow
def test_default_settings_resolve_to_the_running_embedded_server(embedded_llm: EmbeddedLlamaServer) -> None:
    resolved = resolve_settings(LLMSettings())
    assert resolved.base_url == embedded_llm.base_url
    assert resolved.model == embedded_llm.model_name == EMBEDDED_MODEL_NAME
    assert embedded_llm.log_path is not None and embedded_llm.log_path.exists()


@pytest.mark.slow
def test_an_endpoint_without_a_model_name_uses_the_one_it_lists(embedded_llm: EmbeddedLlamaServer) -> None:
    resolved = resolve_settings(LLMSettings(base_url=embedded_llm.base_url))
    assert resolved.model == embedded_llm.model_name


def test_a_model_name_cannot_be_asked_of_a_dead_endpoint() -> None:
    with pytest.raises(LLMUnavailableError) as failure:
        resolve_settings(LLMSettings(base_url=f"http://127.0.0.1:{closed_port()}/v1", api_key=SECRET))
    assert failure.value.kind is LLMFailure.UNREACHABLE
    assert "EDGE_ALIGN_LLM_MODEL" in failure.value.user_message
    assert_secret_absent(failure.value, failure.value.detail)


@pytest.mark.slow
def test_real_generation(embedded_llm_settings: LLMSettings) -> None:
    text = generate(make_chat_model(embedded_llm_settings), MESSAGES)
    assert len(text.split()) >= 2


@pytest.mark.slow
def test_real_stream_arrives_in_pieces_and_respects_max_tokens(embedded_llm_settings: LLMSettings) -> None:
    pieces = list(stream(make_chat_model(embedded_llm_settings), MESSAGES))
    assert len(pieces) >= 3
    assert "".join(pieces).strip()
    # One piece per token: more than max_tokens pieces would mean the limit never reached the server.
    assert len(pieces) <= embedded_llm_settings.max_tokens


# ----------------------------------------------------------------------- faults over HTTP


def through(proxy: FaultProxy, **overrides: Any) -> LLMSettings:
    values: dict[str, Any] = {
        "base_url": proxy.base_url, "api_key": SECRET, "model": EMBEDDED_MODEL_NAME,
        "timeout_s": 30.0, "max_retries": 0, "max_tokens": 32,
    }  # fmt: skip
    values.update(overrides)
    return LLMSettings(**values)


def assert_recovers(proxy: FaultProxy) -> None:
    proxy.set_mode(FaultMode.PASS)
    assert generate(make_chat_model(through(proxy)), MESSAGES).strip()


def assert_clean(failure: LLMUnavailableError) -> None:
    assert failure.user_message
    assert_secret_absent(failure, failure.user_message, failure.detail)


@pytest.mark.slow
def test_pass_through_streams_chunk_by_chunk(fault_proxy: FaultProxy) -> None:
    arrivals: list[float] = []
    started = time.monotonic()
    for piece in stream(make_chat_model(through(fault_proxy, max_tokens=48)), MESSAGES):
        assert piece
        arrivals.append(time.monotonic() - started)
    assert len(arrivals) >= 5
    # Tokens are decoded at tens per second; had the proxy buffered the body they would all land at once.
    assert arrivals[-1] - arrivals[0] > 0.05


@pytest.mark.slow
def test_timeout(fault_proxy: FaultProxy) -> None:
    fault_proxy.set_mode(FaultMode.DELAY, delay_s=4.0)
    started = time.monotonic()
    with pytest.raises(LLMUnavailableError) as failure:
        generate(make_chat_model(through(fault_proxy, timeout_s=1.0)), MESSAGES)
    assert failure.value.kind is LLMFailure.TIMEOUT
    assert time.monotonic() - started < 3.0
    assert_clean(failure.value)
    assert_recovers(fault_proxy)


@pytest.mark.slow
def test_server_error_is_retried_then_reported(fault_proxy: FaultProxy) -> None:
    fault_proxy.set_mode(FaultMode.HTTP_500)
    with pytest.raises(LLMUnavailableError) as failure:
        generate(make_chat_model(through(fault_proxy, max_retries=1)), MESSAGES)
    assert failure.value.kind is LLMFailure.SERVER_ERROR
    assert "500" in failure.value.user_message
    assert fault_proxy.faults_served == 2  # the first try and one retry
    assert_clean(failure.value)
    assert_recovers(fault_proxy)


@pytest.mark.slow
def test_a_passing_rate_limit_is_absorbed_by_retries(fault_proxy: FaultProxy) -> None:
    fault_proxy.set_mode(FaultMode.HTTP_429, times=1)
    text = generate(make_chat_model(through(fault_proxy, max_retries=2)), MESSAGES)
    assert text.strip()
    assert fault_proxy.faults_served == 1


@pytest.mark.slow
def test_a_lasting_rate_limit_is_reported(fault_proxy: FaultProxy) -> None:
    fault_proxy.set_mode(FaultMode.HTTP_429)
    with pytest.raises(LLMUnavailableError) as failure:
        generate(make_chat_model(through(fault_proxy, max_retries=1)), MESSAGES)
    assert failure.value.kind is LLMFailure.RATE_LIMITED
    assert fault_proxy.faults_served == 2
    assert_clean(failure.value)
    assert_recovers(fault_proxy)


@pytest.mark.slow
def test_refused_connections_are_unreachable(fault_proxy: FaultProxy) -> None:
    fault_proxy.set_mode(FaultMode.REFUSE)
    started = time.monotonic()
    with pytest.raises(LLMUnavailableError) as failure:
        generate(make_chat_model(through(fault_proxy, max_retries=2)), MESSAGES)
    assert failure.value.kind is LLMFailure.UNREACHABLE
    assert time.monotonic() - started < 5.0
    assert_clean(failure.value)
    assert_recovers(fault_proxy)


@pytest.mark.slow
def test_a_stream_cut_halfway_keeps_the_partial_text(fault_proxy: FaultProxy) -> None:
    fault_proxy.set_mode(FaultMode.CUT_STREAM, cut_after_events=6)
    received: list[str] = []
    with pytest.raises(LLMUnavailableError) as failure:
        for piece in stream(make_chat_model(through(fault_proxy, max_tokens=64)), MESSAGES):
            received.append(piece)
    assert failure.value.kind is LLMFailure.BAD_RESPONSE
    assert received, "the pieces before the cut reach the caller"
    assert failure.value.partial_text == "".join(received)
    assert_clean(failure.value)
    with pytest.raises(LLMUnavailableError) as whole:
        generate(make_chat_model(through(fault_proxy, max_tokens=64)), MESSAGES)
    assert whole.value.kind is LLMFailure.BAD_RESPONSE
    assert_recovers(fault_proxy)


@pytest.mark.slow
def test_malformed_json_is_a_bad_response(fault_proxy: FaultProxy) -> None:
    fault_proxy.set_mode(FaultMode.MALFORMED_JSON)
    streaming = make_chat_model(through(fault_proxy))
    failures = []
    for call in (
        lambda: generate(streaming, MESSAGES),
        lambda: list(stream(streaming, MESSAGES)),
        lambda: generate(streaming.model_copy(update={"streaming": False}), MESSAGES),
    ):
        with pytest.raises(LLMUnavailableError) as failure:
            call()
        failures.append(failure.value)
    assert [f.kind for f in failures] == [LLMFailure.BAD_RESPONSE] * 3
    for f in failures:
        assert_clean(f)
    assert_recovers(fault_proxy)


# ------------------------------------------------------------------------ server lifecycle


@pytest.mark.slow
def test_a_broken_model_file_fails_with_the_log_tail(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"this is not a gguf file" * 100)
    server = EmbeddedLlamaServer(tmp_path / "logs", model_path=broken, progress=False)
    with pytest.raises(EmbeddedServerError) as failure:
        server.start()
    assert failure.value.kind is LLMFailure.UNREACHABLE
    assert "stopped while starting" in failure.value.user_message
    assert server.log_path is not None and str(server.log_path) in failure.value.detail
    assert len(failure.value.detail.splitlines()) > 1, "the log tail follows the log path"
    assert not server.is_running


@pytest.mark.slow
def test_a_server_that_is_not_ready_in_time_is_stopped(tmp_path: Path) -> None:
    server = EmbeddedLlamaServer(tmp_path, startup_timeout_s=0.2, progress=False)
    with pytest.raises(EmbeddedServerError, match="did not start within"):
        server.start()
    assert not server.is_running


@pytest.mark.slow
def test_the_shared_server_is_started_once_across_threads(embedded_llm: EmbeddedLlamaServer) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        servers = list(pool.map(lambda _: embedded_server(), range(8)))
    assert all(server is embedded_llm for server in servers)
    assert embedded_llm.is_running


@pytest.mark.slow
def test_langgraph_streams_the_tokens_of_a_node_that_generates(embedded_llm_settings: LLMSettings) -> None:
    from langgraph.graph import END, START, MessagesState, StateGraph

    chat_model = make_chat_model(embedded_llm_settings)

    def word(state: MessagesState) -> dict[str, list[AIMessage]]:
        return {"messages": [AIMessage(generate(chat_model, state["messages"]))]}

    builder = StateGraph(MessagesState)
    builder.add_node("word", word)
    builder.add_edge(START, "word")
    builder.add_edge("word", END)
    graph = builder.compile()
    graph_input: Any = {"messages": MESSAGES}
    tokens = [
        message.content
        for message, _ in graph.stream(graph_input, stream_mode="messages")
        if isinstance(message, AIMessageChunk) and isinstance(message.content, str) and message.content
    ]
    final = graph.invoke(graph_input)["messages"][-1].content
    assert len(tokens) >= 3
    assert isinstance(final, str) and final
