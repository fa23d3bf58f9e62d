"""Starting and stopping the embedded LLM server: llama.cpp's OpenAI-compatible server on loopback.

The model comes from agent.embedded_models (``EDGE_ALIGN_EMBEDDED_MODEL``, else the table's
default); agent.llm holds the client side. The server process never outlives its parent:

* it is started through agent.llama_child, which asks Linux to kill it when the starting thread
  exits (PR_SET_PDEATHSIG) and exits itself when its stdin pipe from the parent closes;
* that starting thread is a thread of its own that lives exactly as long as the server, so a
  short-lived worker thread (a LangGraph or Gradio worker) that first asked for the model cannot
  take the server down with it;
* SIGTERM and SIGHUP, whose default action skips ``atexit``, stop the server before the process
  ends, when nothing else has claimed them; SIGINT and ``sys.exit`` reach the ``atexit`` hook.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import weakref
from collections.abc import Mapping
from pathlib import Path
from types import FrameType, TracebackType

from agent.embedded_models import EmbeddedModel, prepare, selected_model
from agent.llama_child import ENV_PARENT_PID
from agent.llm import ENV_LOG_DIR, ENV_THREADS, EmbeddedServerError, read_number

ENV_PROMPT_CACHE = "EDGE_ALIGN_LLM_PROMPT_CACHE_MB"
ENV_BATCH = "EDGE_ALIGN_LLM_BATCH"
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])


class ServerStoppedError(EmbeddedServerError):
    """stop() ran while the server was starting: the process is ending (a turn that needed no answer)."""


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def default_llm_threads(environ: Mapping[str, str] | None = None) -> int:
    """Decode threads for the embedded server: $EDGE_ALIGN_LLM_THREADS, else one per core.

    llama.cpp's threads meet at every layer. With OpenMP's default spin-waiting, a thread per core
    collapses when another process takes a core; with OMP_WAIT_POLICY=PASSIVE, which the server is
    started with unless the environment says otherwise, it does not. benchmarks/llm_threads.py,
    Qwen2.5-Coder-0.5B on 2 busy cores (load 6-10): 2 threads passive 20.5 tokens/s, 1 thread
    12.3; 2 threads with the default policy 1.8. Under another policy one core is left free.
    """
    env = os.environ if environ is None else environ
    passive = env.get("OMP_WAIT_POLICY", "PASSIVE").strip().upper() == "PASSIVE"
    cores = _available_cores()
    return read_number(env, ENV_THREADS, int, cores if passive else max(1, cores - 1), minimum=1)


def prompt_cache_bytes(environ: Mapping[str, str] | None = None) -> int:
    """RAM for llama-cpp-python's multi-prompt cache: $EDGE_ALIGN_LLM_PROMPT_CACHE_MB, else off.

    Off by default: the server already reuses the evaluated prefix a prompt shares with the one
    before it, and every answer prompt starts with the same system prompt (prompts/system.md), which
    ``warm_up`` evaluates once at start. Measured with Qwen2.5-Coder-0.5B on 2 busy cores (load ~5):
    the 256 MB cache raised the server's peak RSS from 833 to 1233 MB and gave a repeated prompt no
    faster first token (1.33 s vs 1.27 s); it pays only for several long conversations interleaved.
    """
    env = os.environ if environ is None else environ
    return read_number(env, ENV_PROMPT_CACHE, int, 0, minimum=0) * 1024 * 1024


def default_batch(environ: Mapping[str, str] | None = None) -> int:
    """Prompt tokens evaluated per step: $EDGE_ALIGN_LLM_BATCH, else 64 (llama.cpp's default is 512).

    Buffers sized by the batch hold a float32 logits row per slot; the Qwen models' vocabulary has
    151,936 tokens. benchmarks/llm_batch.py, Qwen2.5-Coder-0.5B, ~300-token prompt, 2 busy cores
    (load ~10): batch 512 peaked at 1,055 MB RSS, 64 at 888 MB; first token 8.7 s vs 8.3 s and
    decoding 12.3 vs 12.4 tokens/s, i.e. no slower within the noise.
    """
    env = os.environ if environ is None else environ
    return read_number(env, ENV_BATCH, int, 64, minimum=8)


def _default_log_dir() -> Path:
    configured = os.environ.get(ENV_LOG_DIR)
    if configured:
        return Path(configured).expanduser()
    return Path(os.environ.get("TMPDIR", "/tmp")) / "edge-align" / "logs"


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def server_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The server's environment: no API keys, passive OpenMP waiting, this package importable."""
    env = os.environ if environ is None else environ
    # Keys for remote endpoints have no business in the local server's environment.
    child = {k: v for k, v in env.items() if not k.endswith("API_KEY")}
    # OpenMP's default spin-wait made decoding collapse to ~1 token/s when other processes took the
    # cores (../shared/STACK.md); passive waiting costs nothing measurable on idle cores.
    child.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    child[ENV_PARENT_PID] = str(os.getpid())
    # The child imports agent.llama_child from the same tree as this module, installed or not.
    child["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, child.get("PYTHONPATH", "")) if p)
    return child


_live_servers: weakref.WeakSet[EmbeddedLlamaServer] = weakref.WeakSet()
_signals_lock = threading.Lock()
_signals_installed = False


def _stop_live_servers() -> None:
    for server in list(_live_servers):
        server.stop(grace_s=2.0)


def _on_terminating_signal(signum: int, frame: FrameType | None) -> None:
    """Stop the servers, then end the way the signal's default action would (same exit status)."""
    _stop_live_servers()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_signal_handlers() -> None:
    """Claim SIGTERM and SIGHUP if nothing else has (only the main thread may set handlers)."""
    global _signals_installed
    with _signals_lock:
        if _signals_installed or threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(signum) == signal.SIG_DFL:
                signal.signal(signum, _on_terminating_signal)
        _signals_installed = True


class EmbeddedLlamaServer:
    """llama.cpp's server with a packaged model on a free loopback port, logging to a file."""

    def __init__(
        self,
        log_dir: str | os.PathLike[str] | None = None,
        *,
        model: EmbeddedModel | None = None,
        model_path: str | os.PathLike[str] | None = None,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        n_batch: int | None = None,
        cache_bytes: int | None = None,
        logits_all: bool = False,
        use_mmap: bool = False,
        startup_timeout_s: float = 120.0,
        progress: bool = True,
    ) -> None:
        self.log_dir = Path(log_dir) if log_dir is not None else _default_log_dir()
        self.model = model or selected_model()
        self.model_path = Path(model_path) if model_path is not None else None
        self.n_ctx = n_ctx
        self.n_threads = n_threads or default_llm_threads()
        self.n_batch = n_batch or default_batch()
        self.cache_bytes = prompt_cache_bytes() if cache_bytes is None else cache_bytes
        self.logits_all = logits_all
        self.use_mmap = use_mmap
        self.startup_timeout_s = startup_timeout_s
        self.progress = progress
        self.port: int | None = None
        self.model_name = self.model.alias
        self.log_path: Path | None = None
        self.startup_s: float | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise EmbeddedServerError("The embedded language model is not running.")
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def command(self, port: int) -> list[str]:
        model_path = self.model_path or prepare(self.model, progress=self.progress)
        command = [
            sys.executable, "-m", "agent.llama_child",
            "--model", str(model_path),
            "--model_alias", self.model.alias,
            "--host", "127.0.0.1",
            "--port", str(port),
            "--n_ctx", str(self.n_ctx),
            "--n_threads", str(self.n_threads),
            "--n_threads_batch", str(self.n_threads),
            "--n_batch", str(self.n_batch),
            "--n_ubatch", str(self.n_batch),
            # llama_cpp.server keeps logits for every token by default (only logprobs need them, and
            # nothing here asks for logprobs): a float32 row of the vocabulary per context token, i.e.
            # 594 KB a token and up to 1.2 GB at n_ctx 2048 with the Qwen models' 151,936 tokens, plus
            # the vocabulary projection computed for every prompt token instead of the last one.
            "--logits_all", "true" if self.logits_all else "false",
            # llama.cpp repacks most weight matrices into an interleaved copy in anonymous memory for
            # faster CPU matmuls (597 MB of the 1.5B's 1,060 MB); with the file mmap'd (and mlock'd,
            # llama_cpp.server's default) the original pages of those matrices stay resident too, so
            # they are held twice. Read into memory instead, each weight is held once.
            # benchmarks/llm_batch.py --model qwen2.5-coder-1.5b --batches 64 --logits-all both
            # --mmap both (load 1.9-3.1): peak RSS 2,098 MB with both defaults, 1,853 MB logits off,
            # 1,508 MB mmap off, 1,263 MB both off; first token 8.5 / 8.0 / 9.3 / 7.9 s and decoding
            # 10.4 / 9.5 / 9.5 / 11.0 tokens/s (medians of 3; no slower within the noise).
            "--use_mmap", "true" if self.use_mmap else "false",
        ]  # fmt: skip
        if self.cache_bytes:
            # Keeps the evaluated state of recent prompts: a new prompt that shares a prefix with one
            # of them (the system prompt, an earlier turn) starts decoding after the shared part.
            command += ["--cache", "true", "--cache_type", "ram", "--cache_size", str(self.cache_bytes)]
        return command

    def start(self) -> EmbeddedLlamaServer:
        if self.is_running:
            return self
        self.log_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        self._say(f"starting the embedded model ({self.model.name})…")
        _install_signal_handlers()
        # A port picked free can be taken before the server binds it; a fresh one usually works.
        for attempt in range(3):
            port = _free_loopback_port()
            self.log_path = self.log_dir / f"llama-server-{port}.log"
            self._spawn(port)
            if self._wait_ready(started):
                break
            if attempt == 2 or "address already in use" not in _tail(self.log_path).lower():
                raise EmbeddedServerError(
                    "The embedded language model stopped while starting.",
                    f"log {self.log_path}:\n{_tail(self.log_path)}",
                )
        self.startup_s = time.monotonic() - started
        if self.progress and sys.stderr.isatty():
            print(file=sys.stderr)
        self._say(f"embedded model ready after {self.startup_s:.1f} s ({self.base_url})")
        return self

    def _spawn(self, port: int) -> None:
        assert self.log_path is not None
        command = self.command(port)
        handed: queue.Queue[subprocess.Popen[bytes] | BaseException] = queue.Queue()
        log_path = self.log_path

        def own() -> None:
            # PR_SET_PDEATHSIG fires when the *thread* that started the child exits: this thread
            # starts it and then waits for it, so it lives exactly as long as the server.
            try:
                with open(log_path, "wb") as log:
                    process = subprocess.Popen(
                        command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.PIPE, env=server_env()
                    )
            except BaseException as problem:
                handed.put(problem)
                return
            handed.put(process)
            process.wait()

        threading.Thread(target=own, name=f"llama-server-{port}", daemon=True).start()
        outcome = handed.get()
        if isinstance(outcome, BaseException):
            raise EmbeddedServerError("The embedded language model could not be started.", repr(outcome))
        self._process = outcome
        self.port = port
        _live_servers.add(self)

    def warm_up(self, system_prompt: str) -> float:
        """Evaluate the fixed system prompt once, so the first real request starts after it; seconds taken.

        The server keeps the evaluated tokens of its last prompt and reuses the prefix the next
        prompt shares with it: every answer prompt starts with this system prompt.
        """
        started = time.monotonic()
        body = json.dumps({
            "model": self.model_name,
            "messages": [{"role": "system", "content": system_prompt}, {"role": "user", "content": "Hello."}],
            "max_tokens": 1,
        }).encode()  # fmt: skip
        request = urllib.request.Request(
            f"{self.base_url}/chat/completions", data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.startup_timeout_s) as response:
                response.read()
        except OSError as problem:  # URLError, a timeout, a reset: the server is not answering
            raise EmbeddedServerError(
                "The embedded language model did not answer.", f"warm-up request: {type(problem).__name__}"
            ) from None
        return time.monotonic() - started

    def _wait_ready(self, started: float) -> bool:
        """True once /v1/models answers; False if the process exited; raises on timeout."""
        assert self.log_path is not None
        last_shown = -1
        while True:
            process = self._process  # stop() on another thread (the process exiting) clears it
            if process is None:
                raise ServerStoppedError("The embedded language model was stopped while starting.")
            if process.poll() is not None:
                return False
            models = self._fetch_models()
            if models is not None:
                if models:
                    self.model_name = models[0]
                return True
            elapsed = time.monotonic() - started
            if elapsed > self.startup_timeout_s:
                self.stop()
                raise EmbeddedServerError(
                    f"The embedded language model did not start within {self.startup_timeout_s:.0f} s.",
                    f"log {self.log_path}:\n{_tail(self.log_path)}",
                )
            if int(elapsed) != last_shown:
                last_shown = int(elapsed)
                self._show_elapsed(last_shown)
            time.sleep(0.25)

    def _fetch_models(self) -> list[str] | None:
        try:
            with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as response:
                payload = json.loads(response.read())
        except (OSError, ValueError):
            return None
        return [str(entry.get("id")) for entry in payload.get("data", []) if isinstance(entry, dict)]

    def _say(self, text: str) -> None:
        if self.progress:
            print(text, file=sys.stderr, flush=True)

    def _show_elapsed(self, seconds: int) -> None:
        """A ticking counter on a terminal; a line every 10 s in a log."""
        if not self.progress:
            return
        if sys.stderr.isatty():
            print(f"\rstarting the embedded model… {seconds} s", end="", file=sys.stderr, flush=True)
        elif seconds and seconds % 10 == 0:
            print(f"starting the embedded model… {seconds} s", file=sys.stderr, flush=True)

    def stop(self, grace_s: float = 5.0) -> None:
        process, self._process = self._process, None
        _live_servers.discard(self)
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=grace_s)
        if process.stdin is not None:
            process.stdin.close()

    def __enter__(self) -> EmbeddedLlamaServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


_shared_lock = threading.Lock()
_shared_server: EmbeddedLlamaServer | None = None


def embedded_server() -> EmbeddedLlamaServer:
    """The process-wide embedded server: started on first use (again if it died), stopped at exit."""
    global _shared_server
    with _shared_lock:
        if _shared_server is None:
            _shared_server = EmbeddedLlamaServer()
            atexit.register(_shared_server.stop)
        if not _shared_server.is_running:
            _shared_server.start()
        return _shared_server


def shared_server_if_started() -> EmbeddedLlamaServer | None:
    """The process-wide server if one was created (for callers that report on it), else None."""
    return _shared_server


__all__ = [
    "EmbeddedLlamaServer",
    "ServerStoppedError",
    "default_llm_threads",
    "embedded_server",
    "prompt_cache_bytes",
    "server_env",
    "shared_server_if_started",
]
