"""The real ``edge-align demo`` in a subprocess, for browser and API tests.

Use from a test module with ``pytest_plugins = ["tests.support.demo_server"]`` and the ``demo_server``
fixture: one server per test session on a free loopback port, with its own EDGE_ALIGN_HOME in a
temporary folder (so tests never touch the user's conversations), stopped at the end. It starts the
embedded language model like a user's demo does, so the first start can take a minute or more.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import processes

PROJECT_ROOT = Path(__file__).resolve().parents[2]
READY_LINE = "Edge Align demo ready"
STARTUP_TIMEOUT_S = 420.0


class DemoServer:
    """One demo process; ``restart()`` keeps the port and the data home, as a user's restart would."""

    def __init__(self, home: Path, port: int | None = None, extra_env: dict[str, str] | None = None) -> None:
        self.home = home
        self.port = port or processes.free_loopback_port()
        self.extra_env = dict(extra_env or {})
        self.log_path = home / f"demo-{self.port}.log"
        self.startup_s: float | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            EDGE_ALIGN_HOME=str(self.home),
            GRADIO_ANALYTICS_ENABLED="False",
            ANONYMIZED_TELEMETRY="False",
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            TOKENIZERS_PARALLELISM="false",
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        return env

    def start(self, timeout_s: float = STARTUP_TIMEOUT_S) -> DemoServer:
        started = time.monotonic()
        self.home.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0  # a restart appends
        self._process = processes.launch_logged(
            [sys.executable, "-m", "ui.cli", "demo", "--host", "127.0.0.1", "--port", str(self.port)],
            log_path=self.log_path,
            env=self._env(),
            cwd=PROJECT_ROOT,
        )
        processes.wait_until_ready(
            self._process,
            lambda: READY_LINE in self.log_path.read_bytes()[offset:].decode(errors="replace") and self._answers(),
            name="edge-align demo",
            log_path=self.log_path,
            timeout_s=timeout_s,
            give_up=self.stop,
            started=started,
            poll_s=0.5,
        )
        self.startup_s = time.monotonic() - started
        return self

    def _answers(self) -> bool:
        return processes.answers_ok(self.url + "config", timeout_s=5)

    def log_tail(self, lines: int = 40) -> str:
        return processes.log_tail(self.log_path, lines)

    def stop(self, grace_s: float = 20.0) -> None:
        # SIGTERM first: the demo stops its model server on the way out; what it leaves behind goes
        # with its process group.
        process, self._process = self._process, None
        processes.stop_process_group(process, grace_s)

    def restart(self) -> DemoServer:
        self.stop()
        return self.start()


@pytest.fixture(scope="session")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    """A running demo with a fresh data home; stopped when the test session ends."""
    server = DemoServer(tmp_path_factory.mktemp("edge-align-home"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
