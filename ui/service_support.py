"""What both long-running front ends (the Gradio demo and the OpenAI-compatible API) need at start-up
and on every request, without importing Gradio."""

from __future__ import annotations

import os
import re
import sys
import threading
from typing import Any

_THREAD_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def valid_thread_id(value: Any) -> str | None:
    """The id if it is one we could have issued; anything else from a browser or client is ignored."""
    return value if isinstance(value, str) and _THREAD_ID.match(value) else None


def warm_llm(context: Any) -> None:
    """Start the embedded model now, so the first answer does not wait for it; failures show per turn."""
    if context.generate_text:
        warm_embedded_model(context.llm_base_url)


def warm_embedded_model(llm_base_url: str | None) -> None:
    """Start and warm the embedded model unless answers go to another endpoint (``llm_base_url``)."""
    from agent.llm import LLMSettings, LLMUnavailableError
    from agent.llm_server import ServerStoppedError, embedded_server
    from prompts import load_prompt

    if llm_base_url is not None:
        return
    if not LLMSettings.from_env().is_embedded:
        return
    server = None
    try:
        server = embedded_server()
        # Evaluating the fixed system prompt now spares the first visitor's answer that much prompt work.
        server.warm_up(load_prompt("system.md"))
    except ServerStoppedError:
        return  # the process is ending before any answer needed the model: nothing to report
    except LLMUnavailableError as problem:
        if server is not None and not server.is_running:
            return  # stopped mid warm-up by the process ending, as above
        print(f"[edge-align] the embedded model did not start ({problem}); answers will say so", file=sys.stderr)


def warm_llm_in_background() -> threading.Thread:
    """warm_llm on another thread, started before the agent's own imports and models.

    The embedded model loads in about 6 s, mostly on the other core, and the agent needs about 4 s to
    start (benchmarks/startup.py): side by side, the first answer waits for the longer of the two
    instead of their sum. Settings come from the environment, as the agent's own Context will.
    """
    endpoint = os.environ.get("EDGE_ALIGN_LLM_BASE_URL") or None
    thread = threading.Thread(target=warm_embedded_model, args=(endpoint,), name="warm-llm", daemon=True)
    thread.start()
    return thread
