"""pytest fixtures for the embedded language model: one llama.cpp server per test session.

Use from a test module with ``pytest_plugins = ["tests.support.llm_server"]``. The session server
is the process-wide ``agent.llm_server.embedded_server()``, so code under test that resolves the default
settings talks to the same server instead of starting a second one.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.llm import LLMSettings
from agent.llm_server import EmbeddedLlamaServer, embedded_server
from tests.support.fault_proxy import FaultMode, FaultProxy


@pytest.fixture(scope="session")
def embedded_llm() -> Iterator[EmbeddedLlamaServer]:
    """The started embedded server; stopped when the session ends."""
    server = embedded_server()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def embedded_llm_settings(embedded_llm: EmbeddedLlamaServer) -> LLMSettings:
    """Settings that reach the session server directly (short timeout: it is local)."""
    return LLMSettings(
        base_url=embedded_llm.base_url,
        api_key="not-needed",
        model=embedded_llm.model_name,
        timeout_s=30.0,
        max_tokens=48,
    )


@pytest.fixture()
def fault_proxy(embedded_llm: EmbeddedLlamaServer) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of the session server, starting in pass-through mode."""
    with FaultProxy(embedded_llm.base_url) as proxy:
        proxy.set_mode(FaultMode.PASS)
        yield proxy
        assert not proxy.unexpected_errors, proxy.unexpected_errors
