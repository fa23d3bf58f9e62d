"""Real scale-out engines on loopback for tests and benchmarks: a Chroma server and a private PostgreSQL.

Both start on free ports in temporary folders and are stopped (and their folders removed) at the end.
Use from a test module with ``pytest_plugins = ["tests.support.servers"]`` and the ``chroma_server``
and ``postgres_cluster`` fixtures; the classes work without pytest (benchmarks/scale.py uses them).

PostgreSQL refuses to run as root, so when the tests run as root the cluster is initialised and
started as the ``postgres`` user (``runuser``), in a folder that user owns.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import (
    Service,
    answers_ok,
    free_loopback_port,
    launch_logged,
    log_tail,
    stop_process_group,
    wait_until_ready,
)

STARTUP_TIMEOUT_S = 120.0
POSTGRES_USER = "postgres"  # the OS account that runs the cluster when we are root
DB_ROLE = "edge_align"  # the cluster's superuser role, trusted on loopback only
INSTALL_HINT = "install Debian's server with `apt-get install -y postgresql` (or run `make services`)"


class EngineMissingError(RuntimeError):
    """A server binary the scale-out tests need is not installed; the message says how to get it."""


class ChromaServer(Service):
    """``chroma run`` from the installed chromadb package, with its own data folder and HOME.

    HOME points into the temporary folder so a test can prove the server downloaded nothing
    (Chroma's default embedding function would cache an ONNX model under ~/.cache/chroma).
    """

    def __init__(self, root: Path | None = None, port: int | None = None) -> None:
        self._owns_root = root is None
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="edge-align-chroma-"))
        self.port = port or free_loopback_port()
        self.data_dir = self.root / "data"
        self.home = self.root / "home"
        self.log_path = self.root / f"chroma-{self.port}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @staticmethod
    def executable() -> str:
        beside_python = Path(sys.executable).parent / "chroma"
        found = str(beside_python) if beside_python.exists() else shutil.which("chroma")
        if not found:
            raise EngineMissingError("the `chroma` command is missing: install the project with `pip install -e .[dev]`")
        return found

    def start(self, timeout_s: float = STARTUP_TIMEOUT_S) -> ChromaServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "HOME": str(self.home), "ANONYMIZED_TELEMETRY": "False"}
        command = [self.executable(), "run", "--host", "127.0.0.1", "--port", str(self.port), "--path", str(self.data_dir)]
        self._process = launch_logged(command, log_path=self.log_path, env=env)
        wait_until_ready(
            self._process,
            lambda: answers_ok(f"{self.url}/api/v2/heartbeat"),
            name="chroma run",
            log_path=self.log_path,
            timeout_s=timeout_s,
            give_up=self.close,
        )
        return self

    def downloaded_files(self) -> list[Path]:
        """Anything the server cached under its HOME (a downloaded model would land there)."""
        return [p for p in self.home.rglob("*") if p.is_file()]

    def stop(self, grace_s: float = 10.0) -> None:
        process, self._process = self._process, None
        stop_process_group(process, grace_s)

    def close(self) -> None:
        self.stop()
        if self._owns_root:
            shutil.rmtree(self.root, ignore_errors=True)


def postgres_bin_dir() -> Path:
    """The folder holding initdb and pg_ctl (Debian keeps them off PATH, per major version)."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if versions:
        return Path(versions[-1]).parent
    raise EngineMissingError(f"PostgreSQL's initdb was not found on PATH or in /usr/lib/postgresql/*/bin: {INSTALL_HINT}")


class PostgresCluster(Service):
    """A throwaway PostgreSQL cluster on 127.0.0.1:<free port>, trusting loopback connections.

    ``durable=False`` turns off fsync and synchronous commit: fine for tests, whose data is thrown
    away; benchmarks keep the defaults so their numbers mean what a user would see.
    """

    def __init__(self, port: int | None = None, *, durable: bool = True) -> None:
        self.bin_dir = postgres_bin_dir()
        self.port = port or free_loopback_port()
        self.durable = durable
        # Directly under /tmp: pytest's own temporary folders are private to root, and the
        # postgres account must be able to reach the data folder.
        self.root = Path(tempfile.mkdtemp(prefix="edge-align-pg-"))
        self.data_dir = self.root / "data"
        self.log_path = self.root / "server.log"
        self._as_postgres = os.geteuid() == 0
        self._running = False

    def _run(self, *command: str, timeout_s: float = STARTUP_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", POSTGRES_USER, "--"] if self._as_postgres else []
        done = subprocess.run(
            [*prefix, *command], capture_output=True, text=True, timeout=timeout_s, cwd=self.root, stdin=subprocess.DEVNULL
        )
        if done.returncode != 0:
            raise RuntimeError(f"{Path(command[0]).name} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}\n{log_tail(self.log_path)}")
        return done

    def start(self) -> PostgresCluster:
        if self._as_postgres:
            try:
                account = pwd.getpwnam(POSTGRES_USER)
            except KeyError:
                raise EngineMissingError(f"there is no `{POSTGRES_USER}` user to run PostgreSQL as: {INSTALL_HINT}") from None
            os.chown(self.root, account.pw_uid, account.pw_gid)
        self._run(
            str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", DB_ROLE,
            "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync",
        )  # fmt: skip
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root}"
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run(
            str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_path),
            "-o", options, "-w", "-t", str(int(STARTUP_TIMEOUT_S)), "start",
        )  # fmt: skip
        self._running = True
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{DB_ROLE}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self._running:
            self._running = False
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop", timeout_s=60)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        try:
            return self.start()
        except BaseException:  # initdb may have written part of a cluster: remove it
            self.close()
            raise


class LangGraphDevServer(Service):
    """``langgraph dev`` serving the project's langgraph.json on a free loopback port.

    It runs in a temporary working folder: the in-memory runtime persists its state into
    ``.langgraph_api/`` under the working folder, which must not be the project. No reload
    watcher (writes elsewhere in the tree would restart it mid-test), no analytics, no version check.
    """

    def __init__(self, config: Path, port: int | None = None, extra_env: dict[str, str] | None = None) -> None:
        self.config = Path(config).resolve()
        self.port = port or free_loopback_port()
        self.extra_env = dict(extra_env or {})
        self.root = Path(tempfile.mkdtemp(prefix="edge-align-langgraph-"))
        self.log_path = self.root / f"langgraph-dev-{self.port}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = STARTUP_TIMEOUT_S) -> LangGraphDevServer:
        cli = Path(sys.executable).parent / "langgraph"
        if not cli.exists():
            raise EngineMissingError("the `langgraph` command is missing: install the project with `pip install -e .[dev]`")
        env = {
            **os.environ,
            "LANGGRAPH_CLI_NO_ANALYTICS": "1",
            "LANGGRAPH_NO_VERSION_CHECK": "true",
            "LANGSMITH_TRACING": "false",
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }
        command = [
            str(cli), "dev", "--config", str(self._absolute_config()), "--host", "127.0.0.1", "--port", str(self.port),
            "--no-browser", "--no-reload",
        ]  # fmt: skip
        self._process = launch_logged(command, log_path=self.log_path, env=env, cwd=self.root)
        wait_until_ready(
            self._process,
            lambda: answers_ok(f"{self.url}/ok"),
            name="langgraph dev",
            log_path=self.log_path,
            timeout_s=timeout_s,
            give_up=self.close,
        )
        return self

    def _absolute_config(self) -> Path:
        """The project's langgraph.json with its relative paths made absolute, beside the working folder.

        ``langgraph dev`` resolves paths against its working folder, which is not the project here.
        """
        spec = json.loads(self.config.read_text(encoding="utf-8"))
        base = self.config.parent

        def absolute(path: str) -> str:
            return str((base / path).resolve()) if path.startswith(".") else path

        spec["dependencies"] = [absolute(d) for d in spec.get("dependencies", [])]
        spec["graphs"] = {name: absolute(target) for name, target in spec.get("graphs", {}).items()}
        copy = self.root / "langgraph.json"
        copy.write_text(json.dumps(spec, indent=2), encoding="utf-8")
        return copy

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    def close(self, grace_s: float = 15.0) -> None:
        process, self._process = self._process, None
        stop_process_group(process, grace_s)  # with the workers it spawned
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def chroma_server() -> Iterator[ChromaServer]:
    """A running Chroma server for the test session; stopped and removed at the end."""
    server = ChromaServer()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A running private PostgreSQL cluster for the test session; stopped and removed at the end."""
    try:
        cluster = PostgresCluster(durable=False)
    except EngineMissingError as missing:
        pytest.fail(str(missing), pytrace=False)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()
