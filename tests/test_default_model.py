"""The default packaged chat model end to end: `edge-align ask` as a user runs it, streaming its answer.

Other tests word replies with the fastest model (tests/conftest.py sets EDGE_ALIGN_EMBEDDED_MODEL to
SmolLM2-135M); this one runs what a user gets with nothing configured, once.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.embedded_models import load_registry

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_default_model_answers_a_factual_question_through_the_cli(tmp_path: Path) -> None:
    registry = load_registry()
    default = registry.get(registry.default)
    # The session's data home (its norm index is already built); logs of its own, to check them.
    env = {**os.environ, "EDGE_ALIGN_LOG_DIR": str(tmp_path / "logs")}
    env.pop("EDGE_ALIGN_EMBEDDED_MODEL", None)  # nothing configured: the table's default
    env.pop("EDGE_ALIGN_LLM_BASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "ui.cli", "ask", "What is the capital of France?"],
        capture_output=True, text=True, env=env, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Paris" in done.stdout, done.stdout
    assert "[answer]" in done.stderr
    assert f"starting the embedded model ({default.name})" in done.stderr
    assert list((tmp_path / "logs").glob("llama-server-*.log")), "the server logged to EDGE_ALIGN_LOG_DIR"
