"""The wire format of `edge-align serve`: OpenAI's chat-completions objects as pydantic models.

Only the fields Edge Align reads or writes are declared. A request may carry any other field a
client sends (``temperature``, ``max_tokens``, ``tools``...): they are accepted and ignored, so
clients written for OpenAI work unchanged. Responses add one extension field, ``edge_align``
(see :class:`EdgeAlignExtension`), which ordinary clients ignore.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MODEL_ID = "edge-align"
THREAD_HEADER = "X-Edge-Align-Thread"
DECISION_HEADER = "X-Edge-Align-Decision"


class ContentPart(BaseModel):
    """One part of a message's content list; only ``{"type": "text", "text": ...}`` is understood."""

    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, tool_calls, ...: accepted, not used

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        """The message as plain text; a part that is not text raises ValueError."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        pieces = []
        for part in self.content:
            if part.type != "text" or part.text is None:
                raise ValueError(f"only text content is understood, got a {part.type!r} part")
            pieces.append(part.text)
        return "".join(pieces)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``. Edge Align keeps each conversation on the server: it reads the
    newest user message, and the thread (header ``X-Edge-Align-Thread``) holds what came before."""

    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[ChatMessage]
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = 1


class ClarifyingQuestion(BaseModel):
    question: str
    options: list[str] = Field(default_factory=list)
    about: str | None = None


class EdgeAlignExtension(BaseModel):
    """What the turn decided, beside the text: the ``edge_align`` field of a completion (and of the
    last chunk of a stream).

    ``question`` is set when ``decision`` is ``"clarify"``: the message content is its question, and the
    next user message on ``thread_id`` answers it (one of ``options`` or free text). ``trace`` is the
    decision trace the CLI's ``ask --json`` and the transcripts carry. ``llm_error`` names the failure
    when the language model could not word the answer (the reply then says so). ``turn_ms`` is the
    wall time of the turn inside the server (Edge Align's own work, without HTTP).
    """

    thread_id: str
    decision: Literal["answer", "clarify", "refuse"]
    question: ClarifyingQuestion | None = None
    trace: dict[str, Any] = Field(default_factory=dict)
    llm_error: str | None = None
    turn_ms: float


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop"] = "stop"
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str = MODEL_ID
    choices: list[Choice]
    edge_align: EdgeAlignExtension


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: Literal["stop"] | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str = MODEL_ID
    choices: list[ChunkChoice]
    edge_align: EdgeAlignExtension | None = None


class Model(BaseModel):
    id: str = MODEL_ID
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "edge-align"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error envelope: ``{"error": {"message", "type", "param", "code"}}``."""

    error: ErrorDetail


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    model: str = MODEL_ID
    generate_text: bool
    auth: bool


__all__ = [
    "DECISION_HEADER",
    "MODEL_ID",
    "THREAD_HEADER",
    "AssistantMessage",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatMessage",
    "Choice",
    "ChunkChoice",
    "ClarifyingQuestion",
    "ContentPart",
    "Delta",
    "EdgeAlignExtension",
    "ErrorDetail",
    "ErrorResponse",
    "Health",
    "Model",
    "ModelList",
    "StreamOptions",
]
