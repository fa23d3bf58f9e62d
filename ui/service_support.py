"""What both long-running front ends (the Gradio demo and the OpenAI-compatible API) need at start-up
and on every request, without importing Gradio."""

from __future__ import annotations

import re
import sys
from typing import Any

_THREAD_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def valid_thread_id(value: Any) -> str | None:
    """The id if it is one we could have issued; anything else from a browser or client is ignored."""
    return value if isinstance(value, str) and _THREAD_ID.match(value) else None


def warm_llm(context: Any) -> None:
    """Start the embedded model now, so the first answer does not wait for it; failures show per turn."""
    from agent.llm import LLMSettings, LLMUnavailableError
    from agent.llm_server import embedded_server
    from prompts import load_prompt

    if context.llm_base_url is not None or not context.generate_text:
        return
    if not LLMSettings.from_env().is_embedded:
        return
    try:
        # Evaluating the fixed system prompt now spares the first visitor's answer that much prompt work.
        embedded_server().warm_up(load_prompt("system.md"))
    except LLMUnavailableError as problem:
        print(f"[edge-align] the embedded model did not start ({problem}); answers will say so", file=sys.stderr)
