"""Virtual environments of their own for outside tools (garak, Inspect) whose pins clash with ours.

Each lives in ``$EDGE_ALIGN_TOOL_VENVS/<name>`` (default ``artifacts/venvs/<name>``, git-ignored),
is created from PyPI on first use, and is rebuilt when its requirement list changes.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import ROOT

MARKER = ".edge-align-requirements"

# garak pins openai 2.x (the project uses 3.x); its torch must be the CPU build, so it is pinned too.
GARAK = ("torch==2.13.0", "garak==0.17.1")
# inspect-ai would move FastAPI and Starlette under Gradio; its OpenAI provider needs openai >= 3.4.
INSPECT = ("inspect-ai==0.3.285", "openai>=3.4,<4")


def venv_root() -> Path:
    return Path(os.environ.get("EDGE_ALIGN_TOOL_VENVS") or ROOT / "artifacts" / "venvs")


def ensure_venv(name: str, requirements: tuple[str, ...], timeout_s: float = 1200.0) -> tuple[Path, float]:
    """The venv's folder, and the seconds spent installing it now (0 when it was there already)."""
    folder = venv_root() / name
    wanted = "\n".join(requirements) + "\n"
    marker = folder / MARKER
    if marker.exists() and marker.read_text() == wanted and (folder / "bin" / "python").exists():
        return folder, 0.0
    started = time.monotonic()
    print(f"[{name}] creating {folder} with {' '.join(requirements)} (once)", file=sys.stderr, flush=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    # The system interpreter, not this venv's: the tool must not see the project's packages.
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--clear", str(folder)], check=True, timeout=timeout_s)
    pip = [str(folder / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *requirements], check=True, timeout=timeout_s)
    marker.write_text(wanted)
    return folder, round(time.monotonic() - started, 1)


def endpoint(url: str | None, home: Path, generate_text: bool) -> tuple[str, str, Any]:
    """(base URL, API key, the server started here or None) for a tool to drive.

    With ``url``, a server that already runs (its key in EDGE_ALIGN_API_KEY); otherwise a new
    `edge-align serve` on a free loopback port, data home ``home``, a random key. Close what it returns.
    """
    if url:
        return url, os.environ.get("EDGE_ALIGN_API_KEY", ""), None
    from tests.support.openai_server import ApiServer

    key = secrets.token_urlsafe(24)
    server = ApiServer(home, generate_text=generate_text, api_key=key).start()
    return server.base_url, key, server
