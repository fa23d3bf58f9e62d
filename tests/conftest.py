"""Shared test set-up: every test run writes into its own data home, never the user's."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Test modules import the support modules before pytest_plugins registers them as plugins; marked here,
# first, they are assert-rewritten on that import and pytest has no "already imported" to warn about.
pytest.register_assert_rewrite("tests.support")

from tests.support.reports import ARTIFACTS  # noqa: E402  (after the registration above)

# The chat models `make install` joined (edge-align models prepare) live in the installation's cache,
# which every data home shares, this session's fresh one too (agent/install_cache.py).
_HOME = Path(tempfile.mkdtemp(prefix="edge-align-test-home-"))
os.environ["EDGE_ALIGN_HOME"] = str(_HOME)
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tests that only need some reply use the fastest packaged model (SmolLM2-135M; the default 1.5B
# decodes several times slower); tests/test_default_model.py runs the default model end to end.
os.environ.setdefault("EDGE_ALIGN_EMBEDDED_MODEL", "smollm2-135m")
if not os.environ.get("EDGE_ALIGN_DATA"):
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    if shared.is_dir():
        os.environ["EDGE_ALIGN_DATA"] = str(shared)


@pytest.fixture(scope="session")
def test_home() -> Path:
    """The data home of this test session (checkpoints, norm index, transcripts)."""
    return _HOME


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
