"""A scripted chat model for unit tests of graph logic: it fails loudly on any call it was not given a reply for."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from pydantic import Field


class UnexpectedLLMCallError(AssertionError):
    """The code under test called the LLM more often than the test scripted."""


def _replies(replies: list[str]) -> Iterator[AIMessage]:
    # A finish reason, as real endpoints send: without one an answer counts as cut off.
    yield from (AIMessage(text, response_metadata={"finish_reason": "stop"}) for text in replies)
    raise UnexpectedLLMCallError("the LLM was called more often than the test scripted")


class ScriptedChatModel(GenericFakeChatModel):
    """Replies with the scripted texts in order, records every prompt, and raises when it runs out."""

    prompts: list[Any] = Field(default_factory=list)

    def __init__(self, replies: list[str]) -> None:
        super().__init__(messages=_replies(list(replies)))

    def _generate(self, messages: Any, *args: Any, **kwargs: Any) -> Any:
        self.prompts.append(messages)
        return super()._generate(messages, *args, **kwargs)
