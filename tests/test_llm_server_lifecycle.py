"""The embedded model server ends with its parent, however the parent ends (real processes, real signals)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _server_alive(pid: int) -> bool:
    """True while ``pid`` is a running (not zombie) embedded-server process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X") and b"agent.llama_child" in cmdline


def _start_parent(mode: str, tmp_path: Path) -> tuple[subprocess.Popen[str], dict[str, object]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EDGE_ALIGN_LOG_DIR": str(tmp_path / "logs")}
    parent = subprocess.Popen(
        [sys.executable, "-m", "tests.support.llm_parent", mode],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=open(tmp_path / "parent.log", "w"), text=True,  # noqa: SIM115  (closed with the process)
    )  # fmt: skip
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(parent.stdout.readline() if parent.stdout else ""))
    reader.start()
    reader.join(timeout=400)
    if not line or not line[0].strip():
        parent.kill()
        pytest.fail(f"the parent did not report: {(tmp_path / 'parent.log').read_text()[-3000:]}")
    return parent, json.loads(line[0])


def _wait_gone(pid: int, timeout_s: float = 20.0) -> float:
    started = time.monotonic()
    while _server_alive(pid):
        if time.monotonic() - started > timeout_s:
            os.kill(pid, signal.SIGKILL)  # leave nothing behind, then fail
            pytest.fail(f"the embedded server {pid} outlived its parent by more than {timeout_s} s")
        time.sleep(0.1)
    return time.monotonic() - started


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mode", "signum"),
    [("graph", signal.SIGTERM), ("worker", signal.SIGINT), ("worker", signal.SIGKILL)],
    ids=["SIGTERM-after-a-graph-turn", "SIGINT-server-started-by-a-worker-thread", "SIGKILL"],
)
def test_the_server_ends_with_its_parent(mode: str, signum: signal.Signals, tmp_path: Path) -> None:
    parent, report = _start_parent(mode, tmp_path)
    pid = report["pid"]
    assert isinstance(pid, int)
    try:
        assert report["running"] and _server_alive(pid), report
        assert str(report["reply"]).strip(), "the parent got a worded reply"
        parent.send_signal(signum)
        parent.wait(timeout=30)
        gone_after = _wait_gone(pid)
    finally:
        if parent.poll() is None:
            parent.kill()
    assert not _server_alive(pid)
    assert gone_after < 20.0
