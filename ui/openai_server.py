"""Edge Align as an OpenAI-compatible chat-completions endpoint: ``edge-align serve``.

Any client that speaks OpenAI's chat completions (the ``openai`` package, LangChain's ``ChatOpenAI``,
garak, Inspect, chat UIs) can use Edge Align as the model ``edge-align``::

    from openai import OpenAI

    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused-or-EDGE_ALIGN_API_KEY")
    reply = client.chat.completions.create(model="edge-align", messages=[{"role": "user", "content": "..."}])
    print(reply.choices[0].message.content, reply.edge_align["decision"])

Endpoints
    ``POST /v1/chat/completions`` (plain JSON, or server-sent events with ``"stream": true``),
    ``GET /v1/models``, ``GET /v1/models/edge-align``, ``GET /health`` (no key needed).

Conversations
    Edge Align keeps each conversation on the server, as a thread. Send the thread id in the header
    ``X-Edge-Align-Thread`` (letters, digits, ``-`` and ``_``, at most 64); without it each request is
    a thread of its own. Every response names its thread in the same header and in
    ``edge_align.thread_id``. From each request the server reads only the newest message, which must
    be the user's; system messages and the history a client resends are not used (the thread already
    holds the history, and Edge Align's prompts are its own). Any other request field
    (``temperature``, ``max_tokens``, ``user``...) is accepted and ignored.

Clarifying questions
    When Edge Align asks before it answers, the assistant message's content is the question, and
    ``edge_align`` (see ui.openai_wire.EdgeAlignExtension) carries ``decision: "clarify"``, the
    ``question`` with its ``options``, and the decision trace. The next user message on the same
    thread answers it: one of the options or free text. Plain responses also carry the header
    ``X-Edge-Align-Decision``. In a stream, ``edge_align`` rides on the last chunk (the one with
    ``finish_reason``), and progress lines arrive as SSE comments (``: step ...``) that clients skip.
    A stream's text arrives a sentence at a time, so what a client has shown is always the start of
    the reply the thread stores; only if the language model fails mid-answer does the note saying so
    follow the sentences already sent.

Errors (OpenAI's ``{"error": {"message", "type", "param", "code"}}``)
    400 bad JSON, a malformed request, no messages, a last message that is not the user's, an empty
    or too long message (``context_length_exceeded``), a malformed thread id; 401 a missing or wrong
    key; 404 an unknown model or path; 409 a thread whose previous turn is still running; 413 a
    request body over the limit; 429 over the rate limit (with ``Retry-After``); 500 a failure inside
    the server (logged here, the thread is kept). A language model that is down is not an error:
    the reply says so, ``edge_align.llm_error`` names the failure, and the decision stands.

Settings: ``EDGE_ALIGN_API_KEY`` (bearer key; unset: no authentication; never logged),
``EDGE_ALIGN_RATE_LIMIT`` (requests per minute per key or client address; 0, the default: no limit),
``EDGE_ALIGN_SERVE_WORKERS`` (turns run at the same time, default 8; more wait their turn),
``EDGE_ALIGN_MAX_BODY_BYTES`` (default 1 MiB), and the EDGE_ALIGN_* settings of every other command.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from graphs.context import ConfigError, Context
from graphs.nodes import check_message
from graphs.runner import EdgeAlign, InvalidMessageError, TurnResult, new_thread_id
from prompts.reply import SentenceGate
from ui.openai_wire import (
    DECISION_HEADER,
    MODEL_ID,
    THREAD_HEADER,
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    ClarifyingQuestion,
    Delta,
    EdgeAlignExtension,
    ErrorDetail,
    ErrorResponse,
    Health,
    Model,
    ModelList,
)
from ui.service_support import valid_thread_id, warm_llm

log = logging.getLogger("edge_align.serve")

API_KEY_ENV = "EDGE_ALIGN_API_KEY"
READY_LINE = "Edge Align API ready"


# --------------------------------------------------------------------------------------------
# Settings and errors


@dataclass(frozen=True)
class ServeSettings:
    api_key: str | None = None
    rate_limit_per_minute: int = 0  # 0: no limit
    workers: int = 8
    max_body_bytes: int = 1024 * 1024

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ServeSettings:
        numbers: dict[str, int] = {}
        for variable, name, default, least in (
            ("EDGE_ALIGN_RATE_LIMIT", "rate_limit_per_minute", 0, 0),
            ("EDGE_ALIGN_SERVE_WORKERS", "workers", 8, 1),
            ("EDGE_ALIGN_MAX_BODY_BYTES", "max_body_bytes", 1024 * 1024, 1024),
        ):
            raw = environ.get(variable, "").strip()
            try:
                numbers[name] = int(raw) if raw else default
            except ValueError:
                raise ConfigError(f"{variable} must be a whole number, got {raw!r}") from None
            if numbers[name] < least:
                raise ConfigError(f"{variable} must be at least {least}")
        return cls(api_key=environ.get(API_KEY_ENV) or None, **numbers)

    def __repr__(self) -> str:  # the key must not reach a log through a repr
        key = "set" if self.api_key else "unset"
        return (
            f"ServeSettings(api_key={key}, rate_limit_per_minute={self.rate_limit_per_minute}, "
            f"workers={self.workers}, max_body_bytes={self.max_body_bytes})"
        )


class ApiError(Exception):
    """An error the client gets in OpenAI's format, with its HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.detail = ErrorDetail(message=message, type=type, param=param, code=code)
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return error_response(self.status, self.detail, self.headers)


def error_response(status: int, detail: ErrorDetail, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(ErrorResponse(error=detail).model_dump(), status_code=status, headers=dict(headers or {}))


class BodyLimit:
    """Refuses a request whose declared body is over the limit before any of it is read."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            declared = dict(scope.get("headers") or []).get(b"content-length", b"0")
            if declared.isdigit() and int(declared) > self.limit:
                problem = ApiError(
                    413, f"The request body is larger than {self.limit} bytes.", code="request_too_large"
                )
                await problem.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)


class RateLimiter:
    """At most ``per_minute`` requests in any 60 s window, per client (key or address)."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, client: str) -> None:
        if self.per_minute <= 0:
            return
        now = self.clock()
        with self._lock:
            window = self._seen.setdefault(client, deque())
            while window and now - window[0] >= 60.0:
                window.popleft()
            if len(window) >= self.per_minute:
                wait = max(1, int(60.0 - (now - window[0])) + 1)
                raise ApiError(
                    429,
                    f"Rate limit reached: at most {self.per_minute} requests per minute. Retry in {wait} s.",
                    type="rate_limit_error",
                    code="rate_limit_exceeded",
                    headers={"Retry-After": str(wait)},
                )
            window.append(now)


# --------------------------------------------------------------------------------------------
# Turns


class TurnService:
    """The process's one EdgeAlign, shared by every request, with one turn at a time per thread.

    Turns run on a bounded pool of worker threads. A turn that started runs to its end even if
    the client goes away, so the thread's checkpoint is always a whole turn.
    """

    def __init__(self, agent: EdgeAlign, workers: int) -> None:
        self.agent = agent
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="edge-align-turn")
        self._running: set[str] = set()
        self._lock = threading.Lock()

    def check(self, text: str) -> str:
        """The message as the graph will see it, or the 400 that says what to change."""
        limit = self.agent.context.max_message_chars
        try:
            return check_message(text, limit)
        except InvalidMessageError as problem:
            too_long = len(text.strip()) > limit
            raise ApiError(
                400,
                str(problem),
                code="context_length_exceeded" if too_long else "empty_message",
                param="messages",
            ) from None

    def claim(self, thread_id: str) -> None:
        with self._lock:
            if thread_id in self._running:
                raise ApiError(
                    409,
                    f"Thread {thread_id} is still working on its previous message; retry when it has answered.",
                    type="conflict_error",
                    code="thread_busy",
                    param=THREAD_HEADER,
                )
            self._running.add(thread_id)

    def release(self, thread_id: str) -> None:
        with self._lock:
            self._running.discard(thread_id)

    async def ask(self, message: str, thread_id: str) -> tuple[TurnResult, float]:
        """Run a whole turn; returns its result and its wall time in ms. The thread must be claimed."""

        def run() -> tuple[TurnResult, float]:
            started = time.perf_counter()
            try:
                result = self.agent.ask(message, thread_id=thread_id)
            finally:
                self.release(thread_id)
            return result, (time.perf_counter() - started) * 1000

        return await asyncio.get_running_loop().run_in_executor(self.pool, run)

    def stream(self, message: str, thread_id: str) -> asyncio.Queue[tuple[str, Any]]:
        """Start the turn now; its events (EdgeAlign.stream's, then ("done", ms) or ("error", exc))
        arrive on the returned queue. The thread must be claimed."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        def put(event: tuple[str, Any]) -> None:
            loop.call_soon_threadsafe(events.put_nowait, event)

        def run() -> None:
            started = time.perf_counter()
            outcome: tuple[str, Any]
            try:
                for event in self.agent.stream(message, thread_id):
                    put(event)
                outcome = ("done", (time.perf_counter() - started) * 1000)
            except BaseException as problem:  # handed to the response, which reports it
                outcome = ("error", problem)
            finally:
                # Before the client can read the end of the stream: its next message must find the
                # thread free, however late this worker thread gets the CPU back.
                self.release(thread_id)
            put(outcome)

        self.pool.submit(run)
        return events

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=False)


def extension(result: TurnResult, turn_ms: float) -> EdgeAlignExtension:
    question = ClarifyingQuestion.model_validate(result.question) if result.question else None
    trace = {**result.trace(), "decision": result.decision, "decision_path_ms": result.decision_path_ms()}
    return EdgeAlignExtension(
        thread_id=result.thread_id,
        decision=result.decision,  # type: ignore[arg-type]  # the graph only decides these three
        question=question,
        trace=trace,
        llm_error=result.llm_error,
        turn_ms=round(turn_ms, 2),
    )


# --------------------------------------------------------------------------------------------
# The app


def _client_key(request: Request, token: str | None) -> str:
    if token:  # per key; a digest, so the key itself is kept nowhere but the settings
        return "key:" + hashlib.sha256(token.encode()).hexdigest()[:16]
    return "addr:" + (request.client.host if request.client else "?")


def _validation_message(error: RequestValidationError) -> tuple[str, str | None, str]:
    problems = error.errors()
    if any(p.get("type") == "json_invalid" for p in problems):
        return "The request body is not valid JSON.", None, "invalid_json"
    first = problems[0] if problems else {}
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(location) or None
    text = "; ".join(
        f"{'.'.join(str(p) for p in problem.get('loc', ()) if p != 'body') or 'body'}: {problem.get('msg')}"
        for problem in problems[:5]
    )
    return f"Invalid request: {text}", param, "invalid_request"


def _user_text(body: ChatCompletionRequest) -> str:
    """The newest message, which must be the user's, as text."""
    if not body.messages:
        raise ApiError(400, "messages is empty: send at least one user message.", code="no_messages", param="messages")
    last = body.messages[-1]
    if last.role != "user":
        raise ApiError(
            400,
            f"The last message must be the user's (got {last.role!r}); Edge Align answers user messages.",
            code="no_user_message",
            param="messages",
        )
    try:
        return last.text()
    except ValueError as problem:
        raise ApiError(400, f"{problem}.", code="unsupported_content", param="messages") from None


def create_app(agent: EdgeAlign, settings: ServeSettings | None = None) -> FastAPI:
    """The API around one EdgeAlign (its context decides whether replies are generated)."""
    settings = settings or ServeSettings()
    service = TurnService(agent, settings.workers)
    limiter = RateLimiter(settings.rate_limit_per_minute)
    started = int(time.time())
    expected = settings.api_key.encode() if settings.api_key else None

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        service.close()

    app = FastAPI(
        title="Edge Align",
        summary="OpenAI-compatible chat completions for Edge Align",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)

    @app.exception_handler(ApiError)
    async def on_api_error(_: Request, problem: ApiError) -> JSONResponse:
        return problem.response()

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, problem: RequestValidationError) -> JSONResponse:
        message, param, code = _validation_message(problem)
        if "json" not in request.headers.get("content-type", ""):
            message = f"Send the request as JSON with `Content-Type: application/json`. {message}"
        return error_response(400, ErrorDetail(message=message, type="invalid_request_error", param=param, code=code))

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, problem: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(problem.status_code)
        message = f"{request.method} {request.url.path}: {problem.detail}"
        return error_response(
            problem.status_code, ErrorDetail(message=message, type="invalid_request_error", code=code)
        )

    @app.exception_handler(Exception)
    async def on_crash(_: Request, problem: Exception) -> JSONResponse:
        log.error("request failed", exc_info=problem)
        detail = ErrorDetail(
            message=f"The server failed ({type(problem).__name__}); the thread is kept, please retry.",
            type="server_error",
        )
        return error_response(500, detail)

    async def authorize(request: Request, authorization: str | None = Header(None)) -> None:
        """Bearer key check (constant-time), then the rate limit for that client.

        Async although it never waits: FastAPI runs a plain ``def`` dependency on a worker thread,
        and that hand-off cost more than the check itself."""
        token = None
        if expected is not None:
            scheme, _, token = (authorization or "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
                raise ApiError(
                    401,
                    f"Missing or wrong API key: send `Authorization: Bearer <key>` with the server's {API_KEY_ENV}.",
                    code="invalid_api_key",
                    headers={"WWW-Authenticate": "Bearer"},
                )
        limiter.check(_client_key(request, token))

    def model_entry() -> Model:
        return Model(created=started)

    @app.get("/health", response_model=Health)
    async def health() -> Health:
        return Health(generate_text=agent.context.generate_text, auth=expected is not None)

    @app.get("/v1/models", response_model=ModelList, dependencies=[Depends(authorize)])
    async def models() -> ModelList:
        return ModelList(data=[model_entry()])

    @app.get("/v1/models/{model_id}", response_model=Model, dependencies=[Depends(authorize)])
    async def model(model_id: str) -> Model:
        if model_id != MODEL_ID:
            raise _unknown_model(model_id)
        return model_entry()

    @app.post(
        "/v1/chat/completions",
        response_model=ChatCompletion,
        dependencies=[Depends(authorize)],
        responses={code: {"model": ErrorResponse} for code in (400, 401, 404, 409, 413, 429, 500)},
    )
    async def chat_completions(
        body: ChatCompletionRequest,
        thread: str | None = Header(None, alias=THREAD_HEADER),
    ) -> Any:
        if body.model != MODEL_ID:
            raise _unknown_model(body.model)
        if body.n != 1:
            raise ApiError(400, "Only n=1 is supported: Edge Align gives one reply per turn.", param="n")
        if thread is not None and not valid_thread_id(thread.strip()):
            raise ApiError(
                400,
                f"{THREAD_HEADER} may only hold letters, digits, '-' and '_' (at most 64).",
                code="invalid_thread_id",
                param=THREAD_HEADER,
            )
        thread_id = thread.strip() if thread else new_thread_id()
        text = service.check(_user_text(body))
        service.claim(thread_id)
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        if body.stream:
            events = service.stream(text, thread_id)
            return StreamingResponse(
                _sse(events, completion_id, created),
                media_type="text/event-stream",
                headers={THREAD_HEADER: thread_id, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        result, turn_ms = await service.ask(text, thread_id)
        completion = ChatCompletion(
            id=completion_id,
            created=created,
            choices=[Choice(message=AssistantMessage(content=result.reply))],
            edge_align=extension(result, turn_ms),
        )
        return JSONResponse(
            completion.model_dump(mode="json"),
            headers={THREAD_HEADER: thread_id, DECISION_HEADER: result.decision},
        )

    return app


def _unknown_model(name: str) -> ApiError:
    return ApiError(
        404,
        f"The model {name!r} does not exist here; this server serves {MODEL_ID!r}.",
        code="model_not_found",
        param="model",
    )


def _data(chunk: ChatCompletionChunk | ErrorResponse) -> str:
    """One SSE event. Empty delta fields are left out, as OpenAI does; the extension keeps its nulls,
    so a stream's ``edge_align`` has the same keys as a plain response's."""
    data = chunk.model_dump(mode="json", exclude_none=True)
    if isinstance(chunk, ChatCompletionChunk) and chunk.edge_align is not None:
        data["edge_align"] = chunk.edge_align.model_dump(mode="json")
    return f"data: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


async def _sse(events: asyncio.Queue[tuple[str, Any]], completion_id: str, created: int) -> AsyncIterator[str]:
    """OpenAI's chunk stream: the role, the text a sentence at a time, the last chunk with
    ``finish_reason`` and ``edge_align``, then ``[DONE]``. Steps go out as SSE comments."""

    def chunk(delta: Delta, **fields: Any) -> str:
        return _data(
            ChatCompletionChunk(id=completion_id, created=created, choices=[ChunkChoice(delta=delta)], **fields)
        )

    yield chunk(Delta(role="assistant", content=""))
    gate = SentenceGate()
    result: TurnResult | None = None
    while True:
        kind, payload = await events.get()
        if kind == "step":
            yield f": step {payload}\n\n"
        elif kind == "token":
            text = gate.feed(str(payload))
            if text:
                yield chunk(Delta(content=text))
        elif kind == "result":
            result = payload
        elif kind == "done" and result is not None:
            rest = gate.finish(result.reply)
            if rest:
                yield chunk(Delta(content=rest))
            last = ChatCompletionChunk(
                id=completion_id,
                created=created,
                choices=[ChunkChoice(delta=Delta(), finish_reason="stop")],
                edge_align=extension(result, float(payload)),
            )
            yield _data(last)
            break
        else:  # the turn failed inside the server: the client's SDK raises on an error event
            log.error("streamed turn failed", exc_info=payload if isinstance(payload, BaseException) else None)
            name = type(payload).__name__ if isinstance(payload, BaseException) else "no result"
            detail = ErrorDetail(
                message=f"The server failed ({name}); the thread is kept, please retry.", type="server_error"
            )
            yield _data(ErrorResponse(error=detail))
            break
    yield "data: [DONE]\n\n"


# --------------------------------------------------------------------------------------------
# Running it


def serve(context: Context, host: str = "127.0.0.1", port: int = 8000, settings: ServeSettings | None = None) -> None:
    """Load everything once, then serve until interrupted (SIGINT or SIGTERM)."""
    import uvicorn

    from graphs.resources import get_resources

    settings = settings or ServeSettings.from_env()
    # SIGTERM ends the process through SystemExit, so atexit stops the embedded model server too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    get_resources(context.home)  # prints its own progress; every request then shares the loaded models
    warm_llm(context)
    app = create_app(EdgeAlign(context), settings)
    config = uvicorn.Config(app, host=host, port=port, log_level="info", access_log=True, lifespan="on")
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    text = "on" if context.generate_text else "off (decision path only)"
    auth = "bearer key required" if settings.api_key else "no key"
    ready = f"{READY_LINE}: http://{shown_host}:{port}/v1  model {MODEL_ID!r}, text generation {text}, {auth}"

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:  # the port is bound: clients can connect from now on
                print(f"{ready}  (Ctrl-C to stop)", flush=True)

    Server(config).run()


__all__ = [
    "API_KEY_ENV",
    "READY_LINE",
    "ApiError",
    "RateLimiter",
    "ServeSettings",
    "TurnService",
    "create_app",
    "serve",
]
