"""The real ``edge-align demo`` in a subprocess, for browser and API tests.

Use from a test module with ``pytest_plugins = ["tests.support.demo_server"]`` and the ``demo_server``
fixture: one server per test session on a free loopback port, with its own EDGE_ALIGN_HOME in a
temporary folder (so tests never touch the user's conversations), stopped at the end. It starts the
embedded language model like a user's demo does, so the first start can take a minute or more.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
READY_LINE = "Edge Align demo ready"
STARTUP_TIMEOUT_S = 420.0


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class DemoServer:
    """One demo process; ``restart()`` keeps the port and the data home, as a user's restart would."""

    def __init__(self, home: Path, port: int | None = None, extra_env: dict[str, str] | None = None) -> None:
        self.home = home
        self.port = port or free_loopback_port()
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
        with open(self.log_path, "ab") as log:
            # Its own session, so stop() can also end the model server it spawned (and nothing else).
            self._process = subprocess.Popen(
                [sys.executable, "-m", "ui.cli", "demo", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=PROJECT_ROOT,
                env=self._env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        while True:
            if self._process.poll() is not None:
                code = self._process.returncode
                raise RuntimeError(f"edge-align demo exited with {code}:\n{self.log_tail()}")
            if READY_LINE in self.log_path.read_bytes()[offset:].decode(errors="replace") and self._answers():
                break
            if time.monotonic() - started > timeout_s:
                self.stop()
                raise TimeoutError(f"edge-align demo not ready after {timeout_s:.0f} s:\n{self.log_tail()}")
            time.sleep(0.5)
        self.startup_s = time.monotonic() - started
        return self

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "config", timeout=5) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, grace_s: float = 20.0) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # the demo stops its model server on the way out
            try:
                process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=grace_s)
        # Anything the demo started and left behind shares its process group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)

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
