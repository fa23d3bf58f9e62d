"""What every server a test starts needs: a free port, a readiness wait, a clean stop, its log's tail.

Used by the Chroma, PostgreSQL and ``langgraph dev`` servers (servers.py), the demo (demo_server.py)
and the fault proxy (fault_proxy.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self


def free_loopback_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (the OS picked it and it was released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def answers_ok(url: str, timeout_s: float = 2.0) -> bool:
    """True when ``url`` answers 200; a refused or unfinished connection is False."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def launch_logged(
    command: list[str], *, log_path: Path, env: dict[str, str], cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``command`` with its output appended to ``log_path``, in a session of its own, so that
    stop_process_group() reaches what it spawns and nothing else."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def wait_until_ready(
    process: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    *,
    name: str,
    log_path: Path,
    timeout_s: float,
    give_up: Callable[[], None],
    started: float | None = None,
    poll_s: float = 0.25,
) -> None:
    """Poll ``ready()`` until it holds; if the process exits or the time runs out, ``give_up()`` (stop
    and clean up) and raise with the log's tail, so a failed start leaves nothing behind."""
    started = time.monotonic() if started is None else started
    while not ready():
        if process.poll() is not None:
            failure = f"{name} exited with {process.returncode}:\n{log_tail(log_path)}"
            give_up()
            raise RuntimeError(failure)
        if time.monotonic() - started > timeout_s:
            give_up()
            raise TimeoutError(f"{name} not ready after {timeout_s:.0f} s:\n{log_tail(log_path)}")
        time.sleep(poll_s)


def stop_process_group(process: subprocess.Popen[bytes] | None, grace_s: float) -> None:
    """SIGTERM, then SIGKILL after ``grace_s``; then SIGKILL to what is left of its process group.

    Started by launch_logged(), the group holds only what the server spawned itself (workers, the
    demo's model server) and nothing of the test run.
    """
    if process is None:
        return
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


class Service(ABC):
    """Something a test starts and must close again: ``with Service(...) as running:``."""

    @abstractmethod
    def start(self) -> Self: ...

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
