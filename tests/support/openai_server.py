"""`edge-align serve` for tests and benchmarks: as the real command in a subprocess, or in this process.

``ApiServer`` runs ``python -m ui.cli serve`` on a free loopback port with its own data home and
environment (the API key, the rate limit), and is ready when the server printed its ready line and
``/health`` answers. ``InProcessServer`` serves an app built by ``ui.openai_server.create_app`` with
uvicorn on a thread of this process, for tests that need an EdgeAlign set up in a way the command
does not offer (an in-memory checkpointer, an endpoint that is down).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.support.processes import (
    Service,
    answers_ok,
    free_loopback_port,
    launch_logged,
    stop_process_group,
    wait_until_ready,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 420.0  # a fresh data home indexes the norm packs first; with text, the model starts too


class ApiServer(Service):
    def __init__(
        self,
        home: Path,
        *,
        generate_text: bool = False,
        api_key: str | None = None,
        extra_env: dict[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.home = Path(home)
        self.generate_text = generate_text
        self.api_key = api_key
        self.extra_env = dict(extra_env or {})
        self.port = port or free_loopback_port()
        self.log_path = self.home / f"serve-{self.port}.log"
        self.startup_s: float | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What an OpenAI client takes as ``base_url``."""
        return f"{self.root_url}/v1"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def _env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "EDGE_ALIGN_HOME": str(self.home),
            "GRADIO_ANALYTICS_ENABLED": "False",
            "ANONYMIZED_TELEMETRY": "False",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("EDGE_ALIGN_API_KEY", None)
        if self.api_key:
            env["EDGE_ALIGN_API_KEY"] = self.api_key
        env.update(self.extra_env)
        return env

    def start(self, timeout_s: float = STARTUP_TIMEOUT_S) -> ApiServer:
        from ui.openai_server import READY_LINE

        started = time.monotonic()
        self.home.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "ui.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        if not self.generate_text:
            command.append("--no-text")
        self._process = launch_logged(command, log_path=self.log_path, env=self._env(), cwd=PROJECT_ROOT)
        wait_until_ready(
            self._process,
            lambda: READY_LINE in self.log_text() and answers_ok(f"{self.root_url}/health"),
            name="edge-align serve",
            log_path=self.log_path,
            timeout_s=timeout_s,
            give_up=self.close,
            started=started,
            poll_s=0.5,
        )
        self.startup_s = time.monotonic() - started
        return self

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        process, self._process = self._process, None
        stop_process_group(process, grace_s=20.0)


class InProcessServer(Service):
    """uvicorn serving ``app`` on a thread; ``close()`` asks it to stop and waits."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        import uvicorn

        self.port = port or free_loopback_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=f"uvicorn-{self.port}", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout_s: float = 30.0) -> InProcessServer:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the in-process API server did not start on port {self.port}")
            time.sleep(0.05)
        return self

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
